"""Imports run down the layers, never up, and no two packages import each other (even through a third).

The layers of ``adrec``, bottom to top::

    5  cli, demo                                   thin front ends over the library
    4  experiment                                  the closed loop: the simulated market served live, arms compared
    3  serving, feedback, simulate                 the running system and its simulated market
    2  profiles, catalog, models, retrieval, evaluation
    1  store                                       durable records, opened by URL
    0  data, and the helper modules exceptions, config, progress, targeting

A module may import any module of a lower layer. Within one layer it may import a sibling package only where
:data:`SIDEWAYS` allows it:

- layer 0 is one pool: ``data`` and the helper modules may use each other (the helpers are for everyone);
- in layer 2, ``models`` is the base: ``evaluation`` scores models and ``profiles`` embeds users with them, and
  nothing else of layer 2 is imported sideways (shared linear algebra lives in :mod:`adrec.data.linalg`);
- in layer 3, ``serving`` ingests feedback (:mod:`adrec.feedback`), which in turn knows nothing of serving;
- in layer 5, the CLI's ``demo`` command runs :mod:`adrec.demo`.

``adrec/__init__.py`` is the curated public API: it may import anything, and nothing inside the package imports
it (``from adrec import demo`` names a module and counts as importing that module). Every import counts, at module
level, inside functions and under ``if TYPE_CHECKING:``: the type checker and a later refactor both follow them.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "adrec"

ROOT = "adrec"
"""The package of ``adrec/__init__.py``: the public API."""

LAYERS: dict[str, int] = {
    "data": 0,
    "exceptions": 0,
    "config": 0,
    "progress": 0,
    "targeting": 0,
    "store": 1,
    "profiles": 2,
    "catalog": 2,
    "models": 2,
    "retrieval": 2,
    "evaluation": 2,
    "serving": 3,
    "feedback": 3,
    "simulate": 3,
    "experiment": 4,
    "cli": 5,
    "demo": 5,
    ROOT: 6,
}

_BOTTOM = {p for p, layer in LAYERS.items() if layer == 0}
SIDEWAYS: dict[str, frozenset[str]] = {
    **{p: frozenset(_BOTTOM - {p}) for p in _BOTTOM},
    "evaluation": frozenset({"models"}),
    "profiles": frozenset({"models"}),
    "serving": frozenset({"feedback"}),
    "cli": frozenset({"demo"}),
}
"""Package → the packages of its own layer it may import."""


@dataclass(frozen=True)
class Import:
    """One import of an adrec module: where it is, and the packages on both sides."""

    path: Path
    line: int
    source: str
    target: str
    module: str

    def where(self) -> str:
        return f"{self.path.relative_to(SRC.parents[1])}:{self.line}"


def module_name(path: Path, src: Path = SRC) -> str:
    """``.../adrec/models/base.py`` → ``adrec.models.base``; a package's ``__init__.py`` → the package."""
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str:
    """The package (or top-level module) of ``adrec`` that ``module`` belongs to; ``adrec`` for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _is_module(dotted: str, src: Path) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (src / rel).with_suffix(".py").is_file() or (src / rel / "__init__.py").is_file()


def imported_modules(tree: ast.AST, module: str, *, is_package: bool, src: Path = SRC) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``adrec`` module that ``tree`` imports, wherever the import statement is."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == ROOT]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                if not is_package:
                    anchor.pop()
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                # ``from adrec import demo`` imports the module adrec.demo; ``from adrec import Profile`` the root.
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub, src) else base))
    return found


def collect_imports(src: Path = SRC) -> list[Import]:
    """Every import between modules of ``src`` (the ``adrec`` package folder)."""
    out: list[Import] = []
    for path in sorted(src.rglob("*.py")):
        module = module_name(path, src)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found = imported_modules(tree, module, is_package=path.name == "__init__.py", src=src)
        for line, target in sorted(set(found)):
            out.append(Import(path, line, package_of(module), package_of(target), target))
    return out


def upward_imports(imports: list[Import]) -> list[str]:
    """One message per import that runs up a layer, or sideways where :data:`SIDEWAYS` does not allow it."""
    problems = []
    for imp in imports:
        if imp.source == imp.target:
            continue
        src_layer, dst_layer = LAYERS[imp.source], LAYERS[imp.target]
        if dst_layer > src_layer or (dst_layer == src_layer and imp.target not in SIDEWAYS.get(imp.source, ())):
            direction = "up" if dst_layer > src_layer else "sideways"
            problems.append(
                f"{imp.where()}: {imp.source} (layer {src_layer}) imports {imp.module} "
                f"({imp.target}, layer {dst_layer}): {direction}"
            )
    return problems


def package_cycles(imports: list[Import]) -> list[str]:
    """One message per cycle between packages, naming an import (file:line) of each edge on it."""
    edges: dict[str, dict[str, Import]] = defaultdict(dict)
    for imp in imports:
        if imp.source != imp.target:
            edges[imp.source].setdefault(imp.target, imp)
    problems = []
    for component in _strongly_connected(edges):
        seen: set[frozenset[tuple[str, str]]] = set()
        for start in component if len(component) > 1 else ():
            cycle = _cycle_through(edges, start, set(component))
            pairs = list(zip(cycle, cycle[1:] + cycle[:1], strict=True))
            if frozenset(pairs) in seen:  # the same cycle, entered at another package
                continue
            seen.add(frozenset(pairs))
            steps = "; ".join(f"{edges[a][b].where()} imports {edges[a][b].module}" for a, b in pairs)
            problems.append(f"cycle {' -> '.join([*cycle, start])}: {steps}")
    return problems


def _strongly_connected(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's algorithm over the package graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            out.append(sorted(component))

    nodes = set(edges) | {w for targets in edges.values() for w in targets}
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def _cycle_through(edges: dict[str, dict[str, Import]], start: str, inside: set[str]) -> list[str]:
    """A shortest cycle through ``start`` within the packages ``inside`` (breadth-first), as a list of packages."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, {})):
                if w not in inside:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{sorted(inside)} is strongly connected, so it holds a cycle through {start}")


