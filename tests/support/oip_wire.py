"""Test helpers for the Open Inference Protocol, written from its specification and from Triton's
binary tensor data extension, independently of the service's own code."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import torch

HEADER_LENGTH = "Inference-Header-Content-Length"

DATATYPE_OF: dict[torch.dtype, str] = {
    torch.float16: "FP16",
    torch.float32: "FP32",
    torch.float64: "FP64",
    torch.bfloat16: "BF16",
    torch.int64: "INT64",
    torch.int32: "INT32",
    torch.int16: "INT16",
    torch.int8: "INT8",
    torch.uint8: "UINT8",
}
_BITS: dict[str, torch.dtype] = {"BF16": torch.int16}


def raw_bytes(tensor: torch.Tensor) -> bytes:
    """Little-endian row-major bytes; BF16 as its 16-bit patterns."""
    tensor = tensor.contiguous()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.int16)
    return tensor.numpy().astype(tensor.numpy().dtype.newbyteorder("<")).tobytes()


def from_raw(raw: bytes, datatype: str, shape: list[int]) -> torch.Tensor:
    dtypes = {v: k for k, v in DATATYPE_OF.items()}
    dtype = dtypes[datatype]
    read_as = _BITS.get(datatype, dtype)
    numpy_dtype = torch.empty(0, dtype=read_as).numpy().dtype.newbyteorder("<")
    tensor = torch.from_numpy(np.frombuffer(bytearray(raw), dtype=numpy_dtype).reshape(shape).copy())
    return tensor.view(dtype) if read_as != dtype else tensor


def from_json(data: list[Any], datatype: str, shape: list[int]) -> torch.Tensor:
    dtypes = {v: k for k, v in DATATYPE_OF.items()}
    tokens = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
    values = [tokens[v] if isinstance(v, str) else v for v in data]
    if datatype.startswith("FP") or datatype == "BF16":
        return torch.tensor(values, dtype=torch.float64).to(dtypes[datatype]).reshape(shape)
    return torch.tensor(values, dtype=dtypes[datatype]).reshape(shape)


def _token(value: float | int) -> float | int | str:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def json_input(name: str, tensor: torch.Tensor) -> dict[str, Any]:
    """Non-finite values as the strings "NaN", "Infinity", "-Infinity"."""
    values = tensor.double() if tensor.is_floating_point() else tensor
    return {
        "name": name,
        "shape": list(tensor.shape),
        "datatype": DATATYPE_OF[tensor.dtype],
        "data": [_token(v) for v in values.reshape(-1).tolist()],
    }


def binary_input(name: str, tensor: torch.Tensor) -> tuple[dict[str, Any], bytes]:
    raw = raw_bytes(tensor)
    entry = {
        "name": name,
        "shape": list(tensor.shape),
        "datatype": DATATYPE_OF[tensor.dtype],
        "parameters": {"binary_data_size": len(raw)},
    }
    return entry, raw


def binary_body(request: dict[str, Any], chunks: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a request whose binary tensors follow the JSON object."""
    header = orjson.dumps(request)
    return header + b"".join(chunks), {HEADER_LENGTH: str(len(header)), "content-type": "application/octet-stream"}


def parse_reply(content: bytes, headers: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The response object and every output as a tensor, JSON or binary."""
    length = headers.get(HEADER_LENGTH)
    size = len(content) if length is None else int(length)
    reply: dict[str, Any] = orjson.loads(content[:size])
    offset = size
    tensors: dict[str, torch.Tensor] = {}
    for output in reply["outputs"]:
        binary = (output.get("parameters") or {}).get("binary_data_size")
        if binary is not None:
            tensors[output["name"]] = from_raw(content[offset : offset + binary], output["datatype"], output["shape"])
            offset += binary
        else:
            tensors[output["name"]] = from_json(output["data"], output["datatype"], output["shape"])
    assert offset == len(content), "the binary outputs must account for every byte after the header"
    return reply, tensors
