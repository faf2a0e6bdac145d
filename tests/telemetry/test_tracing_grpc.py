"""Tracing over gRPC: a call joins its caller's W3C trace (``traceparent`` metadata) or starts one,
sends the span's ``traceparent`` back in its trailing metadata, and its server span has the RPC's
name and attributes, the road's phases beneath it, and its status; a server-side failure is an
error on the phase it happened in. Served in process on real sockets, spans kept in memory."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import torch
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.core.config import Settings
from tests.support.oip_grpc import Client, Served, grpc_serving, infer_request, status_of
from tests.support.plugin_modules import FRESH, write_module
from tests.support.tracing import PHASES, children, in_memory_tracing, server_span, trace_of, traceparent_ids

CALLER_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
CALLER_SPAN = 0xB7AD6B7169203331
TRACEPARENT = f"00-{CALLER_TRACE:032x}-{CALLER_SPAN:016x}-01"
MODEL_INFER = "inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Client, InMemorySpanExporter]]:
    tracing, exporter = in_memory_tracing()
    with pytest.MonkeyPatch.context() as monkeypatch:
        plugins = write_module(tmp_path_factory.mktemp("plugins"), FRESH, monkeypatch)
        importlib.import_module(plugins)
        settings = Settings(tracing=True, plugins=[f"{plugins}:Fragile"], plugin_entry_points=False)
        with grpc_serving(settings, tracing) as served:
            client = Client(served.address)
            try:
                yield served, client, exporter
            finally:
                client.close()


def _spans(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    """The trace's spans, once its server span has ended: a refused call's status can reach the
    client (``context.abort``) before the handler's last lines have run."""
    deadline = time.monotonic() + 10
    while True:
        spans = trace_of(exporter.get_finished_spans(), trace_id)
        if any(span.kind is SpanKind.SERVER for span in spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.01)


def _trailing_traceparent(call: Any) -> str:
    return str(dict(call.trailing_metadata())["traceparent"])


def test_a_call_joins_its_callers_trace_with_the_roads_phases_beneath_it(
    traced: tuple[Served, Client, InMemorySpanExporter],
) -> None:
    _, client, exporter = traced
    exporter.clear()
    request = infer_request("relu", {"input": torch.tensor([1.0, -2.0])})
    _, call = client.infer_call.with_call(request, metadata=(("traceparent", TRACEPARENT),), timeout=30)
    trace_id, span_id, flags = traceparent_ids(_trailing_traceparent(call))
    assert trace_id == CALLER_TRACE
    assert flags == 1
    spans = _spans(exporter, CALLER_TRACE)
    server = server_span(spans)
    assert server.kind is SpanKind.SERVER
    assert server.name == MODEL_INFER
    assert server.context is not None
    assert server.context.span_id == span_id
    assert server.parent is not None
    assert server.parent.span_id == CALLER_SPAN
    assert server.parent.is_remote
    attributes = dict(server.attributes or {})
    assert attributes["rpc.system"] == "grpc"
    assert attributes["rpc.service"] == "inference.GRPCInferenceService"
    assert attributes["rpc.method"] == "ModelInfer"
    assert attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    assert server.status.status_code is StatusCode.UNSET
    assert [span.name for span in children(spans, server)] == PHASES


def test_a_call_without_a_caller_starts_a_trace_and_says_which(
    traced: tuple[Served, Client, InMemorySpanExporter],
) -> None:
    _, client, exporter = traced
    exporter.clear()
    _, call = client.infer_call.with_call(infer_request("gelu", {"input": torch.tensor([0.5])}), timeout=30)
    trace_id, span_id, _ = traceparent_ids(_trailing_traceparent(call))
    server = server_span(_spans(exporter, trace_id))
    assert server.parent is None
    assert server.context is not None
    assert server.context.span_id == span_id


def test_a_refused_call_is_no_server_error_and_a_failed_one_is(
    traced: tuple[Served, Client, InMemorySpanExporter],
) -> None:
    _, client, exporter = traced
    exporter.clear()
    refused = client.refusal(infer_request("nosuchmodel", {"input": torch.tensor([1.0])}))
    code, _, trailing = status_of(refused)
    assert code is grpc.StatusCode.NOT_FOUND
    server = server_span(_spans(exporter, traceparent_ids(trailing["traceparent"])[0]))
    assert dict(server.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert server.status.status_code is StatusCode.UNSET

    failed = client.refusal(infer_request("fragile", {"input": torch.tensor([13.0])}))
    code, _, trailing = status_of(failed)
    assert code is grpc.StatusCode.INTERNAL
    spans = _spans(exporter, traceparent_ids(trailing["traceparent"])[0])
    server = server_span(spans)
    assert server.status.status_code is StatusCode.ERROR
    compute = next(span for span in children(spans, server) if span.name == "compute")
    assert compute.status.status_code is StatusCode.ERROR
