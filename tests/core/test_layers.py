"""The layers of ``app/`` (docs/design.md): packages import one way, downwards, and no two packages
import each other, directly or round a longer loop. Read from the source's import statements, the
ones inside functions included, so that a late import cannot hide a loop."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import ROOT

APP = ROOT / "app"
LAYERS = [
    ["app.core"],
    ["app.compute"],
    ["app.telemetry"],
    ["app.serving"],
    ["app.protocols"],
    ["app.transports"],
    ["app", "app.main", "app.serve", "app.plugins", "app.healthcheck"],
]
"""From the bottom up: a module may import from its own layer's packages and the layers below."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(name: str) -> bool:
    return (ROOT / Path(*name.split("."))).is_dir()


def _package(name: str) -> str:
    """The package a module belongs to (a package is its own)."""
    return name if _is_package(name) else name.rpartition(".")[0]


def _imports(path: Path) -> Iterator[str]:
    """Every ``app`` module ``path`` imports, ``from package import module`` naming the module."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "app")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("app"):
            yield node.module
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                base = ROOT / Path(*candidate.split("."))
                if base.is_dir() or base.with_suffix(".py").exists():
                    yield candidate


def _layer(name: str) -> int:
    for rank, members in enumerate(LAYERS):
        if any(name == member or (member != "app" and name.startswith(member + ".")) for member in members):
            return rank
    raise AssertionError(f"{name} is in no layer: add it to LAYERS and to docs/design.md")


def _graph() -> dict[str, set[tuple[str, str]]]:
    """Each module's imports of other ``app`` modules: (the imported module, where)."""
    graph: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(APP.rglob("*.py")):
        where = str(path.relative_to(ROOT))
        graph[_module_name(path)] = {(name, where) for name in _imports(path) if name != "app"}
    return graph


GRAPH = _graph()


def test_every_module_is_in_a_layer() -> None:
    for name in GRAPH:
        _layer(name)


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = [
        f"{where}: {importer} (layer {_layer(importer)}) imports {imported} (layer {_layer(imported)})"
        for importer, imports in GRAPH.items()
        for imported, where in imports
        if _layer(imported) > _layer(importer)
    ]
    assert not upward, "\n".join(upward)


def _package_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for importer, imports in GRAPH.items():
        source = _package(importer)
        for imported, _ in imports:
            target = _package(imported)
            if target != source:
                edges.setdefault(source, set()).add(target)
    return edges


def _loop_through(start: str, edges: dict[str, set[str]]) -> list[str] | None:
    """A path of packages from ``start`` back to it, or None."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        current, path = stack.pop()
        for following in sorted(edges.get(current, ())):
            if following == start:
                return [*path, start]
            if following not in seen:
                seen.add(following)
                stack.append((following, [*path, following]))
    return None


@pytest.mark.parametrize("package", sorted(_package_edges()))
def test_no_package_imports_one_that_imports_it_back(package: str) -> None:
    loop = _loop_through(package, _package_edges())
    assert loop is None, " -> ".join(loop or [])


def test_torch_is_imported_in_the_compute_layer_alone() -> None:
    outside = [
        str(path.relative_to(ROOT))
        for path in sorted(APP.rglob("*.py"))
        if not _module_name(path).startswith("app.compute")
        for node in ast.walk(ast.parse(path.read_text()))
        if (isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "torch" for alias in node.names))
        or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch")
    ]
    assert not outside, outside


def test_the_checks_see_a_loop_and_an_upward_import() -> None:
    """The checks themselves can fail: a made-up loop and a made-up upward import are found."""
    assert _loop_through("a", {"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _loop_through("a", {"a": {"b"}, "b": {"c"}}) is None
    assert _layer("app.transports.http.app") > _layer("app.serving.road")
