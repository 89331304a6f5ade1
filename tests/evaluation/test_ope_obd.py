"""Off-policy evaluation on the Open Bandit Dataset's uniform-random logs (the real data), through the CLI too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from adrec.cli.main import app
from adrec.evaluation.ope.obd import evaluate_obd, read_obd
from adrec_testdata import require_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def obd() -> Path:
    return require_dataset("open_bandit_dataset_random", "random/men/men.csv", "random/men/item_context.csv")


def test_read_obd_gives_the_logged_rounds(obd: Path) -> None:
    data = read_obd(obd, "men")
    log = data.log
    assert (log.n_rounds, log.n_actions, log.len_list) == (10_000, 34, 3)
    assert log.reward.sum() == 46  # PROVENANCE.md: 46 clicks
    np.testing.assert_allclose(log.pscore, 1 / 34)
    assert np.bincount(log.position).tolist() == [3284, 3388, 3328]
    assert data.context.shape[0] == 10_000
    assert set(np.unique(data.context.sum(axis=1)).tolist()) == {4.0}  # one value of each of 4 user features
    # The same folder is found from the dataset root, the policy folder and the campaign folder.
    assert read_obd(obd / "random", "men").folder == read_obd(obd / "random" / "men", "men").folder == data.folder


def test_the_random_policy_is_estimated_at_the_logged_ctr(obd: Path) -> None:
    report = evaluate_obd(obd, "men", "random", n_bootstrap=200)
    logged = report["logged_ctr"]
    assert logged == pytest.approx(0.0046)
    est = report["estimates"]
    # Target = logging policy: every weight is 1, so IPW and SNIPW are the logged CTR exactly and DR-family ones
    # differ only by the reward model's mean residual.
    assert est["ipw"]["estimate"] == pytest.approx(logged, abs=1e-12)
    assert est["snipw"]["estimate"] == pytest.approx(logged, abs=1e-12)
    for name, e in est.items():
        assert e["ci_low"] <= logged <= e["ci_high"], name


def test_cli_estimates_bts_and_writes_every_estimator(obd: Path, tmp_path: Path) -> None:
    out = tmp_path / "bts.json"
    args = ["ope", "obd", "--data", str(obd), "--campaign", "women", "--policy", "bts", "--json", str(out)]
    result = runner.invoke(app, [*args, "--n-sim", "20000", "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report["estimates"]) == {"dm", "ipw", "snipw", "dr", "sndr", "switch-dr", "dros"}
    for e in report["estimates"].values():
        assert 0 < e["ci_low"] <= e["estimate"] <= e["ci_high"] < 0.05
    assert report["settings"]["n_sim"] == 20_000
    assert "snipw" in result.output


def test_cli_names_what_is_missing(obd: Path) -> None:
    result = runner.invoke(app, ["ope", "obd", "--data", str(obd), "--campaign", "all"])
    assert result.exit_code == 1
    assert "no log of campaign 'all'" in result.output
    result = runner.invoke(app, ["ope", "obd", "--data", str(obd), "--policy", "greedy"])
    assert result.exit_code == 1
    assert "unknown policy 'greedy'" in result.output


def _tiny(root: Path, log_rows: list[str]) -> Path:
    folder = root / "random" / "men"
    folder.mkdir(parents=True)
    (folder / "item_context.csv").write_text(
        ",item_id,item_feature_0,item_feature_1,item_feature_2,item_feature_3\n0,0,-0.5,h1,h2,h3\n1,1,0.7,h4,h2,h3\n"
    )
    header = ",timestamp,item_id,position,click,propensity_score,user_feature_0,user_feature_1,user_feature_2,"
    header += "user_feature_3,user-item_affinity_0,user-item_affinity_1\n"
    (folder / "men.csv").write_text(header + "".join(log_rows))
    return root


def _row(index: int, item: int, position: int, click: int, pscore: str = "0.5", user: str = "a,b,c,d") -> str:
    return f"{index},2019-11-24 00:0{index}:00.5+00:00,{item},{position},{click},{pscore},{user},0.0,1.0\n"


def test_read_obd_on_a_log_written_by_hand(tmp_path: Path) -> None:
    root = _tiny(tmp_path, [_row(0, 1, 2, 0), _row(1, 0, 1, 1), _row(2, 1, 1, 1, "0.25", "a,b,c,e")])
    log = read_obd(root, "men").log
    assert log.action.tolist() == [1, 0, 1]
    assert log.position.tolist() == [1, 0, 0]
    assert log.reward.tolist() == [0.0, 1.0, 1.0]
    assert log.pscore.tolist() == [0.5, 0.5, 0.25]
    assert (log.n_actions, log.len_list) == (2, 2)


def test_a_bad_row_is_named_by_file_line_and_column(tmp_path: Path) -> None:
    root = _tiny(tmp_path, [_row(0, 1, 2, 0), _row(1, 0, 1, 1, "1.5")])
    result = runner.invoke(app, ["ope", "obd", "--data", str(root), "--policy", "random"])
    assert result.exit_code == 1
    assert "men.csv:3: propensity_score: 1.5 is outside (0.0, 1.0]" in result.output
