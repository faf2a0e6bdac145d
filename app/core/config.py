"""Every setting of the service, typed and read from ``TORCHFN_*`` environment variables."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.core.limits import MAX_HEADER_VALUE, longer_than

FloatDType = Literal["float32", "float64", "float16", "bfloat16"]

_DEVICE_PATTERN = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")

CommaList = Annotated[list[str], NoDecode]
"""A list read from one comma-separated environment variable."""

_OTEL_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def otel_asks_for_traces(environment: Mapping[str, str]) -> bool:
    """Whether OpenTelemetry's standard variables ask for traces to be exported: an exporter named
    (other than ``none``), or an OTLP endpoint given; never when ``OTEL_SDK_DISABLED`` is true."""
    if environment.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {name.strip().lower() for name in environment.get("OTEL_TRACES_EXPORTER", "").split(",")} - {""}
    if exporters:
        return exporters != {"none"}
    return any(environment.get(name, "").strip() for name in _OTEL_ENDPOINTS)


class Settings(BaseSettings):
    """Service settings. Each field is read from ``TORCHFN_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(env_prefix="TORCHFN_", env_file=None, extra="ignore", validate_default=True)

    device: str = "cpu"
    """Where torch computes: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available)."""

    torch_threads: int | None = Field(default=None, ge=1, le=1024)
    """Intra-op threads torch may use (``torch.set_num_threads``); unset keeps torch's default."""

    compute_workers: int = Field(default=1, ge=1, le=64)
    """Threads that run torch calls off the event loop."""

    gil_switch_interval_ms: float = Field(default=0.5, gt=0.0, le=100.0)
    """Python's thread switch interval (``sys.setswitchinterval``). The event loop and the compute
    thread share the GIL; Python's 5 ms default lets one stall the other (measured: 600 req/s at
    5 ms, 1,500 at 0.5 ms for small requests on one core)."""

    default_dtype: FloatDType = "float32"
    """Floating-point dtype used when a request does not set ``dtype``."""

    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest request body accepted, in bytes (413 above it)."""

    max_tensor_elements: int = Field(default=4_000_000, ge=1)
    """Largest number of elements in any one tensor of a request (413 above it)."""

    max_total_elements: int = Field(default=16_000_000, ge=1)
    """Largest number of elements over all tensors of a request (413 above it)."""

    max_rank: int = Field(default=8, ge=1, le=32)
    """Deepest tensor rank (list nesting) accepted."""

    max_reported_errors: int = Field(default=10, ge=1, le=1000)
    """How many validation errors one error response lists at most."""

    inline_decode_bytes: int = Field(default=64 * 1024, ge=0)
    """Bodies up to this size are decoded on the event loop; larger ones in a worker thread."""

    parse_apart_bytes: int = Field(default=1024 * 1024, ge=0)
    """JSON texts longer than this are parsed in a process of their own (started with the first
    one, one at a time), their large tensors decoded there too: parsing a large JSON text holds
    Python's interpreter lock throughout (1.3 s for 34 MB of numbers), which would stall the event
    loop and every other request meanwhile, whatever thread it ran in."""

    batching: bool = True
    """Group concurrent compatible requests into shared compute calls (dynamic batching)."""

    max_batch_size: int = Field(default=64, ge=1, le=4096)
    """Most requests in one batch."""

    max_batch_elements: int = Field(default=1_048_576, ge=1)
    """Most tensor elements in one batch (a request larger than this runs alone)."""

    inline_compute_max_cost: float = Field(default=50_000.0, ge=0.0)
    """On a CPU, a request of torch's own functions whose estimated cost is at most this (cost
    units, about nanoseconds: relu on 256 floats is 7,680) and that would be computed alone
    (nothing queued, the compute thread idle) is computed on the event loop, without the trip to
    the compute thread and back (~0.2 ms of a core); 0 turns it off. Never a plugin's, never on
    a GPU."""

    max_batch_delay_ms: float = Field(default=0.0, ge=0.0, le=1000.0)
    """How long a batch that already has company waits for more; a lone request never waits."""

    max_queue_size: int = Field(default=512, ge=1)
    """Requests waiting for compute at most; beyond it new requests get 503 with Retry-After."""

    request_timeout_s: float = Field(default=30.0, gt=0.0)
    """Longest a request may wait for compute before it gets 503 and leaves the queue; a request
    can shorten it with the ``X-Request-Timeout`` header (seconds)."""

    max_request_cost: float = Field(default=1.5e9, gt=0.0)
    """Most compute one request may ask for, in cost units (about a nanosecond of one core of the
    reference machine; each function's cost model is part of its catalogue entry). Above it, 413
    before the request is queued. The default keeps the most expensive request every function
    admits, with or without gradients, in every dtype, within 2 s on the reference 2-core machine
    (``python -m bench.cost`` measures it)."""

    memory_budget_bytes: int | None = Field(default=None, ge=16 * 1024 * 1024)
    """Bytes that requests in flight may hold together: bodies being read, tensors being decoded,
    work being computed. Unset: 60% of the container's memory limit (else the machine's memory)
    beyond a 640 MiB baseline for the process itself. A request larger than the whole budget gets
    413; one that does not fit now waits up to ``memory_wait_s``, then gets 503."""

    memory_wait_s: float = Field(default=1.0, ge=0.0, le=60.0)
    """Longest a request waits for room in the memory budget before 503 with Retry-After."""

    stuck_compute_s: float = Field(default=60.0, gt=0.0)
    """A compute call still running after this long (an estimate that was wrong, a hung device)
    makes ``/healthz`` answer 503, so that the orchestrator restarts the process; the requests
    waiting on it get 503 at their own deadlines."""

    tracing: bool | None = None
    """Trace every request with OpenTelemetry (``app/telemetry/tracing.py``): W3C ``traceparent``
    and ``tracestate`` read from the request and ``traceparent`` returned on the reply, a span for
    the request and each of its phases, the trace id on its log lines. The SDK is configured by the
    standard ``OTEL_*`` variables (``OTEL_TRACES_EXPORTER``, ``otlp`` when unset;
    ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_PROTOCOL``, ``OTEL_SERVICE_NAME``,
    ``OTEL_TRACES_SAMPLER``...). Unset, it follows them: on when they ask for traces
    (``OTEL_TRACES_EXPORTER`` other than ``none``, or an ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), off otherwise; ``OTEL_SDK_DISABLED=true`` keeps it off
    whatever this says. Off, no OpenTelemetry code runs per request (FastAPI's own instrumentation
    is never on)."""

    plugins: CommaList = Field(default_factory=list)
    """Comma-separated ``module:attribute`` entries naming the operator's own functions, loaded at
    start-up: an ``nn.Module`` subclass, a plain function or an ``app.plugins.Function`` (or a list
    of them). The module must be importable (``PYTHONPATH``). A plugin that cannot be loaded stops
    start-up with exit status 2."""

    plugin_entry_points: bool = True
    """Also load the functions that installed packages contribute through the entry-point group
    ``torchfn.functions``; false ignores them."""

    # Production: process model, shutdown, observability and security.

    host: str = "127.0.0.1"
    """Address ``python -m app.serve`` listens on (the container sets ``0.0.0.0``)."""

    port: int = Field(default=8000, ge=1, le=65535)
    """Port ``python -m app.serve`` listens on."""

    workers: int = Field(default=1, ge=1, le=64)
    """Server processes. Torch's threads are shared out between them; use one per GPU."""

    shutdown_grace_s: float = Field(default=20.0, gt=0.0, le=3600.0)
    """After SIGTERM, how long in-flight and queued requests have to finish before they are cut off."""

    log_format: Literal["json", "text"] = "json"
    """``json``: one JSON object a line, with the request id (and the trace's ids when tracing);
    ``text`` for reading at a terminal, a line about a request ending with its ids."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level logged."""

    access_log: bool = True
    """Log one line per request (method, path, status, duration, function, request id)."""

    metrics: bool = True
    """Serve Prometheus metrics at ``GET /metrics``."""

    docs: bool = True
    """Serve ``/docs``, ``/redoc`` and ``/openapi.json`` (their scripts from this service, no CDN)."""

    explorer: bool = True
    """Serve the explorer page at ``/explore``: every function and its gradient plotted from this
    service's own answers, with controls for their parameters."""

    api_keys: CommaList = Field(default_factory=list)
    """Comma-separated keys; when set, every path but ``open_paths`` needs one, as
    ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (401 otherwise). Empty: auth off."""

    open_paths: CommaList = Field(default_factory=lambda: ["/healthz", "/readyz", "/metrics"])
    """Comma-separated paths that need no key when auth is on."""

    cors_origins: CommaList = Field(default_factory=list)
    """Comma-separated origins allowed by CORS (``*`` for any); empty: no CORS headers at all."""

    @field_validator("api_keys", "open_paths", "cors_origins", "plugins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    body_idle_timeout_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    """Longest pause while a request body arrives; a body that stops short of its Content-Length
    (or a stalled upload) gets 408 and its connection is closed, instead of holding it forever."""

    max_head_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    """Largest request head (request line and headers) in bytes; a longer one gets 431 and its
    connection is closed, after at most this much of it is read (node and uvicorn's h11 use 16 KiB
    too; nginx 8 KiB a line)."""

    max_headers: int = Field(default=100, ge=1, le=10_000)
    """Most header lines in a request head; more get 431 (Apache's ``LimitRequestFields``)."""

    head_timeout_s: float = Field(default=10.0, gt=0.0, le=3600.0)
    """Longest a connection may take to send a whole request head, from when it opens or from
    the first byte after a previous request; then it is closed. Idle keep-alive connections are
    closed after 5 s (uvicorn's keep-alive timeout). A gRPC connection has as long to open (its
    HTTP/2 preface and settings)."""

    max_connections: int = Field(default=2048, ge=1, le=1_000_000)
    """Most open connections per server process; one more is answered 503 at once and closed.
    Must fit under the process's open-files limit (raised to its hard limit at start-up)."""

    # The Open Inference Protocol over gRPC: its port and its bounds (app/transports/grpc/options.py).
    # Its message size limits come from max_body_bytes and max_total_elements, its handshake
    # timeout from head_timeout_s.

    grpc_port: int = Field(default=8001, ge=0, le=65535)
    """Port of the gRPC face (``inference.GRPCInferenceService``), on the same address as HTTP and
    in the same process; ``0`` turns gRPC off. 8001 is Triton's."""

    grpc_max_connections: int = Field(default=2048, ge=1, le=1_000_000)
    """Most open gRPC connections per server process; one more is closed at once (the client sees
    UNAVAILABLE). Counts towards the open-files limit beside ``max_connections``."""

    grpc_max_concurrent_streams: int = Field(default=100, ge=1, le=1_000_000)
    """Most calls in flight on one gRPC connection (HTTP/2's ``SETTINGS_MAX_CONCURRENT_STREAMS``,
    100 as RFC 9113 recommends at least); a client queues its further calls until one ends."""

    grpc_max_concurrent_calls: int = Field(default=1024, ge=1, le=1_000_000)
    """Most gRPC calls in flight per server process, over all connections; one more is answered
    RESOURCE_EXHAUSTED at once. gRPC receives a call's whole message before the service sees it, so
    this times the largest message bounds the memory such messages hold."""

    grpc_max_metadata_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    """Largest metadata (headers) of a gRPC call, in bytes as HTTP/2 counts them (each entry's name
    and value plus 32); larger is answered RESOURCE_EXHAUSTED. 16 KiB, as ``max_head_bytes``."""

    grpc_min_ping_interval_s: float = Field(default=10.0, gt=0.0, le=86_400.0)
    """Keepalive enforcement: shortest interval between a client's HTTP/2 pings while it sends no
    data; a connection whose third ping comes too soon is closed (GOAWAY ``ENHANCE_YOUR_CALM``),
    and pings with no call in flight always come too soon. gRPC's default, 5 minutes, would refuse
    the common 10-60 s client keepalives."""

    grpc_max_connection_idle_s: float = Field(default=300.0, gt=0.0, le=86_400.0)
    """A gRPC connection with no call in flight for this long is closed (GOAWAY; clients reconnect
    when they next call)."""

    grpc_max_connection_age_s: float | None = Field(default=None, gt=0.0, le=2_000_000.0)
    """Oldest a gRPC connection may grow before the service asks its client to reconnect (GOAWAY),
    so that clients spread over new replicas; its calls in flight then have ``shutdown_grace_s``.
    Unset: no limit."""

    @field_validator("api_keys")
    @classmethod
    def _check_key_lengths(cls, keys: list[str]) -> list[str]:
        if any(len(key) > MAX_HEADER_VALUE for key in keys):
            raise ValueError(f"an API key is {longer_than(MAX_HEADER_VALUE)}: a client could not send it")
        return keys

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE_PATTERN.match(value):
            raise ValueError("device must be 'cpu', 'cuda', 'cuda:N' or 'auto'")
        return value

    @model_validator(mode="after")
    def _tracing_as_the_standard_variables_ask(self) -> Self:
        if self.tracing is None:
            self.tracing = otel_asks_for_traces(os.environ)
        return self

    @model_validator(mode="after")
    def _one_process_per_gpu(self) -> Self:
        if self.device.startswith("cuda") and self.workers > 1:
            raise ValueError("workers must be 1 on a GPU (one process per GPU); scale with more replicas")
        return self
