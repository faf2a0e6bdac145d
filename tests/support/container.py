"""The container's command and environment, read from the Dockerfile's final stage, so tests run
the server exactly as the image does."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

from tests.support.paths import ROOT

DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            result.append(Instruction(keyword.upper(), arguments.strip()))
    return result


def final_stage(text: str) -> list[Instruction]:
    every = instructions(text)
    last_from = max(i for i, ins in enumerate(every) if ins.keyword == "FROM")
    return every[last_from:]


def environment(stage: list[Instruction]) -> dict[str, str]:
    """Every ``ENV key=value`` of the stage, in order (later ones win)."""
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for pair in shlex.split(ins.arguments):
                key, sep, value = pair.partition("=")
                if not sep:
                    raise ValueError(f"use ENV key=value, not {ins.arguments!r}")
                env[key] = value
    return env


def exec_form(ins: Instruction) -> list[str]:
    """The JSON array of a CMD or HEALTHCHECK ... CMD."""
    arguments = ins.arguments
    if ins.keyword == "HEALTHCHECK":
        arguments = arguments.split(" CMD ", 1)[1]
    command = json.loads(arguments)
    assert isinstance(command, list)
    assert all(isinstance(part, str) for part in command)
    return command


@dataclass(frozen=True)
class Container:
    command: list[str]
    env: dict[str, str]
    healthcheck: list[str]
    exposed: list[int]
    """The ports of its ``EXPOSE`` instructions (TCP), in order."""


def container() -> Container:
    stage = final_stage(DOCKERFILE.read_text())
    (cmd,) = [ins for ins in stage if ins.keyword == "CMD"]
    (health,) = [ins for ins in stage if ins.keyword == "HEALTHCHECK"]
    exposed = [
        int(port.removesuffix("/tcp")) for ins in stage if ins.keyword == "EXPOSE" for port in ins.arguments.split()
    ]
    return Container(exec_form(cmd), environment(stage), exec_form(health), exposed)