# -- the tests ----------------------------------------------------------------------------------------------------


def test_every_package_has_a_layer() -> None:
    packages = {package_of(module_name(p)) for p in SRC.rglob("*.py")}
    missing = sorted(packages - set(LAYERS))
    assert not missing, f"give {missing} a layer in LAYERS of {Path(__file__).name} (see its docstring)"


def test_no_upward_or_unsanctioned_sideways_imports() -> None:
    problems = upward_imports(collect_imports())
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_no_cycles_between_packages() -> None:
    problems = package_cycles(collect_imports())
    assert not problems, "\n".join(problems)


def test_the_checker_sees_every_form_of_import(tmp_path: Path) -> None:
    src = tmp_path / "adrec"
    for folder in ("data", "store", "models", "models/gan"):
        (src / folder).mkdir(parents=True)
        (src / folder / "__init__.py").write_text("")
    (src / "__init__.py").write_text("")
    (src / "demo.py").write_text("")
    (src / "store" / "base.py").write_text("")
    (src / "models" / "base.py").write_text("")
    (src / "data" / "x.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import adrec.store.base\n"
        "if TYPE_CHECKING:\n"
        "    from adrec.models.base import Recommender\n"
        "def f():\n"
        "    from adrec import demo\n"
        "from adrec import Profile\n"
        "from . import y\n"
    )
    (src / "models" / "gan" / "model.py").write_text("from ..base import Recommender\nfrom ... import store\n")
    found = {(i.path.name, i.line, i.module) for i in collect_imports(src)}
    assert found == {
        ("x.py", 2, "adrec.store.base"),
        ("x.py", 4, "adrec.models.base"),
        ("x.py", 6, "adrec.demo"),
        ("x.py", 7, "adrec"),
        ("x.py", 8, "adrec.data"),
        ("model.py", 1, "adrec.models.base"),
        ("model.py", 2, "adrec.store"),
    }


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        ("serving", "store", True),
        ("store", "profiles", False),
        ("data", "exceptions", True),
        ("exceptions", "store", False),
        ("evaluation", "models", True),
        ("models", "evaluation", False),
        ("catalog", "models", False),
        ("feedback", "serving", False),
        ("cli", ROOT, False),
    ],
)
def test_the_rule(source: str, target: str, allowed: bool) -> None:
    imp = Import(SRC / "x.py", 1, source, target, f"adrec.{target}")
    assert (not upward_imports([imp])) is allowed


def test_a_cycle_names_each_edge() -> None:
    a = Import(SRC / "store" / "base.py", 3, "store", "profiles", "adrec.profiles.profile")
    b = Import(SRC / "profiles" / "segments.py", 7, "profiles", "store", "adrec.store.base")
    (problem,) = package_cycles([a, b])
    assert problem.startswith("cycle profiles -> store -> profiles")
    assert "src/adrec/store/base.py:3" in problem
    assert "src/adrec/profiles/segments.py:7" in problem
