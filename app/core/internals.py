"""Every place the service reaches past a library's public interface, in one module, each named
once and pinned to the pinned release by ``tests/core/test_internals.py`` (a change upstream fails
that test, not production).

- uvicorn's httptools protocol: the state of the request being answered (its cycle), and how it
  is told that its client is gone. uvicorn documents a protocol class as a setting but not its
  attributes.
- prometheus_client's histogram children: bucket counts and sum added in bulk (``observe`` takes
  a lock and walks the buckets for each value: ``app.telemetry.metrics`` tallies per request and
  folds here).
- the OpenTelemetry SDK's configurator: how it reads ``OTEL_TRACES_EXPORTER`` and
  ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`` into exporter classes (its public entry point,
  ``_OTelSDKConfigurator``, also sets the process's global providers of every signal). Imported
  only when tracing is on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import Histogram
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter


class HttpToolsHooks(HttpToolsProtocol):
    """uvicorn's httptools protocol, with what its subclasses need of it by name."""

    @property
    def answering(self) -> bool:
        """A request on this connection has been read and its response is not complete."""
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete

    @property
    def response_started(self) -> bool:
        """The request being answered has had its response's status line written."""
        cycle = self.cycle
        return cycle is not None and cycle.response_started

    @property
    def pipelined(self) -> bool:
        """Requests read whole wait behind the one being answered."""
        return bool(self.pipeline)

    @property
    def open_connections(self) -> int:
        return len(self.connections)

    def peers(self) -> list[HttpToolsHooks]:
        """The other open connections of this server that speak this protocol."""
        return [peer for peer in self.connections if isinstance(peer, HttpToolsHooks) and peer is not self]

    def feed(self, data: bytes | memoryview) -> None:
        """uvicorn's own handling of received bytes (the parser, its errors and upgrades)."""
        HttpToolsProtocol.data_received(self, data)  # type: ignore[arg-type]

    def end_request(self) -> None:
        """Tell the request being answered that its client is gone (as uvicorn does when the
        connection is lost): its body ends, and its response is dropped."""
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.message_event.set()


def histogram_bounds(child: Histogram) -> Sequence[float]:
    """A histogram child's bucket bounds, ascending, ending with +Inf."""
    bounds: Sequence[float] = child._upper_bounds
    return bounds


def add_to_histogram(child: Histogram, counts: Sequence[int], total: float) -> None:
    """Add ``counts[i]`` observations to bucket ``i`` and ``total`` to the sum of ``child``: what
    ``observe`` would have done for each of them."""
    buckets = child._buckets
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)
    child._sum.inc(total)


def trace_exporter_classes() -> list[type[SpanExporter]]:
    """The span exporters ``OTEL_TRACES_EXPORTER`` names, read by the SDK's configurator (as
    ``opentelemetry-instrument`` reads it): comma-separated entry-point names, ``none`` for none,
    ``otlp`` made ``otlp_proto_grpc`` or ``otlp_proto_http`` by ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or
    its ``_TRACES_`` variant; grpc when unset, the SDK's default). Unset, it is ``otlp``, the
    specification's default (and ``opentelemetry-distro``'s); the configurator alone would read
    unset as ``none``. Raises ``RuntimeError`` naming an unknown exporter or protocol."""
    from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
    from opentelemetry.sdk import _configuration as configurator

    if OTEL_TRACES_EXPORTER in os.environ:
        names = configurator._get_exporter_names("traces")
    else:
        names = [configurator._get_exporter_entry_point("otlp", "traces")]
    exporters, _, _ = configurator._import_exporters(names, [], [])
    return list(exporters.values())
