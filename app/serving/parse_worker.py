"""The parse process's own program (``python -m app.serving.parse_worker``, started by
``app.serving.apart``): it reads requests from its standard input and answers each on its standard
output, one at a time, importing only what the parser needs (no torch, nothing of the server).

A request is a frame: 8 bytes of big-endian length, then a pickled ``(parse, limits, size)``,
then ``size`` bytes of JSON text; an answer is a frame holding a pickled ``(ok, value)``: the
parsed object, or the ``ServiceError`` the text gave. After each answer the memory the parse
freed goes back to the system.
"""

from __future__ import annotations

import pickle
import struct
import sys
from typing import IO

from app.core.allocator import trim_memory

LENGTH = struct.Struct(">Q")


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame's bytes, or None at the end of the stream."""
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None
    (size,) = LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return data


def write_frame(stream: IO[bytes], data: bytes) -> None:
    stream.write(LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    while (header := read_frame(requests)) is not None:
        parse, limits, size = pickle.loads(header)
        text = requests.read(size)
        try:
            answer: tuple[bool, object] = (True, parse(text, limits))
        except Exception as error:  # the text's own problem (a ServiceError), or the parser's
            answer = (False, error)
        del text
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        del answer
        write_frame(answers, data)
        del data
        trim_memory()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
