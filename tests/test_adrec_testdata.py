"""The shared-dataset helper: a missing dataset skips a test locally and fails it under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from adrec_testdata import data_dir, require_dataset


@pytest.fixture
def datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$ADREC_DATA_DIR`` pointed at an empty folder, and ``$CI`` unset."""
    monkeypatch.setenv("ADREC_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    return tmp_path


def test_a_missing_dataset_skips_locally(datasets: Path) -> None:
    assert data_dir() == datasets
    with pytest.raises(pytest.skip.Exception, match=r"dataset 'ml-100k' not found at .*ADREC_DATA_DIR"):
        require_dataset("ml-100k")


def test_a_missing_dataset_fails_under_ci(datasets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"dataset 'ml-100k' not found .*under CI"):
        require_dataset("ml-100k")


def test_a_missing_file_counts_as_a_missing_dataset(datasets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (datasets / "ml-100k").mkdir()
    (datasets / "ml-100k" / "u1.base").write_text("1\t1\t5\t0\n")
    assert require_dataset("ml-100k", "u1.base") == datasets / "ml-100k"
    with pytest.raises(pytest.skip.Exception, match=r"lacks u1\.test"):
        require_dataset("ml-100k", "u1.base", "u1.test")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"lacks u1\.test"):
        require_dataset("ml-100k", "u1.base", "u1.test")
    assert require_dataset("ml-100k") == datasets / "ml-100k"
