"""The exception tree is complete: every exception class adrec defines derives from ``AdrecError``, lives in
:mod:`adrec.exceptions`, and sits in the tree drawn in that module's docstring under its real base class."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
from starlette.exceptions import HTTPException

import adrec.exceptions
from adrec.exceptions import AdrecError, NotFoundError, StoreError

SRC = Path(adrec.exceptions.__file__).resolve().parent

NOT_ERRORS: tuple[type[BaseException], ...] = (Warning, HTTPException)
"""Exception classes that are not errors adrec raises to its callers: warnings, and the web framework's
``HTTPException``, which the server answers with a status code (e.g. ``BodyTooLarge``, a 413)."""

_BRANCH = re.compile(r"^(?P<prefix>\s*(?:│\s+)*[├└]── )(?P<name>\w+)")


def defined_classes(path: Path) -> list[str]:
    """Qualified names of the classes defined at module level in ``path``, or nested in such classes."""
    out: list[str] = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                out.append(prefix + node.name)
                visit(node.body, f"{prefix}{node.name}.")

    visit(ast.parse(path.read_text(encoding="utf-8")).body, "")
    return out


def defined_exceptions() -> list[type[BaseException]]:
    """Every exception class defined in ``src/adrec`` (found by parsing, resolved by importing)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        names = defined_classes(path)
        if not names:
            continue
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        module = importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        for qualname in names:
            obj: object = module
            for attr in qualname.split("."):
                obj = getattr(obj, attr)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                found.append(obj)
    return found


def drawn_tree() -> list[tuple[str, str]]:
    """``(class, parent)`` for every branch of the tree in :mod:`adrec.exceptions`' docstring."""
    doc = adrec.exceptions.__doc__ or ""
    lines = doc.splitlines()
    root = next(i for i, line in enumerate(lines) if line.strip() == "AdrecError")
    indent = len(lines[root]) - len(lines[root].lstrip())
    stack = ["AdrecError"]
    edges = []
    for line in lines[root + 1 :]:
        if not line.strip():
            break
        match = _BRANCH.match(line)
        if match is None:  # the continuation of a description
            continue
        depth = (len(match["prefix"]) - indent) // 4
        del stack[depth:]
        edges.append((match["name"], stack[-1]))
        stack.append(match["name"])
    return edges


def test_the_walk_finds_the_exceptions() -> None:
    found = {cls.__name__ for cls in defined_exceptions()}
    assert {"AdrecError", "NotFittedError", "ModeCollapseError", "BodyTooLarge", "ModeCollapseWarning"} <= found


def test_every_exception_is_an_adrec_error_defined_in_the_exceptions_module() -> None:
    errors = [cls for cls in defined_exceptions() if not issubclass(cls, NOT_ERRORS)]
    strays = [f"{cls.__module__}.{cls.__qualname__}" for cls in errors if not issubclass(cls, AdrecError)]
    assert not strays, f"derive these from adrec.exceptions.AdrecError: {strays}"
    elsewhere = [f"{cls.__module__}.{cls.__qualname__}" for cls in errors if cls.__module__ != "adrec.exceptions"]
    assert not elsewhere, f"define these in adrec.exceptions (re-export them where they were): {elsewhere}"


def test_the_docstring_draws_every_error_under_its_base() -> None:
    edges = drawn_tree()
    drawn = {name for name, _ in edges} | {"AdrecError"}
    errors = {cls.__name__ for cls in defined_exceptions() if issubclass(cls, AdrecError)}
    assert errors == drawn
    assert set(adrec.exceptions.__all__) == drawn
    for name, parent in edges:
        cls = getattr(adrec.exceptions, name)
        assert getattr(adrec.exceptions, parent) in cls.__bases__, f"{name} is drawn under {parent}"


@pytest.mark.parametrize(
    ("module", "name"), [("adrec.models.base", "NotFittedError"), ("adrec.models.gan", "ModeCollapseError")]
)
def test_moved_errors_are_still_importable_where_they_were(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(adrec.exceptions, name)


def test_not_found_is_not_a_store_failure_but_still_a_key_error() -> None:
    assert not issubclass(NotFoundError, StoreError)
    assert issubclass(NotFoundError, KeyError)
    assert str(NotFoundError("no user with id 'u1'")) == "no user with id 'u1'"  # not KeyError's repr
