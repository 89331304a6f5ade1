"""``adrec evaluate``, ``train`` and ``recommend`` on a small simulated market."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adrec.cli.main import app
from adrec.simulate import SimulationConfig, simulate
from adrec.store import open_store

runner = CliRunner()


@pytest.fixture(scope="module")
def market_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('m')}/m.db"
    config = SimulationConfig(seed=1, n_users=400, n_advertisers=5, n_campaigns=10, n_ads=60, n_impressions=40_000)
    with open_store(url) as store:
        simulate(config, store, progress=False)
    return url


def test_evaluate_prints_writes_json_and_plot(market_db: str, tmp_path: Path) -> None:
    out = tmp_path / "r" / "eval.json"
    result = runner.invoke(
        app, ["evaluate", "-d", f"store:{market_db}", "-m", "popularity", "--k", "5,10", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["ks"] == [5, 10]
    (res,) = report["results"]
    assert res["model"] == "popularity"
    assert 0 < res["metrics"]["recall@10"] <= 1
    assert res["metrics"]["recall@5"] <= res["metrics"]["recall@10"]
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "recall@10" in result.output


def test_train_then_recommend_excludes_seen_ads(market_db: str, tmp_path: Path) -> None:
    model_dir = tmp_path / "pop"
    trained = runner.invoke(
        app, ["train", "-d", f"store:{market_db}", "--model", "popularity", "--out", str(model_dir)]
    )
    assert trained.exit_code == 0, trained.output
    from adrec.models.artifact import Artifact

    art = Artifact.load(model_dir)
    user = art.users.ids[0]
    seen = {art.items.ids[i] for i in art.seen[art.users.index(user)].indices}
    rec = runner.invoke(app, ["recommend", "--model-dir", str(model_dir), "--user", user, "--k", "7", "--json"])
    assert rec.exit_code == 0, rec.output
    items = [r["item_id"] for r in json.loads(rec.output)]
    assert len(items) == 7
    assert not set(items) & seen
    missing = runner.invoke(app, ["recommend", "--model-dir", str(model_dir), "--user", "nobody"])
    assert missing.exit_code == 1
    assert "nobody" in missing.output
    # A click model trained into the folder survives a retrain of the retrieval model (it used to be dropped).
    clicks = runner.invoke(
        app, ["train", "--task", "ctr", "-d", SMALL_SIM, "--model", "lr", "--out", str(model_dir / "ctr")]
    )
    assert clicks.exit_code == 0, clicks.output
    again = runner.invoke(app, ["train", "-d", f"store:{market_db}", "--model", "popularity", "--out", str(model_dir)])
    assert again.exit_code == 0 and "kept the click models trained into it earlier: ctr/" in again.output
    from adrec.models.ctr import load_click_model

    assert load_click_model(model_dir / "ctr").name == "lr"


def test_train_from_a_store_calibrates_on_held_out_impressions(market_db: str, tmp_path: Path) -> None:
    from adrec.models.artifact import Artifact

    args = ["train", "-d", f"store:{market_db}", "--model", "bpr", "--set", "epochs=3"]
    trained = runner.invoke(app, [*args, "--out", str(tmp_path / "bpr")])
    assert trained.exit_code == 0, trained.output
    assert "held-out impressions" in trained.output
    fitted = Artifact.load(tmp_path / "bpr").calibration
    assert fitted is not None and fitted["held_out"] and fitted["n"] > 1000
    plain = runner.invoke(app, [*args, "--no-calibrate", "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    assert Artifact.load(tmp_path / "plain").calibration is None  # serving fits one when it loads the model


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["evaluate", "-d", "nokind", "-m", "popularity"], "KIND:LOCATION"),
        (["evaluate", "-d", "lightgcn:/nope", "-m", "popularity"], "/nope"),
        (["evaluate", "-d", "lightgcn:/nope", "-m", "nosuchmodel"], "nosuchmodel"),
        (["evaluate", "-d", "lightgcn:/nope", "-m", "popularity", "--k", "a,b"], "--k"),
        (["train", "-d", "lightgcn:/nope", "--model", "popularity", "--out", "x", "--set", "novalue"], "KEY=VALUE"),
        (["recommend", "--model-dir", "/nope", "--user", "u"], "/nope"),
        (["evaluate", "--task", "ctr", "-d", "sim:users=10", "-m", "popularity"], "click models"),
        (["evaluate", "--task", "ctr", "-d", "sim:colour=red", "-m", "lr"], "colour"),
        (["evaluate", "--task", "ctr", "-d", "sim:users", "-m", "lr"], "KEY=VALUE"),
        (["evaluate", "--task", "ctr", "-d", "movielens:/x", "-m", "lr"], "not supported yet"),
        (["evaluate", "--task", "ctr", "-d", "taobao:/x", "-m", "lr"], "/x does not exist"),
        (["evaluate", "--task", "ctr", "-d", "obd:/x", "-m", "lr"], "/x does not exist"),
        (["evaluate", "--task", "cvr", "-d", "obd:/x", "-m", "lr"], "--task ctr"),
        (["evaluate", "--task", "ctr", "-d", "criteo:/no/such/file", "-m", "lr"], "does not exist"),
        (["evaluate", "--task", "clicks", "-d", "sim:", "-m", "lr"], "--task"),
        (["train", "--task", "ctr", "-d", "sim:", "--model", "lr", "--out", "x", "--set", "depth=2"], "depth"),
        (["train", "--task", "ctr", "-d", "sim:", "--model", "lr", "--out", "x", "--all"], "--all"),
        (["train", "--task", "ctr", "-d", "sim:", "--model", "lr", "--out", "x", "--no-calibrate"], "--calibrate"),
        (["evaluate", "--task", "ctr", "-d", "sim:", "-m", "lr", "--k", "5"], "--k: applies to --task ranking"),
        (["evaluate", "--task", "cvr", "-d", "sim:", "-m", "lr", "--plot", "p.png"], "--plot"),
        (["evaluate", "--task", "ctr", "-d", "sim:users=10,users=20", "-m", "lr"], "set twice"),
    ],
)
def test_model_command_mistakes(args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert needle in result.output


def test_recommend_says_it_shows_raw_model_scores_not_served_ads() -> None:
    shown = runner.invoke(app, ["recommend", "--help"], terminal_width=200).output
    assert "raw" in shown and "no targeting, budgets" in shown and "/v1/recommendations" in shown


SMALL_SIM = "sim:users=400,advertisers=5,campaigns=10,ads=60,impressions=60000,seed=2"


def test_evaluate_click_models_against_the_oracle(tmp_path: Path) -> None:
    out = tmp_path / "ctr.json"
    result = runner.invoke(
        app, ["evaluate", "--task", "ctr", "-d", SMALL_SIM, "-m", "lr,lightgbm", "--json", str(out)], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "oracle" in result.output and "base rate" in result.output  # the columns beside the models
    report = json.loads(out.read_text())
    assert set(report["models"]) == {"lr", "lightgbm"}
    oracle, base = report["oracle"], report["base"]
    assert oracle["logloss"] < base["logloss"]
    for name, r in report["models"].items():
        assert r["logloss"] < base["logloss"], name  # each learned something...
        assert r["logloss"] > oracle["logloss"], name  # ...and none beats the truth
        assert 0 < r["gain_captured"] < 1


def test_train_a_click_model_saves_one_that_loads(tmp_path: Path) -> None:
    from adrec.models.ctr import load_click_model

    result = runner.invoke(
        app, ["train", "--task", "ctr", "-d", SMALL_SIM, "--model", "lr", "--out", str(tmp_path / "lr")]
    )
    assert result.exit_code == 0, result.output
    assert "test AUC" in result.output
    model = load_click_model(tmp_path / "lr")
    assert model.name == "lr" and model.calibrator_ is not None


def test_evaluate_conversion_models_beside_the_campaign_rate(tmp_path: Path) -> None:
    out = tmp_path / "cvr.json"
    result = runner.invoke(
        app, ["evaluate", "--task", "cvr", "-d", SMALL_SIM, "-m", "lr", "--json", str(out)], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "Conversion models" in result.output and "campaign rate" in result.output
    report = json.loads(out.read_text())
    assert "conversions of clicks" in report["dataset"]
    assert report["examples"]["train"] < 5_000  # clicks, not impressions
    assert set(report["baselines"]) == {"campaign rate"} and "oracle" in report


def test_a_sim_dataset_takes_the_seed_adrec_simulate_takes() -> None:
    """A click model trained on `sim:` must learn the market `adrec simulate` wrote with the same sizes: both
    default to the `seed` setting (a spec's own seed wins)."""
    from adrec.cli.app import settings
    from adrec.simulate.ctr import simulation_from_spec

    default = settings().seed
    assert simulation_from_spec("sim:users=10", seed=default).seed == default
    assert simulation_from_spec("sim:users=10,seed=3", seed=default).seed == 3


def test_click_models_learn_from_a_store_s_served_ads(market_db: str, tmp_path: Path) -> None:
    out = tmp_path / "ctr.json"
    result = runner.invoke(
        app,
        ["evaluate", "--task", "ctr", "-d", f"store:{market_db}", "-m", "lr", "--json", str(out)],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    # 40,000 simulated impressions, the first 30 % of their time builds the profiles.
    assert 20_000 < sum(report["examples"].values()) < 32_000
    assert "oracle" not in report  # a store knows no true probabilities
    assert report["models"]["lr"]["auc"] > 0.6
    trained = runner.invoke(
        app, ["train", "--task", "cvr", "-d", f"store:{market_db}", "--model", "lr", "--out", str(tmp_path / "cvr")]
    )
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / "cvr").is_dir()
    missing = runner.invoke(app, ["evaluate", "--task", "ctr", "-d", f"store:sqlite:///{tmp_path}/none.db", "-m", "lr"])
    assert missing.exit_code == 1 and "none.db" in missing.output
