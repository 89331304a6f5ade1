"""The curated public API: what ``import adrec`` promises."""

from __future__ import annotations

import adrec


def test_all_names_resolve_and_are_sorted() -> None:
    for name in adrec.__all__:
        assert hasattr(adrec, name), name
    assert list(adrec.__all__) == sorted(adrec.__all__)


def test_every_error_derives_from_the_root() -> None:
    errors = [getattr(adrec, n) for n in adrec.__all__ if n.endswith("Error")]
    assert len(errors) >= 7
    assert all(issubclass(e, adrec.AdrecError) for e in errors)


def test_package_is_typed() -> None:
    from importlib.resources import files

    assert files("adrec").joinpath("py.typed").is_file()
