"""Criteo and Avazu CTR logs: labelled rows of anonymous features, stored as CTR examples."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adrec.data.importers import run_import
from adrec.data.importers.criteo import HEADER
from adrec.exceptions import RowError
from adrec.store import CtrExample, Store


def _examples(store: Store) -> list[CtrExample]:
    return [x for batch in store.iter_ctr_examples() for x in batch]


def test_real_criteo_sample(real_dataset: Callable[[str], Path], store: Store) -> None:
    path = real_dataset("criteo_sample_deepctr") / "criteo_sample.txt"
    report = run_import("criteo", path, store, progress=False)
    examples = _examples(store)
    assert report.ctr_examples == len(examples) == 200
    assert sum(x.label for x in examples) == 49  # PROVENANCE: CTR 24.5 %
    with path.open() as f:
        rows = list(csv.DictReader(f))
    first = next(x for x in examples if x.line == 2)
    assert first.source == "criteo_sample.txt"
    assert set(first.features) == set(HEADER[1:])
    assert first.features["I3"] == int(float(rows[0]["I3"]))
    assert first.features["C1"] == rows[0]["C1"]
    assert first.features["I1"] is None and rows[0]["I1"] == ""


def test_criteo_tsv_without_header(write_files: Callable[..., Path], store: Store) -> None:
    row = ["1", "5", "", *["0"] * 11, "68fd1e64", "", *["0a1b2c3d"] * 24]
    folder = write_files("criteo", {"train.txt": "\t".join(row) + "\n" + "\t".join(["0", *row[1:]]) + "\n"})
    run_import("criteo", folder, store, progress=False)
    examples = _examples(store)
    assert [(x.line, x.label) for x in examples] == [(1, 1), (2, 0)]
    assert (examples[0].features["I1"], examples[0].features["I2"], examples[0].features["C2"]) == (5, None, None)


@pytest.mark.parametrize(("bad", "field"), [({1: "2.5"}, "I1"), ({14: "xyz"}, "C1"), ({0: "yes"}, "label")])
def test_criteo_bad_value_is_located(
    write_files: Callable[..., Path], store: Store, bad: dict[int, str], field: str
) -> None:
    row = ["0", *["1"] * 13, *["0a1b2c3d"] * 26]
    broken = [bad.get(k, v) for k, v in enumerate(row)]
    folder = write_files("criteo", {"s.csv": ",".join(HEADER) + "\n" + ",".join(row) + "\n" + ",".join(broken) + "\n"})
    with pytest.raises(RowError, match=rf"s\.csv:3: {field}: "):
        run_import("criteo", folder, store, progress=False)
    assert _examples(store) == []
    report = run_import("criteo", folder, store, skip_bad=True, progress=False)
    assert (report.files[0].rows_imported, report.files[0].bad_rows, report.ctr_examples) == (1, 1, 1)


def test_real_avazu_sample(real_dataset: Callable[[str], Path], store: Store) -> None:
    path = real_dataset("avazu_sample_deepctr")
    report = run_import("avazu", path, store, progress=False)
    examples = _examples(store)
    assert report.ctr_examples == len(examples) == 100
    assert sum(x.label for x in examples) == 20  # PROVENANCE: CTR 20 %
    assert {x.ts for x in examples} == {datetime(2014, 10, 21, 0, tzinfo=UTC).timestamp()}
    assert len(examples[0].features) == 22 and "id" not in examples[0].features
    assert examples[0].features["site_id"] == "1fbe01fe"


def test_avazu_bad_hour_is_located(write_files: Callable[..., Path], store: Store) -> None:
    header = (
        "id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,app_domain,app_category,"
        "device_id,device_ip,device_model,device_type,device_conn_type,C14,C15,C16,C17,C18,C19,C20,C21\n"
    )
    row = "1,0,14102100," + ",".join(["x"] * 21) + "\n"
    folder = write_files("av", {"a.csv": header + row + row.replace("14102100", "14102124")})
    with pytest.raises(RowError, match=r"a\.csv:3: hour: expected YYMMDDHH, got '14102124'"):
        run_import("avazu", folder, store, progress=False)
