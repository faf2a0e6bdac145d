"""MLServer's codecs and types against a running server: ``python -m tests.support.mlserver_peer URL``
prints the name of each check as it passes and exits non-zero at the first failure.

In a process of its own: MLServer's generated gRPC code and KServe's define the same protobuf
symbols (package ``inference``), which one process cannot hold, and tests/system/test_oip_peers.py
imports KServe. Each answer is compared with torch and validated against the protocol's schema."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

import httpx
import numpy as np
import torch
import torch.nn.functional as F

from tests.support.oip_schema import INFER, assert_valid
from tests.support.reference import assert_same

with warnings.catch_warnings():  # MLServer's REST module names a status code Starlette has renamed
    warnings.simplefilter("ignore", DeprecationWarning)
    from mlserver.codecs import NumpyCodec, NumpyRequestCodec
    from mlserver.types import InferenceRequest, InferenceResponse, MetadataModelResponse, MetadataServerResponse

X = np.array([[-1.5, 0.25, 3.0], [0.7, -0.1, 2.0]], dtype=np.float32)


def _infer(url: str, model: str, request: InferenceRequest) -> InferenceResponse:
    response = httpx.post(
        f"{url}/v2/models/{model}/infer",
        content=request.model_dump_json(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert_valid(response.json(), INFER, "post", 200)
    return InferenceResponse.model_validate_json(response.content)


def numpy_request_codec(url: str) -> None:
    """NumpyRequestCodec writes content_type "np" at request and input level."""
    request = NumpyRequestCodec.encode_request(X)
    request.inputs[0].name = "input"  # the codec names its one input input-1
    assert request.parameters is not None
    assert request.parameters.content_type == "np"
    assert request.inputs[0].parameters is not None
    assert request.inputs[0].parameters.content_type == "np"
    response = _infer(url, "softplus", request)
    assert response.parameters is None  # nothing ignored
    assert_same(torch.from_numpy(NumpyRequestCodec.decode_response(response)), F.softplus(torch.from_numpy(X)))


def numpy_codec_for_each_input_of_a_loss(url: str) -> None:
    x = np.array([[0.5, -1.0], [2.0, 0.0]], dtype=np.float64)
    y = np.array([[1.0, 0.0], [1.5, -0.5]], dtype=np.float64)
    request = InferenceRequest(
        parameters={"content_type": "np", "reduction": "sum", "grad": True},
        inputs=[NumpyCodec.encode_input("input", x), NumpyCodec.encode_input("target", y)],
    )
    response = _infer(url, "huber_loss", request)
    decoded = {output.name: NumpyCodec.decode_output(output) for output in response.outputs}
    a, b = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(y).requires_grad_(True)
    loss = F.huber_loss(a, b, reduction="sum")
    grad_a, grad_b = torch.autograd.grad(loss, (a, b))
    assert_same(torch.from_numpy(np.asarray(decoded["loss"])).reshape(()), loss.detach())
    assert_same(torch.from_numpy(decoded["grad_input"]), grad_a)
    assert_same(torch.from_numpy(decoded["grad_target"]), grad_b)


def types_read_the_metadata(url: str) -> None:
    server = MetadataServerResponse.model_validate_json(httpx.get(f"{url}/v2").content)
    assert {"statistics", "model_configuration"} <= set(server.extensions)
    model = MetadataModelResponse.model_validate_json(httpx.get(f"{url}/v2/models/ctc_loss").content)
    inputs = model.inputs or []
    assert [(i.name, i.datatype) for i in inputs] == [
        ("log_probs", "FP32"),
        ("targets", "INT64"),
        ("input_lengths", "INT64"),
        ("target_lengths", "INT64"),
        ("grad_output", "FP32"),
    ]
    optional = [i.name for i in inputs if i.parameters is not None and getattr(i.parameters, "optional", False)]
    assert optional == ["grad_output"]


CHECKS: dict[str, Callable[[str], None]] = {
    "numpy_request_codec": numpy_request_codec,
    "numpy_codec_for_each_input_of_a_loss": numpy_codec_for_each_input_of_a_loss,
    "types_read_the_metadata": types_read_the_metadata,
}


def main(url: str) -> None:
    for name, check in CHECKS.items():
        check(url)
        print(name, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
