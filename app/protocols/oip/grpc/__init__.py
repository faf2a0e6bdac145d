"""The Open Inference Protocol over gRPC: its pinned ``.proto``, the message classes compiled from
it, the protobuf face's tensors, and the bounds of the gRPC server."""
