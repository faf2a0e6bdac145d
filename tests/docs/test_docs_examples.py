"""Every example of the README and of docs/*.md runs, as written, against the real server, and
prints what the page shows after it.

The rule: a ``bash`` or ``python`` block is run unless a ``<!-- not run: why -->`` comment stands
right before it (make, docker and kubectl commands, package installs; pytest lists them as skipped,
with the reason). A block that is run must be followed at once by the block it prints: ``json``
(stdout parsed as JSON, or one JSON document a line, compared exactly) or plain text (compared
exactly). ``localhost:8000`` becomes the test server's address and ``TORCHFN_URL`` names it,
``localhost:8001`` its gRPC face's, so the blocks run verbatim otherwise: Python ones with this
interpreter (the dev environment, which has what the README tells a client to install), shell ones
with bash, in an empty directory each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.markdown_docs import PAGES, CodeBlock, code_blocks
from tests.support.paths import ROOT
from tests.support.server_process import RunningServer, running_server

pytestmark = pytest.mark.server

BLOCKS = [block for page in PAGES for block in code_blocks(page)]
README = (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    # The numbers shown are the CPU's: on a GPU, torch's kernels may round some differently.
    with running_server(env={"TORCHFN_DEVICE": "cpu", "TORCHFN_WORKERS": "1"}) as running:
        yield running


def run_block(block: CodeBlock, server_url: str, cwd: Path, grpc_address: str | None = None) -> str:
    """What ``block`` prints on stdout, run against the server at ``server_url`` (and its gRPC face
    at ``grpc_address``)."""
    address = server_url.removeprefix("http://")
    code = block.code.replace("localhost:8000", address)
    if grpc_address is not None:
        code = code.replace("localhost:8001", grpc_address)
    env = {
        **os.environ,
        "TORCHFN_URL": server_url,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # python, torchfn
    }
    command = [sys.executable, "-c", code] if block.language == "python" else ["bash", "-euo", "pipefail", "-c", code]
    run = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"{block.where} exited with {run.returncode}:\n{run.stderr[-3000:]}"
    return run.stdout


def parsed_json(text: str) -> Any:
    """One JSON document, or a list of them when there is one a line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def check_output(printed: str, shown: str, language: str) -> None:
    if language == "json":
        assert parsed_json(printed) == parsed_json(shown)
    else:
        assert printed.rstrip("\n") == shown.rstrip("\n")


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_example_prints_what_the_page_shows(block: CodeBlock, server: RunningServer, tmp_path: Path) -> None:
    if block.not_run is not None:
        pytest.skip(f"{block.where} not run: {block.not_run}")
    assert block.output is not None, (
        f"{block.where}: add the output it prints right after it, or mark it <!-- not run: why -->"
    )
    check_output(run_block(block, server.url, tmp_path, server.grpc_address), block.output, block.output_language)


def test_the_comparison_can_fail() -> None:
    check_output('{"a": [1.0, 2]}\n', '{"a":[1,2.0]}', "json")
    check_output('{"a": 1}\n{"b": 2}\n', '{"a": 1}\n{"b": 2}\n', "json")
    with pytest.raises(AssertionError):
        check_output('{"a": [1.0, 2.5]}', '{"a": [1.0, 2.0]}', "json")
    with pytest.raises(AssertionError):
        check_output("[[0.1 1. ]]\n", "[[0.1 1.0]]\n", "")


def test_the_readme_runs_examples_and_says_what_a_client_installs_first() -> None:
    readme_blocks = [block for block in BLOCKS if block.page.name == "README.md"]
    run = [block for block in readme_blocks if block.not_run is None]
    assert {block.language for block in run} == {"bash", "python"}
    assert any("curl " in block.code for block in run)
    assert any("torchfn " in block.code for block in run)
    before_python = README.split("```python", 1)[0]
    httpx_pin = next(line for line in (ROOT / "requirements-dev.txt").read_text().splitlines() if "httpx==" in line)
    assert f"pip install '{httpx_pin}' numpy" in before_python
    assert "pip install './clients/python'" in before_python
