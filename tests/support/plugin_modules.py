"""Plugin modules written by the tests: each test gets a fresh module (its own name) on sys.path."""

from __future__ import annotations

import importlib
import itertools
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.paths import ROOT

EXAMPLES = ROOT / "examples" / "torchfn_examples"

FRESH = '''
from typing import Literal

import torch
from torch import nn


class CustomActivation(nn.Module):
    """A gated activation written for the test."""

    def __init__(self, beta: float = 1.0, clip: bool = False, power: int = 1):
        super().__init__()
        self.beta, self.clip, self.power = beta, clip, power

    def forward(self, x):
        y = x * torch.sigmoid(self.beta * x) ** self.power
        return y.clamp(max=1.0) if self.clip else y


class CustomLoss(nn.Module):
    def __init__(self, delta: float = 0.5, reduction: Literal["mean", "sum", "none"] = "mean"):
        super().__init__()
        self.delta, self.reduction = delta, reduction

    def forward(self, y_pred, y_true, mask=None):
        error = torch.nn.functional.huber_loss(y_pred, y_true, reduction="none", delta=self.delta)
        if mask is not None:
            error = error * mask
        return {"mean": error.mean, "sum": error.sum, "none": lambda: error}[self.reduction]()


class Fragile(nn.Module):
    def forward(self, x):
        if bool((x == 13).any()):
            raise KeyError("unlucky number")
        if x.ndim > 2:
            raise ValueError(f"expected at most 2 dimensions, got size {list(x.shape)}")
        return x * 2


def soft_clip(x, *, limit: float = 3.0):
    return limit * torch.tanh(x / limit)
'''

TUTORIAL = '''
import torch
from torch import nn

from app.plugins import InputRejected


class ScaledSwish(nn.Module):
    """x * sigmoid(beta * x), scaled."""

    def __init__(self, beta: float = 1.0, scale: float = 1.0):
        super().__init__()
        self.beta, self.scale = beta, scale

    def forward(self, x):
        return self.scale * x * torch.sigmoid(self.beta * x)


class HuberishLoss(nn.Module):
    """Huber's loss as a tutorial writes one: a typed delta, no reduction, the batch's mean."""

    def __init__(self, delta: float = 1.0):
        super().__init__()
        self.delta = delta

    def forward(self, y_pred, y_true):
        error = (y_pred - y_true).abs()
        quadratic = torch.clamp(error, max=self.delta)
        return (0.5 * quadratic**2 + self.delta * (error - quadratic)).mean()


class PickyLoss(nn.Module):
    """Refuses predictions outside [-1, 1] (a 422 naming the range, in its own words: the one error
    type whose text reaches the client)."""

    def forward(self, y_pred, y_true):
        if bool((y_pred.abs() > 1).any()):
            raise InputRejected("prediction out of range [-1, 1]", "y_pred")
        return ((y_pred - y_true) ** 2).mean()
'''
"""Plugins as the tutorial in docs/plugins.md writes them (no ``reduction``), for the explorer."""
HOSTILE = '''
"""Plugins that misbehave when an input holds 13 (their examples, run at start-up, do not)."""
import torch
from torch import nn

from app.plugins import Function, InputRejected, elementwise


def unlucky(x):
    return bool((x == 13).any())


class Float64Out(nn.Module):
    def forward(self, x):
        return (x.double() if unlucky(x) else x) * 2


class Float16Out(nn.Module):
    def forward(self, x):
        return (x.half() if unlucky(x) else x) * 2


def crelu64(x):
    """CReLU, 64 times wider."""
    return torch.cat([torch.relu(x), torch.relu(-x)] * 32, dim=-1)


class Wide(nn.Module):
    """Wider than its input, and not declared so."""

    def forward(self, x):
        return crelu64(x)


class WideDeclared(nn.Module):
    def forward(self, x):
        return crelu64(x)


WIDE_DECLARED = Function(WideDeclared, cost=elementwise(60.0, memory_per_element=70.0))


class CustomStop(BaseException):
    pass


class Exits(nn.Module):
    def forward(self, x):
        if unlucky(x):
            raise SystemExit(3)
        return x


class Interrupts(nn.Module):
    def forward(self, x):
        if unlucky(x):
            raise KeyboardInterrupt
        return x


class Stops(nn.Module):
    def forward(self, x):
        if unlucky(x):
            raise CustomStop("stopped")
        return x


class Leaky(nn.Module):
    def forward(self, x):
        if unlucky(x):
            raise RuntimeError("buffer size exceeded reading /srv/rt/private/model.bin (api_key=hunter2)")
        return x


class Refuses(nn.Module):
    def forward(self, x):
        if unlucky(x):
            raise InputRejected("no element may be 13", argument="input")
        return x
'''
HOSTILE_ENTRIES = (
    "Float64Out",
    "Float16Out",
    "Wide",
    "WIDE_DECLARED",
    "Exits",
    "Interrupts",
    "Stops",
    "Leaky",
    "Refuses",
)

_counter = itertools.count()


def module_file(directory: Path, source: str) -> str:
    """A new module holding ``source`` in ``directory``; returns its name (importable once the
    directory is on the path)."""
    name = f"fresh_plugins_{next(_counter)}"
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def write_module(directory: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new importable module holding ``source``; returns its name."""
    name = module_file(directory, source)
    monkeypatch.syspath_prepend(str(directory))
    importlib.invalidate_caches()
    return name


def examples(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The shipped example package, importable."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module("torchfn_examples")


def forget(prefix: str) -> None:
    for name in [n for n in sys.modules if n.startswith(prefix)]:
        del sys.modules[name]
