"""The Open Inference Protocol's REST OpenAPI document (tests/data/open_inference_rest.yaml, its
source and commit in its first lines), and replies checked against its schemas."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import jsonschema
import yaml

from tests.support.paths import ROOT

SPEC_PATH = ROOT / "tests" / "data" / "open_inference_rest.yaml"
INFER = "/v2/models/${MODEL_NAME}/versions/${MODEL_VERSION}/infer"
MODEL = "/v2/models/${MODEL_NAME}/versions/${MODEL_VERSION}"


@cache
def spec_document() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return spec


@cache
def _binary_spec() -> dict[str, Any]:
    """The schema as the binary tensor data extension amends it: a binary output has no ``data``."""
    spec = copy.deepcopy(spec_document())
    spec["components"]["schemas"]["response_output"]["required"].remove("data")
    return spec


def assert_valid(body: Any, path: str, method: str, status: int, binary: bool = False) -> None:
    """``body`` is what the protocol's OpenAPI document declares for that path, method and status
    (``binary``: a reply of the binary tensor data extension, whose binary outputs have no ``data``)."""
    spec = _binary_spec() if binary else spec_document()
    response = spec["paths"][path][method]["responses"][str(status)]
    schema = {**response["content"]["application/json"]["schema"], "components": spec["components"]}
    jsonschema.Draft4Validator(schema).validate(body)
