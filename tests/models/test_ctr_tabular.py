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


# -- the Open Bandit Dataset -----------------------------------------------------------------------------------------
def _obd(root: Path, rows: list[tuple[int, int, int, int]]) -> Path:
    """The OPE tests' campaign folder of two items; ``rows`` are (minute, item, slot, click), all of user
    ``a,b,c,d``."""
    from tests.evaluation.test_ope_obd import _tiny

    return _tiny(
        root,
        [
            f"{i},2019-11-24 {m // 60:02d}:{m % 60:02d}:00+00:00,{item},{slot},{click},0.5,a,b,c,d,0.0,1.0\n"
            for i, (m, item, slot, click) in enumerate(rows)
        ],
    )


def test_obd_rows_encode_as_declared_and_popularity_by_slot_is_counted(tmp_path: Path) -> None:
    from adrec.models.ctr.tabular import obd_click_dataset

    # 10 rows over 90 minutes: minutes 0..60 train (rows 0-6), 70 validation, 80 and 90 test.
    rows = [(0, 0, 1, 1), (10, 0, 1, 0), (20, 1, 2, 0), (30, 1, 1, 1), (40, 0, 2, 0), (50, 0, 1, 0)]
    rows += [(60, 1, 2, 1), (70, 0, 1, 0), (80, 0, 1, 0), (90, 1, 2, 1)]
    data = obd_click_dataset(_obd(tmp_path, rows), valid_share=0.1, test_share=0.2)
    spec = data.spec
    assert spec.fields == (
        "campaign", "item", "item_feature_1", "item_feature_2", "item_feature_3",
        "user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3", "hour", "weekday",
    )  # fmt: skip
    assert spec.dense_names == ("item_feature_0",)
    assert (len(data.train), len(data.valid), len(data.test)) == (7, 1, 2)
    first = data.train.ids[0]
    assert first[1] == spec.bucket("item", "obd:men:0") and first[2] == spec.bucket("item_feature_1", "h1")
    assert first[5] == spec.bucket("user_feature_0", "a") and first[10] == spec.bucket("weekday", 6)  # a Sunday
    assert data.train.ids[3][9] == spec.bucket("hour", 0) and data.test.ids[1][9] == spec.bucket("hour", 1)
    assert data.train.dense[:3, 0].tolist() == [-0.5, -0.5, pytest.approx(0.7)]
    assert data.train.position.tolist() == [1, 1, 2, 1, 2, 1, 2]  # the logged slot, not the reference one
    assert data.train.labels.tolist() == [1, 0, 0, 1, 0, 0, 1] and data.test.labels.tolist() == [0, 1]
    # Counted on train and validation (8 rows, 3 clicks): overall (3 + 1) / (8 + 2) = 0.4; slot 1 has 5 rows and 2
    # clicks, slot 2 three rows and one click: their rates (2 + 0.4) / 6 and (1 + 0.4) / 4.
    slot_rate = data.baselines["click rate by slot"]
    np.testing.assert_allclose(slot_rate, [2.4 / 6, 1.4 / 4])
    (name,) = [n for n in data.baselines if n.startswith("popularity by slot")]
    prior = float(name.removeprefix("popularity by slot (prior ").removesuffix(")").replace(",", ""))
    # Test row 1: item 0 at slot 1, seen 4 times with 1 click; row 2: item 1 at slot 2, twice with 1 click.
    expected = [(1 + prior * 0.4) / (4 + prior), (1 + prior * 0.35) / (2 + prior)]
    np.testing.assert_allclose(data.baselines[name], expected)


