"""Outside CTR logs (Criteo, Avazu) as click datasets: their own spec, the same models, never served."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from adrec.cli.main import app
from adrec.data.importers.criteo import HEADER
from adrec.evaluation.ctr import auc
from adrec.exceptions import ConfigError, RowError, ValidationError
from adrec.models.ctr import get_click_model, load_click_model
from adrec.models.ctr.tabular import TabularSpec, criteo_bucket, ctr_log_dataset
from adrec.serving.pipeline import _feature_spec
from adrec_testdata import require_dataset


def _criteo_file(path: Path, rows: list[list[str]]) -> Path:
    path.write_text(",".join(HEADER) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def _row(label: int, i1: str = "", i2: str = "1", c1: str = "0a1b2c3d", c2: str = "") -> list[str]:
    return [str(label), i1, i2, *["0"] * 11, c1, c2, *["deadbeef"] * 24]


def test_criteo_rows_encode_as_declared(tmp_path: Path) -> None:
    rows = [_row(i % 2, i1="100" if i == 0 else "", i2="-1" if i == 0 else "2") for i in range(10)]
    data = ctr_log_dataset("criteo", _criteo_file(tmp_path / "c.csv", rows), valid_share=0.2, test_share=0.2)
    spec = data.spec
    assert isinstance(spec, TabularSpec) and spec.kind == "tabular"
    assert spec.fields[:2] == ("I1", "I2") and spec.fields[13] == "C1" and len(spec.fields) == 39
    assert spec.dense_names == tuple(f"I{i}" for i in range(1, 14))
    # No times in Criteo: file order; 10 rows -> 6 train, 2 validation, 2 test, the first row first.
    assert (len(data.train), len(data.valid), len(data.test)) == (6, 2, 2)
    first = data.train.ids[0]
    assert first[0] == spec.bucket("I1", "L21")  # floor(ln(100)^2) = floor(21.2)
    assert first[1] == spec.bucket("I2", "-1")  # counts up to 2 are their own category
    assert first[13] == spec.bucket("C1", "0a1b2c3d") and first[14] == spec.bucket("C2", None)
    assert data.train.ids[1][0] == spec.bucket("I1", None)
    np.testing.assert_allclose(data.train.dense[0, :2], [math.log1p(100), -math.log(2)], rtol=1e-6)
    assert data.train.dense[1, 0] == 0.0 and (data.train.position == 1).all()
    assert data.train.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert [criteo_bucket(v) for v in (None, 0, 2, 3, 1000)] == [None, "0", "2", "L1", "L47"]


def test_a_planted_signal_is_learned_saved_and_refused_by_serving(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(6000):
        good = rng.random() < 0.3
        p = 0.3 if good else 0.03
        rows.append(
            _row(int(rng.random() < p), i1=str(int(rng.integers(0, 50))), c1="aaaaaaaa" if good else "bbbbbbbb")
        )
    data = ctr_log_dataset("criteo", _criteo_file(tmp_path / "c.csv", rows))
    model = get_click_model("lr", epochs=20, batch_size=256).fit(data.train, data.valid, spec=data.spec)
    p = model.predict(data.test)
    assert auc(data.test.labels, p) > 0.7
    saved = load_click_model(model.save(tmp_path / "lr"))
    assert isinstance(saved.spec_, TabularSpec) and saved.spec_.fields == data.spec.fields
    np.testing.assert_allclose(saved.predict(data.test), p, rtol=1e-6)
    with pytest.raises(ConfigError, match="outside CTR log"):
        _feature_spec(saved)  # what serving calls before it builds anything with a click model


def test_bad_rows_and_wrong_tasks_are_named(tmp_path: Path) -> None:
    path = _criteo_file(tmp_path / "c.csv", [_row(0), _row(1, c1="nothex!!")])
    with pytest.raises(RowError, match=r"c\.csv:3: C1: "):
        ctr_log_dataset("criteo", path)
    same = _criteo_file(tmp_path / "same.csv", [_row(0), _row(0)])
    with pytest.raises(ValidationError, match="all 2 rows are labelled 0"):
        ctr_log_dataset("criteo", same)
    runner = CliRunner()
    cvr = runner.invoke(app, ["evaluate", "--task", "cvr", "-d", f"criteo:{same}", "-m", "lr"])
    assert cvr.exit_code == 1 and "--task ctr" in cvr.output
    bare = runner.invoke(app, ["evaluate", "--task", "ctr", "-d", "avazu:", "-m", "lr"])
    assert bare.exit_code == 1 and "needs a path" in bare.output


@pytest.mark.parametrize(
    ("kind", "name", "rows"), [("criteo", "criteo_sample.txt", 200), ("avazu", "avazu_sample.txt", 100)]
)
def test_real_samples_evaluate_end_to_end(kind: str, name: str, rows: int, tmp_path: Path) -> None:
    folder = require_dataset(f"{kind}_sample_deepctr")
    data = ctr_log_dataset(kind, folder / name)
    assert len(data.train) + len(data.valid) + len(data.test) == rows
    if kind == "avazu":
        assert {"hour", "weekday", "site_id", "device_model"} <= set(data.spec.fields)
        assert "click" not in data.spec.fields and "id" not in data.spec.fields
    out = tmp_path / "ctr.json"
    result = CliRunner().invoke(
        app, ["evaluate", "--task", "ctr", "-d", f"{kind}:{folder / name}", "-m", "lr,dcnv2", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "read a larger log" in " ".join(result.output.split()) and out.exists()
