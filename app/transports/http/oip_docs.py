"""OpenAPI of the Open Inference Protocol's REST routes (/v2): error responses, the inference body
in its JSON and binary forms, and working examples generated from the catalogue."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.compute.catalogue import CATALOGUE
from app.protocols.oip.examples import infer_example
from app.protocols.oip.metadata import MODEL_VERSION
from app.protocols.oip.models import InferenceResponse, OipError

_DESCRIPTIONS = {
    400: "A bad request: unreadable JSON, an unknown input, output or parameter, a wrong shape, datatype or "
    "size; the message names the offending field.",
    404: "No such model (function) or version.",
    408: "The body stopped arriving before its declared length (the connection is then closed).",
    413: "The body or a tensor exceeds a configured limit.",
    415: "A Content-Encoding other than gzip or deflate.",
    500: "The device failed (no traceback is ever returned).",
    503: "Not ready (starting or stopping), or overloaded; retry after `Retry-After`.",
}


def oip_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": OipError, "description": _DESCRIPTIONS[status]} for status in statuses}


_BINARY_DESCRIPTION = (
    "Binary tensor data extension: the JSON object, then the raw little-endian bytes of each input that "
    "declares `parameters.binary_data_size`, in order. The `Inference-Header-Content-Length` header gives "
    "the JSON object's size. With `Inference-Header-Content-Length: 0` (Triton's raw binary request, for a "
    "model with one required input) the body is that input's bytes alone, in its metadata datatype."
)


def _examples() -> dict[str, dict[str, Any]]:
    relu = CATALOGUE.find("relu")
    cross_entropy = CATALOGUE.find("cross_entropy")
    assert relu is not None
    assert cross_entropy is not None
    plain = infer_example(relu)
    plain.pop("parameters", None)
    binary_out = {**plain, "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}
    return {
        "relu": {"summary": "relu (POST /v2/models/relu/infer)", "value": plain},
        "relu_with_gradient": {
            "summary": "relu and its gradient (POST /v2/models/relu/infer)",
            "value": {"id": "42", **infer_example(relu)},
        },
        "relu_binary_output": {
            "summary": "relu, output as raw bytes (POST /v2/models/relu/infer)",
            "value": binary_out,
        },
        "cross_entropy": {
            "summary": "cross_entropy with class indices (POST /v2/models/cross_entropy/infer)",
            "value": infer_example(cross_entropy),
        },
    }


def _path_parameter(name: str, description: str, example: str) -> dict[str, Any]:
    schema = {"type": "string", "description": description, "examples": [example], "title": name.title()}
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


MODEL_NAME = _path_parameter("name", "A function of the catalogue (name or alias).", "relu")
MODEL_VERSION_PARAMETER = _path_parameter("version", f"The only version is {MODEL_VERSION!r}.", MODEL_VERSION)
HEADER_LENGTH_PARAMETER: dict[str, Any] = {
    "name": "Inference-Header-Content-Length",
    "in": "header",
    "required": False,
    "schema": {"type": "integer", "minimum": 0},
    "description": "Size of the JSON object at the start of the body, when binary tensors follow it.",
}


def infer_request_body() -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}, "examples": _examples()},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": _BINARY_DESCRIPTION,
            },
        },
    }


INFER_REPLY = {
    "model": InferenceResponse,
    "description": "The outputs. With binary outputs the body is `application/octet-stream`: the JSON "
    "object (size in the `Inference-Header-Content-Length` response header), then each binary output's "
    "bytes, in order.",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


TAG = "open inference protocol"
TAG_DESCRIPTION = """
The [Open Inference Protocol](https://github.com/kserve/open-inference-protocol) (KServe V2 REST)
with Triton's binary tensor data extension: every function is a model named after it, so Triton's
own client works unchanged. Inputs are the function's tensor arguments (`input`, `target`, ...);
its parameters and `grad` go in the request's `parameters`; outputs are `output` (or `loss`) and,
with `grad`, one `grad_<argument>` per differentiable argument. `GET /functions/{name}` shows a
working request for every function under `open_inference_protocol`.

```python
import numpy as np
import tritonclient.http as triton

client = triton.InferenceServerClient("localhost:8000")
x = triton.InferInput("input", [2, 3], "FP32")
x.set_data_from_numpy(np.array([[-1.5, 0.2, 3.0], [0.7, -0.1, 2.5]], dtype=np.float32))
result = client.infer("relu", [x], parameters={"grad": True})
y, dy = result.as_numpy("output"), result.as_numpy("grad_input")
```
"""


def install_oip_openapi(app: FastAPI) -> None:
    """Call after ``install_openapi``: describes the protocol's tag and, since /v2 answers
    validation errors with 400, never FastAPI's 422, drops the generated 422 from its operations."""
    app.openapi_tags = [*(app.openapi_tags or []), {"name": TAG, "description": TAG_DESCRIPTION.strip()}]
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        for path, operations in schema.get("paths", {}).items():
            if path == "/v2" or path.startswith("/v2/"):
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
