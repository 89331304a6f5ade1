"""The closed loop over HTTP: arms served by real ``adrec serve`` processes on the simulated clock decide as the
in-process pipeline does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from adrec.cli.main import app
from adrec.data.schema import EventType
from adrec.experiment import ExperimentConfig, run_experiment
from adrec.store import open_store

pytestmark = pytest.mark.slow

# No exploration slots: what is left to chance is then the same in both runs (see below).
EXPERIMENT = """
days = 1
requests_per_day = 1500
seed = 1
[bid_change]
share = 0.3
day = 0.5
factor = 2.0
[market]
seed = 4
n_users = 800
n_advertisers = 6
n_campaigns = 18
n_ads = 80
n_impressions = 12000
days = 3
[[arms]]
name = "segments"
policy = "no-model"
serving = { explore_share = 0.0 }
[[arms]]
name = "bpr"
model = "bpr"
retrain_hours = 8
serving = { explore_share = 0.0 }
[[arms]]
name = "bpr-lr"
model = "bpr"
retrain_hours = 8
click_model = "lr"
serving = { explore_share = 0.0 }
[[arms]]
name = "oracle"
policy = "oracle"
"""


def test_arms_served_over_http_by_real_servers_decide_as_in_process(tmp_path: Path) -> None:
    toml = tmp_path / "exp.toml"
    toml.write_text(EXPERIMENT)
    config = ExperimentConfig.from_toml(toml)
    local = run_experiment(config, progress=False)
    out = tmp_path / "http.json"
    db = f"sqlite:///{tmp_path}/{{arm}}.db"
    run = ["experiment", "run", "--config", str(toml), "--db", db, "--http", "--json", str(out), "--no-progress"]
    result = CliRunner().invoke(app, run)
    assert result.exit_code == 0, result.output
    remote = {a["name"]: a for a in json.loads(out.read_text())["arms"]}
    mine = {a.name: a for a in local.arms}
    # BPR fills every slot from its own candidates (no random draw): over HTTP, with the server on the simulated
    # clock, its tokens, budgets, caps, model reloads and bid changes, it served exactly what it served in process.
    assert remote["bpr"]["totals"] == pytest.approx(mine["bpr"].totals)
    # Ranked by a click model saved in the version's ctr/ folder, reading the profiles the loop's profile job
    # writes into the arm's store: the same decisions again. The two runs train their click models apart, and
    # multi-threaded float sums may differ in the last bits: a GSP price can round the other way in its sixth
    # decimal, so money agrees to 1e-4 and everything counted exactly.
    theirs, ours = remote["bpr-lr"]["totals"], mine["bpr-lr"].totals
    money = {"revenue", "spend", "unbilled", "billed", "value", "welfare", "pctr", "budget"}
    assert {k: v for k, v in theirs.items() if k not in money} == pytest.approx(
        {k: v for k, v in ours.items() if k not in money}
    )
    assert {k: theirs[k] for k in money & set(ours)} == pytest.approx({k: ours[k] for k in money & set(ours)}, rel=1e-4)
    assert remote["oracle"]["totals"] == pytest.approx(mine["oracle"].totals)  # in process both times
    # The segment arm fills its last slots with fresh ads in a random order: the loop's request id, sent as the
    # API's request_id, seeds the server's draws as it seeds the in-process pipeline's, so they draw the same.
    assert remote["segments"]["totals"] == pytest.approx(mine["segments"].totals)
    # The servers wrote into the arms' stores: the events with their charges, and a model version per reload.
    with open_store(db.replace("{arm}", "bpr"), create=False) as store:
        batches = list(store.iter_events(since=config.live_start))
        assert store.versions().get("model", 0) == len(remote["bpr"]["retrain_seconds"]) == 2
    types = np.concatenate([b.type for b in batches])
    cost = np.concatenate([b.cost for b in batches])
    assert int((types == EventType.IMPRESSION).sum()) == remote["bpr"]["totals"]["impressions"]
    assert float(cost.sum()) == pytest.approx(remote["bpr"]["totals"]["revenue"])
