"""The protocol's message classes, built from the committed file descriptor in a private pool.

``tritonclient.grpc`` and ``kserve`` each register their own copy of the protocol, the same
``inference.*`` names, in protobuf's default descriptor pool (and so cannot be imported together,
kserve/kserve#3099); these classes never touch that pool, so either client can share a process
with the service. Their types are in ``messages.pyi`` (mypy-protobuf), generated with the
descriptor by scripts/compile-proto.
"""

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from app.protocols.oip.grpc.descriptor import SERIALIZED

_POOL = descriptor_pool.DescriptorPool()
DESCRIPTOR = _POOL.AddSerializedFile(SERIALIZED)


def _message_class(name: str) -> type[Message]:  # messages.pyi types each class this module exports
    return message_factory.GetMessageClass(DESCRIPTOR.message_types_by_name[name])


ServerLiveRequest = _message_class("ServerLiveRequest")
ServerLiveResponse = _message_class("ServerLiveResponse")
ServerReadyRequest = _message_class("ServerReadyRequest")
ServerReadyResponse = _message_class("ServerReadyResponse")
ModelReadyRequest = _message_class("ModelReadyRequest")
ModelReadyResponse = _message_class("ModelReadyResponse")
ServerMetadataRequest = _message_class("ServerMetadataRequest")
ServerMetadataResponse = _message_class("ServerMetadataResponse")
ModelMetadataRequest = _message_class("ModelMetadataRequest")
ModelMetadataResponse = _message_class("ModelMetadataResponse")
ModelInferRequest = _message_class("ModelInferRequest")
ModelInferResponse = _message_class("ModelInferResponse")
InferParameter = _message_class("InferParameter")
InferTensorContents = _message_class("InferTensorContents")
