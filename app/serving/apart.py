"""The parse process: large JSON texts are parsed in a process of their own, so that the server's
event loop never waits for the interpreter lock while one is parsed (``app.protocols.parsing``
says why). One process (``parse_worker.py``), started with the first large text and kept: texts
are parsed one at a time, so at most one large parse's memory is in use (held in the request's
memory reservation meanwhile), and the process gives its freed memory back after each. The pipes
are read and written, and the answer unpickled, in a worker thread; a process that dies is
answered 503 and started afresh for the next text."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import subprocess
import sys
import threading
from typing import IO, Any

from app.core.errors import Overloaded
from app.core.limits import TensorLimits
from app.serving.codec import ParseApart
from app.serving.parse_worker import read_frame, write_frame

logger = logging.getLogger(__name__)
COMMAND = [sys.executable, "-m", "app.serving.parse_worker"]


class ParseProcess:
    """Started lazily; stopped by the app's lifespan (``close``)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._turn = threading.Lock()
        """One text at a time through the pipes (held in the worker thread)."""

    async def parse(self, parse: ParseApart, text: bytes, limits: TensorLimits) -> Any:
        """``parse(text, limits)`` in the parse process; what it raises is raised here (a
        ``ServiceError`` with its problems); 503 when the process fails."""
        ok, value = await asyncio.to_thread(self._exchange, parse, text, limits)
        if not ok:
            raise value
        return value

    def _exchange(self, parse: ParseApart, text: bytes, limits: TensorLimits) -> tuple[bool, Any]:
        with self._turn:
            process = self._started()
            stdin, stdout = process.stdin, process.stdout
            assert stdin is not None
            assert stdout is not None
            try:
                write_frame(stdin, pickle.dumps((parse, limits, len(text))))
                stdin.write(text)
                stdin.flush()
                answer = read_frame(stdout)
            except OSError:
                answer = None
            if answer is None:
                self._stop()
                logger.error("the parse process failed (exit status %s)", process.poll())
                raise Overloaded.at(("service",), "the parse process failed; retry", "parse_failed")
            result: tuple[bool, Any] = pickle.loads(answer)
            return result

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is not None:
            logger.warning("the parse process had exited (status %s); starting another", self._process.poll())
            self._stop()  # its pipes closed
        if self._process is None:
            self._process = subprocess.Popen(COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return self._process

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout) if process is not None else ():
            _close(stream)

    def close(self) -> None:
        """Stop the process (its standard input closed: it exits after its text in hand)."""
        process, self._process = self._process, None
        if process is None:
            return
        _close(process.stdin)
        try:
            process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _close(process.stdout)


def _close(stream: IO[bytes] | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError):
            stream.close()
