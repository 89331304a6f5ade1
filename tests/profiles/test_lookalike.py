"""Lookalike audiences on user vectors with known clusters, and ``adrec lookalike`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from adrec.cli.main import app
from adrec.data.interactions import IdMap, Interactions
from adrec.data.schema import User
from adrec.exceptions import NotFoundError, ValidationError
from adrec.models import BPR, EASE
from adrec.profiles import Profile, UserVectors, lookalike
from adrec.simulate import SimulationConfig, simulate
from adrec.store import open_store

runner = CliRunner()


def clustered(n_per: int = 20, seed: int = 0) -> UserVectors:
    """Three tight clusters of users around orthogonal directions: a0.., b0.., c0.."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 8)
    rows, ids = [], []
    for c, name in enumerate("abc"):
        rows.append(centres[c] + 0.1 * rng.normal(size=(n_per, 8)))
        ids += [f"{name}{i}" for i in range(n_per)]
    return UserVectors(IdMap.from_ids(ids), np.vstack(rows).astype(np.float32))


def test_seeds_of_one_cluster_expand_to_that_cluster_best_first() -> None:
    v = clustered()
    result = lookalike(v, ["a0", "a1", "a2"], 17)
    assert len(result.user_ids) == 17
    assert all(u.startswith("a") for u in result.user_ids)
    assert not {"a0", "a1", "a2"} & set(result.user_ids)
    assert result.scores == sorted(result.scores, reverse=True)
    bigger = lookalike(v, ["a0", "a1", "a2"], 30)
    assert bigger.user_ids[:17] == result.user_ids  # the next 13 come from other clusters
    assert all(not u.startswith("a") for u in bigger.user_ids[17:])


def test_knn_keeps_two_seed_groups_apart() -> None:
    v = clustered()
    seeds = ["a0", "a1", "b0", "b1"]
    result = lookalike(v, seeds, 36, method="knn", neighbours=1)
    assert {u[0] for u in result.user_ids} == {"a", "b"}
    assert lookalike(v, seeds, 36, method="centroid").user_ids[0][0] in "ab"


def test_candidates_constrain_the_audience_and_unknown_seeds_are_reported() -> None:
    v = clustered()
    allowed = {f"a{i}" for i in range(10, 20)} | {"c0"}
    result = lookalike(v, ["a0", "ghost"], 50, candidates=allowed)
    assert set(result.user_ids) == allowed
    assert result.user_ids[-1] == "c0"
    assert result.unknown_seeds == ["ghost"] and result.seeds_used == ["a0"]
    with pytest.raises(NotFoundError, match="none of the 1 seed"):
        lookalike(v, ["ghost"], 5)
    with pytest.raises(ValidationError, match="size"):
        lookalike(v, ["a0"], 0)
    with pytest.raises(ValidationError, match="method"):
        lookalike(v, ["a0"], 3, method="magic")
    assert lookalike(v, ["a0"], 3, candidates=set()).user_ids == []


def test_vectors_from_models_and_interactions_find_co_clickers() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], 30)
    r = rng.random((60, 20)) < np.where(groups[:, None] == (np.arange(20) >= 10)[None, :], 0.5, 0.03)
    data = Interactions(sp.csr_matrix(r.astype(np.float32)))
    seeds = [str(u) for u in range(5)]
    for vectors in (
        UserVectors.from_interactions(data),
        UserVectors.from_model(BPR(factors=8, epochs=60, learning_rate=0.05, verbose=False).fit(data), data.users),
    ):
        found = [int(u) for u in lookalike(vectors, seeds, 20).user_ids]
        assert np.mean(groups[found] == 0) >= 0.9, vectors.source
    with pytest.raises(ValidationError, match="no user embeddings"):
        UserVectors.from_model(EASE().fit(data), data.users)


def test_vectors_from_stored_profile_embeddings(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/p.db") as store:
        with pytest.raises(NotFoundError, match="embedding"):
            UserVectors.from_store(store)
        users = [User(user_id=f"u{i}", consent=i != 3) for i in range(4)]
        store.upsert_users(users)
        emb = [(1.0, 0.0), (0.9, 0.1), (0.0, 1.0), (1.0, 0.0)]
        store.upsert_profiles([Profile(u, None, e) for u, e in zip(users, emb, strict=True)])
        v = UserVectors.from_store(store)
    assert v.ids.ids == ["u0", "u1", "u2"]  # u3 does not consent: no behavioural targeting
    assert lookalike(v, ["u0"], 1).user_ids == ["u1"]


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('lookalike')}/m.db"
    config = SimulationConfig(seed=5, n_users=300, n_advertisers=10, n_campaigns=20, n_ads=60, n_impressions=20_000)
    with open_store(url) as store:
        simulate(config, store, progress=False)
    return url


