"""The compute threads: a fixed pool of daemon threads.

``ThreadPoolExecutor`` joins its threads when the interpreter exits, so a computation that cannot
be interrupted (a torch call runs to its end) would hold the process past its shutdown grace
period. These threads are daemons: once the service has stopped waiting for them, the process
exits whatever they are doing.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class EscapedBaseException(Exception):
    """A ``BaseException`` that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``, a
    subclass of its own), raised by work on a compute thread: handed to the caller as an ordinary
    error that fails that work alone. Raised as it is, it would be re-raised on the event loop,
    where asyncio lets it through every handler and out of the server."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"a compute thread's work raised {type(error).__name__}")
        self.__cause__ = error


class DaemonThreadPool(Executor):
    def __init__(self, workers: int, name: str) -> None:
        if workers < 1:
            raise ValueError("a pool needs at least one thread")
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._serve, name=f"{name}_{index}", daemon=True) for index in range(workers)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the compute threads have been shut down")
            future: Future[T] = Future()
            self._work.put((future, fn, args, kwargs))
            return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            if cancel_futures:
                while True:
                    try:
                        work = self._work.get_nowait()
                    except queue.Empty:
                        break
                    if work is not None:
                        work[0].cancel()
            for _ in self.threads:
                self._work.put(None)
        if wait:
            for thread in self.threads:
                thread.join()

    def _serve(self) -> None:
        while True:
            work = self._work.get()
            if work is None:
                return
            future, fn, args, kwargs = work
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except Exception as error:  # handed to the waiting caller, as ThreadPoolExecutor does
                future.set_exception(error)
            except BaseException as error:  # SystemExit, KeyboardInterrupt... from the work's own code
                future.set_exception(EscapedBaseException(error))
            else:
                future.set_result(result)
