"""The command line's tensor files: ``.npy``, ``.npz``, ``.json``, or ``-`` for JSON on stdin."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from torchfn_client.arrays import BFLOAT16, Array
from torchfn_client.wire import decode_tensor


class UsageError(Exception):
    """A mistake on the command line (exit status 2)."""


def read_tensor(spec: str, name: str) -> Any:
    """The tensor in ``spec`` (a path, or ``-`` for stdin); from an ``.npz`` holding several
    arrays, the one called ``name``."""
    if spec == "-":
        return _from_json(sys.stdin.read(), "stdin")
    path = Path(spec)
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return _from_json(path.read_text(), spec)
        if suffix == ".npy":
            return _checked(np.load(path, allow_pickle=False), spec)
        if suffix == ".npz":
            return _from_npz(path, name)
    except OSError as error:
        raise UsageError(f"cannot read {spec}: {error.strerror or error}") from None
    except ValueError as error:
        raise UsageError(f"cannot read {spec}: {error}") from None
    raise UsageError(f"{spec}: tensor files are .npy, .npz, .json, or - (JSON on stdin)")


def _checked(array: Array, spec: str) -> Array:
    if array.dtype.kind not in "biuf":
        raise UsageError(f"{spec}: dtype {array.dtype} is not a tensor type of the service")
    return array


def _from_npz(path: Path, name: str) -> Array:
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.keys())
        if name in names:
            return _checked(archive[name], str(path))
        if len(names) == 1:
            return _checked(archive[names[0]], str(path))
    raise UsageError(f"{path}: holds {', '.join(names) or 'no arrays'}; expected one array, or one named {name!r}")


def _from_json(text: str, where: str) -> Any:
    """A JSON tensor: a number, a nested list, or the service's object form."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{where}: invalid JSON: {error}") from None
    if isinstance(value, dict):
        try:
            return decode_tensor(value, str(value.get("dtype", "float32")))
        except (KeyError, ValueError, TypeError) as error:
            raise UsageError(f"{where}: not a tensor object (shape, dtype, data): {error}") from None
    return value


def saveable(array: Array) -> Array:
    """numpy files cannot name bfloat16: it is saved as float32, which holds every value exactly."""
    return array.astype(np.float32) if array.dtype == BFLOAT16 else array


def write_arrays(path: str, arrays: dict[str, Array], document: dict[str, Any]) -> None:
    """``arrays`` to an ``.npz``, the first of them to an ``.npy``, or ``document`` to a ``.json``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        Path(path).write_text(json.dumps(document) + "\n")
    elif suffix == ".npz":
        np.savez(path, **{name: saveable(array) for name, array in arrays.items()})  # type: ignore[arg-type]
    elif suffix == ".npy":
        if len(arrays) > 1:
            raise UsageError(f"{path}: an .npy file holds one array; write the gradients to an .npz or .json")
        np.save(path, saveable(next(iter(arrays.values()))))
    else:
        raise UsageError(f"{path}: --out files are .npy, .npz or .json")
