"""The parse process (``app.serving.apart``): large JSON texts parsed in a process of its own come
back as the same objects, their errors as the same errors, and a process that dies costs the request
in hand a 503, never the server, and is started afresh for the next text."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.core.errors import MalformedRequest, Overloaded
from app.core.limits import TensorLimits
from app.main import create_app
from app.protocols import parsing
from app.protocols.tensors import Predecoded
from app.serving.apart import ParseProcess
from tests.support import crashing_parse
from tests.support.paths import ROOT

LIMITS = TensorLimits(max_elements=1_000_000, max_rank=8)


@pytest.fixture
def process(monkeypatch: pytest.MonkeyPatch) -> Iterator[ParseProcess]:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the parse process imports tests.support's parsers
    parser = ParseProcess()
    yield parser
    parser.close()


def _pid(parser: ParseProcess) -> int:
    running = parser._process  # the process in use, to tell a restarted one from the first
    assert running is not None
    return running.pid


def test_a_text_parsed_apart_is_the_object_parsed_here(process: ParseProcess) -> None:
    body = {"function": "relu", "input": [[float(i), -1.5] for i in range(3000)], "note": "é"}
    text = orjson.dumps(body)
    parsed = asyncio.run(process.parse(parsing.parse_apart, text, LIMITS))
    assert parsed["function"] == "relu"
    assert parsed["note"] == "é"
    assert isinstance(parsed["input"], Predecoded)
    assert parsed["input"].at(("body", "input")).tolist() == body["input"]
    again = asyncio.run(process.parse(parsing.parse_apart, b'{"input": [1, 2]}', LIMITS))
    assert again == {"input": [1, 2]}


def test_a_texts_error_comes_back_as_the_same_error(process: ParseProcess) -> None:
    with pytest.raises(MalformedRequest) as apart:
        asyncio.run(process.parse(parsing.parse_apart, b'{"input": [1, 2', LIMITS))
    with pytest.raises(MalformedRequest) as here:
        parsing.parse_apart(b'{"input": [1, 2', LIMITS)
    assert apart.value.problems == here.value.problems
    first = _pid(process)
    asyncio.run(process.parse(parsing.parse_apart, b"{}", LIMITS))
    assert _pid(process) == first, "an invalid text must not cost the process"


def test_a_process_that_dies_costs_its_request_a_503_and_is_started_afresh(process: ParseProcess) -> None:
    asyncio.run(process.parse(parsing.parse_apart, b"{}", LIMITS))
    first = _pid(process)
    with pytest.raises(Overloaded) as failed:
        asyncio.run(process.parse(crashing_parse.exit_abruptly, b"{}", LIMITS))
    assert failed.value.problems[0].type == "parse_failed"
    assert process._process is None
    assert asyncio.run(process.parse(parsing.parse_apart, b'{"a": 1}', LIMITS)) == {"a": 1}
    assert _pid(process) != first


def test_a_process_killed_between_texts_is_started_afresh(process: ParseProcess) -> None:
    asyncio.run(process.parse(parsing.parse_apart, b"{}", LIMITS))
    first = _pid(process)
    os.kill(first, signal.SIGKILL)
    assert process._process is not None
    process._process.wait()
    assert asyncio.run(process.parse(parsing.parse_apart, b'{"b": 2}', LIMITS)) == {"b": 2}
    assert _pid(process) != first


def test_a_parsers_own_exception_is_raised_here_not_lost(process: ParseProcess) -> None:
    with pytest.raises(LookupError, match="a parser bug"):
        asyncio.run(process.parse(crashing_parse.raise_unexpected, b"{}", LIMITS))
    assert asyncio.run(process.parse(parsing.parse_apart, b"{}", LIMITS)) == {}


def test_close_stops_the_process(process: ParseProcess) -> None:
    asyncio.run(process.parse(parsing.parse_apart, b"{}", LIMITS))
    running = process._process
    assert running is not None
    process.close()
    assert running.poll() is not None
    assert process._process is None


LARGE = [i / 7 for i in range(-6000, 6000)]
LARGE_BODIES = [
    ("/activate", {"function": "hardtanh", "input": LARGE, "params": {"min_val": -0.5}}),
    ("/loss", {"function": "mse_loss", "input": LARGE, "target": [0.5] * len(LARGE), "grad": True}),
    ("/v2/models/gelu/infer", {"inputs": [{"name": "input", "shape": [2, 6000], "datatype": "FP64", "data": LARGE}]}),
]


@pytest.mark.parametrize(("path", "body"), LARGE_BODIES)
def test_the_service_answers_a_body_parsed_apart_as_one_parsed_in_process(path: str, body: dict[str, object]) -> None:
    """The same body, parsed in the server (the threshold above it) and in the parse process (the
    threshold below it), gets the same answer, byte for byte."""
    answers = []
    for threshold in (64 * 1024 * 1024, 1024):
        settings = Settings(parse_apart_bytes=threshold, inline_decode_bytes=1024)
        app = create_app(settings)
        with TestClient(app) as client:
            reply = client.post(path, json=body)
            assert reply.status_code == 200, reply.text
            answers.append(orjson.loads(reply.content))
    for answer in answers:
        answer.pop("id", None)
        for output in answer.get("outputs", []):
            output.pop("parameters", None)
    assert answers[0] == answers[1]


def test_a_malformed_body_parsed_apart_is_refused_in_the_same_words() -> None:
    text = b'{"function": "relu", "input": [' + b"1.0, " * 2000 + b"oops]}"
    replies = []
    for threshold in (64 * 1024 * 1024, 1024):
        with TestClient(create_app(Settings(parse_apart_bytes=threshold, inline_decode_bytes=1024))) as client:
            replies.append(client.post("/activate", content=text, headers={"content-type": "application/json"}))
    assert [reply.status_code for reply in replies] == [400, 400]
    assert replies[0].json() == replies[1].json()


def test_errors_cross_the_pipe_with_their_problems() -> None:
    error = MalformedRequest.at(("body", "input"), "bad", "json_invalid")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is MalformedRequest
    assert copy.problems == error.problems
