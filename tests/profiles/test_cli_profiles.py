"""``adrec build-profiles``, ``adrec profile`` and ``adrec segment`` end to end on a small simulated market."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from adrec.cli.main import app
from adrec.simulate import SimulationConfig, simulate
from adrec.store import open_store

runner = CliRunner()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli')}/m.db"
    config = SimulationConfig(seed=5, n_users=300, n_advertisers=10, n_campaigns=20, n_ads=60, n_impressions=6_000)
    with open_store(url) as store:
        simulate(config, store, progress=False)
    result = runner.invoke(app, ["build-profiles", "--db", url, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["profiles"] == 300 and report["used"] > 0
    return url


def test_help_has_examples() -> None:
    for command in ("build-profiles", "profile", "segment"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Example" in result.output


def test_profile_explains_top_interests_with_the_events_behind_them(db: str) -> None:
    with open_store(db) as store:
        profiles = [p for page in store.iter_profiles() for p in page]
    busy = max((p for p in profiles if p.behaviour), key=lambda p: p.behaviour.impressions if p.behaviour else 0)
    assert busy.behaviour is not None
    result = runner.invoke(app, ["profile", busy.user_id, "--db", db], terminal_width=200)
    assert result.exit_code == 0, result.output
    top, share, stats = busy.behaviour.top_interests("category", 1)[0]
    line = f"{top} {share:.2f} — "
    assert line in result.output
    assert re.search(rf"{re.escape(line)}.*{stats.impressions} impressions, last 20\d\d-\d\d-\d\d", result.output)

    as_json = json.loads(runner.invoke(app, ["profile", busy.user_id, "--db", db, "--json"]).output)
    assert as_json["behaviour"]["top_interests"]["category"][0]["value"] == top
    assert as_json["user"]["user_id"] == busy.user_id

    refuser = next(p for p in profiles if not p.user.consent)
    out = runner.invoke(app, ["profile", refuser.user_id, "--db", db], terminal_width=200).output
    assert "no consent" in out and "Top interests" not in out


def test_unknown_user_is_one_line_error(db: str) -> None:
    result = runner.invoke(app, ["profile", "nobody", "--db", db])
    assert result.exit_code == 1
    assert "no user with id 'nobody'" in result.output


def test_segment_prints_count_and_sample(db: str) -> None:
    with open_store(db) as store:
        profiles = [p for page in store.iter_profiles() for p in page]
    category = next(iter(next(p for p in profiles if p.behaviour).behaviour.affinities()))  # type: ignore[union-attr]
    args = ["segment", "--db", db, "--gender", "female", "--age", "18-54", "--interest", category, "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    from adrec.profiles import Segment, resolve

    with open_store(db) as store:
        want = resolve(store, Segment(genders={"female"}, age_min=18, age_max=54, interests_include={category}))
    assert data["count"] == len(want) > 0
    assert data["sample"] == want[:10]
    text = runner.invoke(app, [*args[:-1], "--sample", "2"]).output
    assert f"{len(want):,} users" in text and want[0] in text


def test_segment_rejects_bad_options(db: str) -> None:
    assert runner.invoke(app, ["segment", "--db", db, "--age", "old"]).exit_code == 1
    assert runner.invoke(app, ["segment", "--db", db, "--age", "40-30"]).exit_code == 1
    assert runner.invoke(app, ["segment", "--db", db, "--gender", "robot"]).exit_code == 1


def test_incremental_build_since(db: str) -> None:
    result = runner.invoke(app, ["build-profiles", "--db", db, "--since", "2100-01-01"])
    assert result.exit_code == 0, result.output
    assert "0 profiles written from 0 of 0 events" in result.output
    assert runner.invoke(app, ["build-profiles", "--db", db, "--since", "yesterday"]).exit_code == 1
