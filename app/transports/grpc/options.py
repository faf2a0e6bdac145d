"""The bounds of the gRPC server, from the settings: gRPC core's channel arguments (their names are
those of ``include/grpc/impl/channel_arg_names.h``) and the Python server's cap on calls in flight.

Use: ``grpc.aio.server(options=bounds.options, maximum_concurrent_rpcs=bounds.maximum_concurrent_rpcs)``
with ``bounds = grpc_server_bounds(settings)``.
"""

from __future__ import annotations

from typing import NamedTuple

from app.core.config import Settings

GrpcOption = tuple[str, int]

INT32_MAX = 2**31 - 1
"""gRPC core's channel arguments are C ints; protobuf refuses messages of 2 GiB or more anyway."""

REPLY_FRAMING_BYTES = 1024 * 1024
"""Room in a reply beyond its tensors' values: names, shapes, datatypes, parameters (warnings)."""
LARGEST_ELEMENT_BYTES = 8
"""FP64, the widest datatype a reply holds."""
MAX_PING_STRIKES = 2
"""gRPC's default: a connection's third ping too soon closes it (GOAWAY ``ENHANCE_YOUR_CALM``)."""


class GrpcServerBounds(NamedTuple):
    options: list[GrpcOption]
    """Channel arguments for ``grpc.aio.server(options=...)``."""
    maximum_concurrent_rpcs: int
    """Calls in flight per process, for ``grpc.aio.server(maximum_concurrent_rpcs=...)``: one more
    is answered RESOURCE_EXHAUSTED before its handler runs."""


def _ms(seconds: float) -> int:
    return _int32(max(1, round(seconds * 1000)))


def _int32(value: int) -> int:
    return min(value, INT32_MAX)


def largest_reply_bytes(settings: Settings) -> int:
    """A reply's size at most: its value and its gradients hold no more elements than the request's
    tensors in all, twice ``max_total_elements``, each of at most 8 bytes, and their framing."""
    return 2 * settings.max_total_elements * LARGEST_ELEMENT_BYTES + REPLY_FRAMING_BYTES


def grpc_server_bounds(settings: Settings) -> GrpcServerBounds:
    """The message sizes from the HTTP body limit (received) and the largest reply (sent), the
    connection, stream and metadata caps, keepalive enforcement and the connection lifetimes."""
    options: list[GrpcOption] = [
        ("grpc.max_receive_message_length", _int32(settings.max_body_bytes)),
        ("grpc.max_send_message_length", _int32(largest_reply_bytes(settings))),
        ("grpc.max_allowed_incoming_connections", settings.grpc_max_connections),
        ("grpc.max_concurrent_streams", settings.grpc_max_concurrent_streams),
        # Count a connection's streams as HTTP/2 does (open ones), not as gRPC core does by default
        # (those the server has not freed yet: grpc.aio frees a call after its reply is sent, so a
        # client keeping to the limit had calls refused, REFUSED_STREAM: 59 of 300 calls at once on
        # one connection). The calls a process holds stay capped by maximum_concurrent_rpcs.
        ("grpc.http.overload_protection", 0),
        # soft and hard limit alike: every call over it is refused, none at random
        ("grpc.max_metadata_size", settings.grpc_max_metadata_bytes),
        ("grpc.absolute_max_metadata_size", settings.grpc_max_metadata_bytes),
        ("grpc.server_handshake_timeout_ms", _ms(settings.head_timeout_s)),
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(settings.grpc_min_ping_interval_s)),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.max_connection_idle_ms", _ms(settings.grpc_max_connection_idle_s)),
    ]
    if settings.grpc_max_connection_age_s is not None:
        options.append(("grpc.max_connection_age_ms", _ms(settings.grpc_max_connection_age_s)))
        options.append(("grpc.max_connection_age_grace_ms", _ms(settings.shutdown_grace_s)))
    return GrpcServerBounds(options, settings.grpc_max_concurrent_calls)
