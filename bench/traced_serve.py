"""``python -m bench.traced_serve``: the server command (``python -m app.serve``) with every span
exporter replaced by one that discards what it is given, behind the SDK's batch processor as
usual: what tracing costs the service up to the exporter, without the exporter's own work (the
OTLP exporters encode protobuf in the server's process; ``bench.tracing --exporter otlp``
measures that too)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class DiscardingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def main() -> int:
    import app.telemetry.tracing as tracing
    from app import serve

    tracing.trace_exporter_classes = lambda: [DiscardingExporter]  # type: ignore[attr-defined]
    serve.start_with_allocator_tunables()
    return serve.main()


if __name__ == "__main__":
    sys.exit(main())
