"""What the command line prints: JSON documents (piped, or ``--json``) and tables (on a terminal)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from torchfn_client.arrays import BFLOAT16, Array
from torchfn_client.errors import APIError
from torchfn_client.results import ActivationResult, FunctionInfo, LossResult


def json_values(array: Array) -> Any:
    """Exact JSON values, each the shortest decimal that reads back as the same value of its dtype
    (float32 ``0.15``, not the float64 ``0.15000000596046448``; bfloat16 as float32); non-finite
    ones as the service writes them ("NaN", "Infinity", "-Infinity")."""
    if array.dtype.kind in "iu":
        return array.tolist()
    shortest = (array.astype(np.float32) if array.dtype == BFLOAT16 else array).astype(str).astype(np.float64)
    values = shortest.tolist()
    return values if bool(np.isfinite(shortest).all()) else _tokens(values)


def _tokens(value: Any) -> Any:
    if isinstance(value, list):
        return [_tokens(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def activation_document(result: ActivationResult[Array]) -> dict[str, Any]:
    return {
        "function": result.function,
        "dtype": result.dtype,
        "shape": list(result.output.shape),
        "output": json_values(result.output),
        "grad": None if result.grad is None else json_values(result.grad),
    }


def loss_document(result: LossResult[Array]) -> dict[str, Any]:
    return {
        "function": result.function,
        "dtype": result.dtype,
        "shape": list(result.loss.shape),
        "loss": json_values(result.loss),
        "grad": None if result.grad is None else {name: json_values(g) for name, g in result.grad.items()},
    }


def function_document(info: FunctionInfo) -> dict[str, Any]:
    return dict(info.raw)


def functions_document(infos: Sequence[FunctionInfo]) -> list[dict[str, Any]]:
    return [
        {"name": info.name, "kind": info.kind, "aliases": list(info.aliases), "summary": info.summary} for info in infos
    ]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, the last one unpadded."""
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers) - 1)]
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def functions_table(infos: Sequence[FunctionInfo]) -> str:
    rows = [[info.name, info.kind, ", ".join(info.aliases), info.summary] for info in infos]
    return table(["NAME", "KIND", "ALIASES", "SUMMARY"], rows)


def _param_range(param: Mapping[str, Any]) -> str:
    if "choices" in param:
        return " | ".join(str(choice) for choice in param["choices"])
    bounds = [
        f"{op} {param[key]}" for key, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")) if key in param
    ]
    return ", ".join(bounds)


def function_table(info: FunctionInfo) -> str:
    head = [
        ["name", info.name],
        ["kind", info.kind],
        ["aliases", ", ".join(info.aliases) or "-"],
        ["summary", info.summary],
        ["tensors", ", ".join(info.tensors)],
        ["gradient wrt", ", ".join(info.gradient_wrt) or "-"],
    ]
    text = table(["FIELD", "VALUE"], head)
    if info.params:
        rows = [
            [str(p["name"]), str(p.get("type", "")), repr(p.get("default")), _param_range(p), str(p.get("doc", ""))]
            for p in info.params
        ]
        text += "\n\n" + table(["PARAMETER", "TYPE", "DEFAULT", "RANGE", "DOC"], rows)
    return text


def _array_text(array: Array) -> str:
    return np.array2string(array, threshold=200, edgeitems=4, max_line_width=100)


def activation_table(result: ActivationResult[Array], written: str | None) -> str:
    rows = [["function", result.function], ["dtype", result.dtype], ["shape", str(list(result.output.shape))]]
    if written:
        rows.append(["written to", written])
        return table(["FIELD", "VALUE"], rows)
    text = table(["FIELD", "VALUE"], rows) + "\n\noutput\n" + _array_text(result.output)
    if result.grad is not None:
        text += "\n\ngrad\n" + _array_text(result.grad)
    return text


def loss_table(result: LossResult[Array], written: str | None) -> str:
    rows = [["function", result.function], ["dtype", result.dtype], ["shape", str(list(result.loss.shape))]]
    if written:
        rows.append(["written to", written])
        return table(["FIELD", "VALUE"], rows)
    text = table(["FIELD", "VALUE"], rows) + "\n\nloss\n" + _array_text(result.loss)
    for name, grad in (result.grad or {}).items():
        text += f"\n\ngrad {name}\n" + _array_text(grad)
    return text


def error_text(error: APIError) -> str:
    """The service's message, and each problem it located."""
    lines = [f"torchfn: {error.status} {error.error}: {error.message}"]
    for detail in error.details:
        where = ".".join(str(part) for part in detail.loc)
        lines.append(f"  {where}: {detail.msg} ({detail.type})")
    return "\n".join(lines)