def clickers(url: str) -> list[str]:
    from adrec.store.datasets import from_store

    with open_store(url) as store:
        return from_store(store).interactions.users.ids


def test_cli_lookalike_from_store_clicks(db: str, tmp_path: Path) -> None:
    users = clickers(db)
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(f"# buyers\n{users[0]}\n\n{users[1]}  # vip\nnobody\n")
    out_file = tmp_path / "audience.txt"
    result = runner.invoke(
        app, ["lookalike", "--seed-file", str(seeds), "--size", "7", "--db", db, "--json", "--out", str(out_file)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["count"] == 7 and report["seeds_used"] == 2
    assert report["unknown_seeds"] == ["nobody"]
    audience = out_file.read_text().split()
    assert len(audience) == 7 and not {users[0], users[1]} & set(audience)
    assert f"{seeds}:5 'nobody'" in result.stderr.replace("\n", "")


def test_cli_lookalike_honours_segment_rules(db: str, tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(clickers(db)[:5]))
    result = runner.invoke(
        app, ["lookalike", "--seed-file", str(seeds), "-n", "10", "--db", db, "--gender", "female", "--json"]
    )
    assert result.exit_code == 0, result.output
    found = [u["user_id"] for u in json.loads(result.stdout)["users"]]
    assert found
    with open_store(db) as store:
        assert all(store.get_user(u).gender.value == "female" for u in found)
    table = runner.invoke(app, ["lookalike", "--seed-file", str(seeds), "-n", "3", "--db", db], terminal_width=200)
    assert table.exit_code == 0 and "lookalike users of 5 seeds" in table.output


def test_cli_lookalike_errors_are_one_line(db: str, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["lookalike", "--seed-file", str(tmp_path / "none.txt"), "--size", "5", "--db", db])
    assert missing.exit_code == 1
    assert "--seed-file" in missing.stderr and "does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.txt"
    bad.write_text("u1\nu2 u3\n")
    result = runner.invoke(app, ["lookalike", "--seed-file", str(bad), "--size", "5", "--db", db])
    assert result.exit_code == 1 and f"{bad}:2" in result.stderr
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("ghost\n")
    result = runner.invoke(app, ["lookalike", "--seed-file", str(unknown), "--size", "5", "--db", db])
    assert result.exit_code == 1 and "none of the 1 seed" in result.stderr
    assert runner.invoke(app, ["lookalike", "--help"]).output.count("Example") >= 1


def test_profiles_built_with_the_live_model_store_its_embeddings_and_lookalike_uses_them(tmp_path: Path) -> None:
    # Before, Profile.embedding was never filled outside tests: `adrec lookalike --db` always fell back to
    # user-kNN on interaction rows.
    url = f"sqlite:///{tmp_path}/m.db"
    config = SimulationConfig(seed=6, n_users=200, n_advertisers=8, n_campaigns=16, n_ads=50, n_impressions=12_000)
    with open_store(url) as store:
        simulate(config, store, progress=False)
    models = tmp_path / "models"
    trained = runner.invoke(app, ["train", "--model", "bpr", "--out", str(models / "bpr"), "-d", f"store:{url}"])
    assert trained.exit_code == 0, trained.output
    pop = runner.invoke(app, ["train", "--model", "popularity", "--out", str(tmp_path / "pop"), "-d", f"store:{url}"])
    assert pop.exit_code == 0, pop.output
    flat = runner.invoke(app, ["build-profiles", "--db", url, "--models", str(tmp_path / "pop")])
    assert flat.exit_code == 1 and "has no user embeddings; use a model that has them" in flat.output
    refused = runner.invoke(app, ["build-profiles", "--db", url, "--models", str(models), "--since", "2025-01-01"])
    assert refused.exit_code != 0 and "--since" in refused.output
    built = runner.invoke(app, ["build-profiles", "--db", url, "--models", str(models), "--json"])
    assert built.exit_code == 0, built.output
    from adrec.models.artifact import Artifact

    art = Artifact.load(models / "bpr")
    assert art.model.user_embeddings is not None
    known = art.users.ids[0]
    with open_store(url) as store:
        profiles = {p.user_id: p for batch in store.iter_profiles() for p in batch}
        vectors = UserVectors.from_store(store)
    got = profiles[known].embedding
    assert got is not None
    np.testing.assert_allclose(got, art.model.user_embeddings[0], rtol=1e-6)
    # Users the model never saw get no vector from it.
    unseen = [u for u, p in profiles.items() if u not in art.users]
    assert all(profiles[u].embedding is None for u in unseen)
    assert len(vectors) == sum(1 for u in art.users.ids if profiles[u].user.consent)
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(f"{known}\n")
    result = runner.invoke(app, ["lookalike", "--seed-file", str(seeds), "--size", "5", "--db", url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["vectors"] == "stored profile embeddings"