def test_obd_real_random_logs_evaluate_end_to_end(tmp_path: Path) -> None:
    import json

    folder = require_dataset("open_bandit_dataset_random", "random/men/men.csv", "random/women/women.csv")
    out = tmp_path / "obd.json"
    result = CliRunner().invoke(
        app, ["evaluate", "--task", "ctr", "-d", f"obd:{folder}", "-m", "lr", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    examples = report["examples"]
    assert examples["train"] + examples["valid"] + examples["test"] == 20_000  # both campaigns' random logs
    assert {"click rate by slot"} < set(report["baselines"])
    lr = report["models"]["lr"]
    assert 0.0 < lr["logloss"] < report["base"]["logloss"] * 1.1 and 0.3 < lr["auc"] < 0.8


# -- Taobao ----------------------------------------------------------------------------------------------------------
def test_taobao_raw_release_encodes_profiles_ads_and_clicks(tmp_path: Path) -> None:
    from tests.data.importers.test_import_taobao import ADS, PROFILE, SAMPLE

    from adrec.models.ctr.tabular import taobao_click_dataset

    folder = tmp_path / "taobao"
    folder.mkdir()
    (folder / "user_profile.csv").write_text(PROFILE)
    (folder / "ad_feature.csv").write_text(ADS)
    (folder / "raw_sample.csv").write_text(SAMPLE)  # its exact repeat is one impression
    data = taobao_click_dataset(folder, valid_share=0.2, test_share=0.2)
    spec = data.spec
    assert spec.fields[:2] == ("user", "cms_segid") and spec.fields[-8:] == (
        "ad", "campaign", "advertiser", "category", "brand", "pid", "hour", "weekday",
    )  # fmt: skip
    assert spec.dense_names == ("log_price",)
    # By time: 581738 (05-07 06:14), 523 (05-08 12:05), 234 (05-12 00:55, clicked): a span of 4.8 days.
    assert (len(data.train), len(data.valid), len(data.test)) == (2, 0, 1)
    assert data.train.labels.tolist() == [0, 0] and data.test.labels.tolist() == [1]
    assert data.test_users.tolist() == ["taobao:234"]
    f = spec.fields.index
    unprofiled, man = data.train.ids
    assert unprofiled[f("age_level")] == spec.bucket("age_level", None)  # not in user_profile.csv
    assert man[f("pvalue_level")] == spec.bucket("pvalue_level", "1")
    assert man[f("advertiser")] == spec.bucket("advertiser", "taobao:26") and man[f("pid")] == spec.bucket(
        "pid", "430539_1007"
    )
    (woman,) = data.test.ids
    assert woman[f("brand")] == spec.bucket("brand", None) and woman[f("category")] == spec.bucket("category", "6406")
    np.testing.assert_allclose(data.test.dense[:, 0], [math.log1p(199.0)], rtol=1e-6)


def test_taobao_dmr_sample_evaluates_end_to_end(tmp_path: Path) -> None:
    folder = require_dataset("taobao_ad_dmr_sample", "alimama_sampled_train.txt")
    out = tmp_path / "taobao.json"
    result = CliRunner().invoke(
        app, ["evaluate", "--task", "ctr", "-d", f"taobao:{folder}", "-m", "lr", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "taobao-dmr, 500 impressions" in " ".join(result.output.split())


def test_obd_refuses_a_root_holding_several_policies(tmp_path: Path) -> None:
    from adrec.models.ctr.tabular import obd_click_dataset

    root = _obd(tmp_path, [(0, 0, 1, 1), (10, 1, 1, 0)])
    bts = root / "bts" / "men"
    bts.mkdir(parents=True)
    for name in ("item_context.csv", "men.csv"):
        (bts / name).write_text((root / "random" / "men" / name).read_text())
    with pytest.raises(ValidationError, match=r"several policies \(bts, random\): name one's folder"):
        obd_click_dataset(root)
    assert len(obd_click_dataset(root / "bts", valid_share=0.1, test_share=0.2).train) == 1


def test_a_repeat_in_a_later_chunk_is_one_impression_with_its_own_label(tmp_path: Path) -> None:
    """The in-memory reader keeps each event id once, as a store does, also across the import's chunks: a repeated
    Taobao row must not become a second impression, nor take a click that belongs to another row."""
    from tests.data.importers.test_import_taobao import ADS, PROFILE

    from adrec.data.importers import IMPORTERS
    from adrec.data.importers.base import CHUNK_RECORDS, read_into_memory

    folder = tmp_path / "taobao"
    folder.mkdir()
    (folder / "user_profile.csv").write_text(PROFILE)
    (folder / "ad_feature.csv").write_text(ADS)
    clicked, plain = "234,1494550536,313401,430548_1007,0,1\n", "523,1494245123,248909,430539_1007,1,0\n"
    filler = "".join(f"9{i},1494137644,63133,430548_1007,1,0\n" for i in range(CHUNK_RECORDS))
    header = "user,time_stamp,adgroup_id,pid,nonclk,clk\n"
    (folder / "raw_sample.csv").write_text(header + clicked + plain + filler + clicked + plain)
    log = read_into_memory(IMPORTERS["taobao"], folder)
    assert len(log.event_id) == CHUNK_RECORDS + 2 and len(set(log.event_id.tolist())) == len(log.event_id)
    assert log.click.sum() == 1
