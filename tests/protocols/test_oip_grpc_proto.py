"""The pinned protocol file, the descriptor and types compiled from it, the private descriptor
pool, the service's method table, and tritonclient.grpc and KServe's gRPC client against the
messages and a live grpc.aio server of them (each client in a process of its own: they cannot share
one, kserve/kserve#3099)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool

from app.protocols.oip.grpc import messages
from app.transports.grpc.service import METHODS, SERVICE_NAME, InferenceServicer, method_path
from tests.support.paths import ROOT

PACKAGE = ROOT / "app" / "protocols" / "oip" / "grpc"
PROTO = PACKAGE / "open_inference_grpc.proto"


def test_the_pinned_proto_is_the_upstream_file_byte_for_byte() -> None:
    header, body = PROTO.read_bytes().split(b"\n\n", 1)
    assert all(line.startswith(b"//") for line in header.splitlines())
    (declared,) = re.findall(rb"^// sha256: ([0-9a-f]{64})$", header, re.M)
    assert hashlib.sha256(body).hexdigest().encode() == declared
    assert re.search(rb"^// commit: [0-9a-f]{40}\b", header, re.M)
    assert b"// path: specification/protocol/open_inference_grpc.proto" in header


def test_the_committed_descriptor_and_types_are_compiled_from_the_pinned_proto(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "compile-proto"), str(tmp_path)],
        env={**os.environ, "PYTHON": sys.executable},
        check=True,
        capture_output=True,
    )
    for name in ("descriptor.py", "messages.pyi"):
        assert (tmp_path / name).read_text() == (PACKAGE / name).read_text(), (
            f"{name} is stale: run scripts/compile-proto"
        )


def test_the_messages_live_outside_protobufs_default_pool() -> None:
    default = descriptor_pool.Default()  # type: ignore[no-untyped-call]  # (untyped in types-protobuf)
    assert messages.ModelInferRequest.DESCRIPTOR.file.pool is not default
    with pytest.raises(KeyError):
        default.FindFileByName(messages.DESCRIPTOR.name)


def test_the_module_builds_every_message_its_types_declare() -> None:
    declared = set(re.findall(r"^class (\w+)\(_message\.Message\)", (PACKAGE / "messages.pyi").read_text(), re.M))
    assert declared == set(messages.DESCRIPTOR.message_types_by_name)
    for name in declared:
        assert getattr(messages, name).DESCRIPTOR.full_name == f"inference.{name}"


def test_the_method_table_is_the_protocols_service() -> None:
    service = messages.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == SERVICE_NAME
    assert [(m.name, m.input_type.full_name, m.output_type.full_name) for m in service.methods] == [
        (m.name, m.request.DESCRIPTOR.full_name, m.response.DESCRIPTOR.full_name) for m in METHODS
    ]
    assert all(not m.client_streaming and not m.server_streaming for m in service.methods)
    assert {m.attribute for m in METHODS} == {name for name in vars(InferenceServicer) if not name.startswith("_")}
    assert method_path("ModelInfer") == "/inference.GRPCInferenceService/ModelInfer"


def test_a_request_round_trips_through_its_wire_form() -> None:
    tensor = messages.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[2])
    tensor.contents.fp32_contents.extend([1.5, -2.0])
    request = messages.ModelInferRequest(model_name="relu", id="7", inputs=[tensor], raw_input_contents=[b"ab"])
    request.parameters["grad"].bool_param = True
    assert messages.ModelInferRequest.FromString(request.SerializeToString()) == request


def _run_beside(client: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.oip_grpc_clients", client],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_tritonclient_grpc_shares_a_process_and_the_wire_with_the_service_messages() -> None:
    _run_beside("triton")


@pytest.mark.skipif(importlib.util.find_spec("kserve") is None, reason="kserve is not installed")
def test_kserve_grpc_client_shares_a_process_and_the_wire_with_the_service_messages() -> None:
    _run_beside("kserve")
