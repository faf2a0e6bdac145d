"""Each catalogue example as an Open Inference Protocol inference request, generated, not written."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.compute.catalogue import Catalogue, FunctionSpec
from app.protocols.oip.metadata import OPTIONAL_INPUT_GRAD_OUTPUT, input_names, output_names, required_inputs
from app.protocols.oip.tensors import DATATYPE_OF


def _example_tensors(spec: FunctionSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors by input name, scalar parameters) of the catalogue example."""
    example = spec.example
    tensors: dict[str, Any] = {name: example[name] for name in ("input", "target") if name in example}
    tensors.update(example.get("inputs", {}))
    params = {name: value for name, value in example.get("params", {}).items() if value is not None}
    for param in spec.tensor_params:
        if param.name in params:
            tensors[param.name] = params.pop(param.name)
    if example.get("grad_output") is not None:
        tensors[OPTIONAL_INPUT_GRAD_OUTPUT] = example["grad_output"]
    return tensors, params


def _input(spec: FunctionSpec, name: str, value: Any, float_datatype: str) -> dict[str, Any]:
    arr = np.asarray(value)
    arg = spec.tensor(name)
    integer = arg is not None and arg.kind != "float" and arr.dtype.kind in "iu"
    data = arr.reshape(-1).tolist()
    return {
        "name": name,
        "shape": list(arr.shape),
        "datatype": "INT64" if integer else float_datatype,
        "data": data if integer else [float(x) for x in data],
    }


def infer_example(spec: FunctionSpec) -> dict[str, Any]:
    """The body of ``POST /v2/models/{spec.name}/infer`` that computes the catalogue example."""
    tensors, params = _example_tensors(spec)
    float_datatype = DATATYPE_OF[spec.example.get("dtype") or "float32"]
    body: dict[str, Any] = {}
    parameters = {**params, **({"grad": True} if spec.example.get("grad") else {})}
    if parameters:
        body["parameters"] = parameters
    body["inputs"] = [_input(spec, name, value, float_datatype) for name, value in tensors.items()]
    return body


def catalogue_entry(spec: FunctionSpec) -> dict[str, Any]:
    """The catalogue's description of ``spec`` with how to call it through the protocol too."""
    return {
        **Catalogue.describe(spec),
        "open_inference_protocol": {
            "infer": f"/v2/models/{spec.name}/infer",
            "metadata": f"/v2/models/{spec.name}",
            "inputs": list(required_inputs(spec)),
            "optional_inputs": [name for name in input_names(spec) if name not in required_inputs(spec)],
            "outputs": list(output_names(spec)),
            "parameters": "the function's params, and grad (true for the gradient outputs)",
            "example": infer_example(spec),
        },
    }
