"""A model's metadata as ``ModelMetadataResponse``: what the REST face's metadata says, in the
protobuf face's fields. Its tensors have no ``parameters`` there, so what an input's say (it is
optional; the kinds of element it accepts when two) travels in the response's ``properties``, as
``inputs.<name>.<parameter>``: ``inputs.weight.optional: "true"``,
``inputs.target.datatypes: "INT64,FP32"``."""

from __future__ import annotations

from app.protocols.oip.grpc.messages import ModelMetadataResponse
from app.protocols.oip.models import MetadataTensor, ModelMetadata


def _tensors(tensors: list[MetadataTensor]) -> list[ModelMetadataResponse.TensorMetadata]:
    return [
        ModelMetadataResponse.TensorMetadata(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        for tensor in tensors
    ]


def _property(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def model_metadata_response(metadata: ModelMetadata) -> ModelMetadataResponse:
    response = ModelMetadataResponse(
        name=metadata.name,
        versions=metadata.versions,
        platform=metadata.platform,
        inputs=_tensors(metadata.inputs),
        outputs=_tensors(metadata.outputs),
    )
    for tensor in metadata.inputs:
        for name, value in (tensor.parameters or {}).items():
            response.properties[f"inputs.{tensor.name}.{name}"] = _property(value)
    return response
