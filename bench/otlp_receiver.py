"""Local OTLP trace receivers: what a collector does with ``POST /v1/traces`` over HTTP
(``OtlpReceiver``: ``ExportTraceServiceRequest`` in protobuf, gzip or not) and with
``TraceService/Export`` over gRPC (``OtlpGrpcReceiver``), keeping the spans they decode.

In-process for the tests (each server in threads of its own), or as a process for the tracing
benchmark: ``python -m bench.otlp_receiver --port N`` (HTTP) counts the spans it receives and
prints the count as JSON when it gets SIGTERM."""

from __future__ import annotations

import argparse
import gzip
import json
import signal
import sys
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

PATH = "/v1/traces"
_OK = ExportTraceServiceResponse().SerializeToString()


class Received:
    """The trace exports a receiver got: decoded and kept (``keep``), or only their spans counted."""

    def __init__(self, keep: bool = True) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.spans_received = 0
        self.keep = keep
        self._lock = threading.Lock()

    def received(self, request: ExportTraceServiceRequest) -> None:
        count = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
        with self._lock:
            self.spans_received += count
            if self.keep:
                self.requests.append(request)

    def spans(self) -> Iterator[tuple[dict[str, object], Span]]:
        """Every span received, with its resource's attributes."""
        with self._lock:
            requests = list(self.requests)
        for request in requests:
            for resource in request.resource_spans:
                attributes = {kv.key: value_of(kv.value) for kv in resource.resource.attributes}
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        yield attributes, span


class OtlpReceiver(Received):
    """Receives OTLP/HTTP trace exports on a loopback port (``port`` 0: any free one)."""

    def __init__(self, port: int = 0, keep: bool = True) -> None:
        super().__init__(keep)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                coding = self.headers.get("content-encoding", "")
                if coding == "gzip":
                    body = gzip.decompress(body)
                elif coding == "deflate":
                    body = zlib.decompress(body)
                if self.path != PATH:
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                receiver.received(ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(_OK)))
                self.end_headers()
                self.wfile.write(_OK)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """What ``OTEL_EXPORTER_OTLP_ENDPOINT`` names for this receiver (the exporter adds ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self._thread = threading.Thread(target=self.server.serve_forever, name="otlp-receiver", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join()


class OtlpGrpcReceiver(Received, TraceServiceServicer):
    """Receives OTLP/gRPC trace exports (``opentelemetry.proto.collector.trace.v1.TraceService``)
    on a loopback port."""

    def __init__(self, keep: bool = True) -> None:
        super().__init__(keep)
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        add_TraceServiceServicer_to_server(self, self.server)  # type: ignore[no-untyped-call]  # generated, unannotated
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:  # noqa: N802
        self.received(request)
        return ExportTraceServiceResponse()

    @property
    def endpoint(self) -> str:
        """What ``OTEL_EXPORTER_OTLP_ENDPOINT`` names for this receiver."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> OtlpGrpcReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)


def value_of(value: object) -> object:
    """An OTLP ``AnyValue`` as Python (strings, numbers, booleans, arrays)."""
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    if kind == "array_value":
        return [value_of(item) for item in value.array_value.values]  # type: ignore[attr-defined]
    return getattr(value, kind) if kind else None


def attributes_of(item: Span | Span.Event) -> dict[str, object]:
    """The attributes of a span or a span's event."""
    return {kv.key: value_of(kv.value) for kv in item.attributes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp_receiver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    receiver = OtlpReceiver(args.port, keep=False)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with receiver:
        print(json.dumps({"listening": receiver.endpoint}), flush=True)
        stop.wait()
    print(json.dumps({"spans_received": receiver.spans_received}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
