"""CFGAN: the two networks, the discriminator learning, block-structure recovery, collapse detection, persistence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from adrec.exceptions import ValidationError
from adrec.models import CFGAN, Recommender
from adrec.models.gan import (
    CollapseMonitor,
    Discriminator,
    GANEpoch,
    Generator,
    ModeCollapseError,
    ModeCollapseWarning,
    train_cfgan,
)
from adrec_testdata import require_dataset


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny networks: a second thread only adds hand-off latency (large on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


N_GROUPS, USERS_PER, ITEMS_PER = 4, 12, 15
USER_GROUP = np.repeat(np.arange(N_GROUPS), USERS_PER)
ITEM_GROUP = np.repeat(np.arange(N_GROUPS), ITEMS_PER)
SMALL = {"hidden_units": 16, "discriminator_units": 16, "batch_size": 16, "lr": 3e-3, "num_threads": 1}


def blocks(density: float = 0.5, seed: int = 0) -> sp.csr_matrix:
    """Users of group g interact only with items of group g, each with probability ``density``."""
    rng = np.random.default_rng(seed)
    own = USER_GROUP[:, None] == ITEM_GROUP[None, :]
    return sp.csr_matrix((own & (rng.random(own.shape) < density)).astype(np.float32))


def test_networks_have_the_documented_shapes() -> None:
    gen, disc = Generator(7, hidden_units=5, hidden_layers=2), Discriminator(7, hidden_units=3)
    condition = torch.zeros(4, 7)
    assert gen(condition).shape == (4, 7)
    out = gen.generate(condition)
    assert ((out >= 0) & (out <= 1)).all()
    assert disc(out, condition).shape == (4,)
    with pytest.raises(ValidationError, match="hidden_units"):
        Generator(7, hidden_units=0)


def test_discriminator_beats_chance_early() -> None:
    matrix = blocks()
    init = torch.Generator().manual_seed(0)
    gen, disc = Generator(matrix.shape[1], 32), Discriminator(matrix.shape[1], 16)
    gen.reset_parameters(init)
    disc.reset_parameters(init)
    log = train_cfgan(gen, disc, matrix, epochs=8, batch_size=16, zr_ratio=0.5, pm_ratio=0.5, random_state=0)
    accuracy = [r.discriminator_accuracy for r in log.records]
    assert len(accuracy) == 8
    assert np.mean(accuracy[-3:]) > 0.65  # chance is 0.5
    assert np.mean(accuracy[-3:]) > accuracy[0]
    assert all(np.isfinite(r.generator_loss) and np.isfinite(r.discriminator_loss) for r in log.records)


def test_generator_puts_mass_on_the_users_own_block() -> None:
    matrix = blocks()
    model = CFGAN(epochs=80, zr_ratio=0.1, pm_ratio=0.1, **SMALL).fit(matrix)
    users = np.arange(matrix.shape[0])
    generated = model.generate(users)
    seen = matrix.toarray() > 0
    own = USER_GROUP[:, None] == ITEM_GROUP[None, :]
    # On items the user has NOT interacted with: the generator must generalise, not copy its condition.
    own_unseen = np.array([generated[u][own[u] & ~seen[u]].mean() for u in users])
    other = np.array([generated[u][~own[u]].mean() for u in users])
    assert (own_unseen > other).all()
    assert own_unseen.mean() > 10 * other.mean()
    ids, _ = model.recommend(users, k=5, exclude=matrix)
    assert (ITEM_GROUP[ids] == USER_GROUP[:, None]).mean() > 0.9
    assert not model.log_.collapsed


def test_collapse_monitor_tells_a_constant_generator_from_a_copying_one() -> None:
    matrix = blocks()
    monitor = CollapseMonitor(matrix, n_users=32, k=5)
    constant = Generator(matrix.shape[1], hidden_units=4)
    torch.nn.init.zeros_(constant.net[0].weight)  # output ignores the condition
    spread, overlap = monitor.measure(constant)
    assert spread == pytest.approx(0.0, abs=1e-9)
    assert 0.0 < overlap <= 1.0  # lists differ only by the items each user has seen
    copying = Generator(matrix.shape[1], hidden_layers=0)
    with torch.no_grad():
        copying.net[0].weight.copy_(20 * torch.eye(matrix.shape[1]))
        copying.net[0].bias.fill_(-10.0)  # σ(±10): the condition itself
    spread, _ = monitor.measure(copying)
    assert spread == pytest.approx(1.0, abs=1e-3)


def test_collapse_is_reported_as_asked() -> None:
    matrix = blocks()
    params = {**SMALL, "epochs": 2, "collapse_threshold": 100.0}  # unreachable: every epoch counts as collapsed
    with pytest.warns(ModeCollapseWarning, match="collapsed"):
        model = CFGAN(**params).fit(matrix)
    assert model.log_.collapsed
    assert model.log_.first_collapse == 1
    with pytest.raises(ModeCollapseError, match="collapsed"):
        CFGAN(**params, on_collapse="raise").fit(matrix)
    assert CFGAN(**params, on_collapse="ignore").fit(matrix).log_.collapsed


@pytest.mark.parametrize(
    ("param", "value"),
    [("zr_ratio", 1.5), ("pm_ratio", -0.1), ("lr", 0.0), ("generator_loss", "wasserstein"), ("on_collapse", "x")],
)
def test_bad_parameters_are_refused(param: str, value: object) -> None:
    with pytest.raises(ValidationError, match=param):
        CFGAN(**{**SMALL, "epochs": 1, param: value}).fit(blocks())


def test_callback_sees_a_scoreable_model_and_can_stop_training() -> None:
    seen: list[tuple[int, tuple[int, ...]]] = []

    def callback(record: GANEpoch, model: CFGAN) -> bool:
        seen.append((record.epoch, model.score([0, 1]).shape))
        return record.epoch == 3

    model = CFGAN(**SMALL, epochs=10, on_collapse="ignore").fit(blocks(), callback=callback)
    assert seen == [(1, (2, 60)), (2, (2, 60)), (3, (2, 60))]
    assert len(model.log_.records) == 3
    assert model.log_.stopped_by_callback


def test_minimax_loss_trains_too() -> None:
    matrix = blocks()
    model = CFGAN(epochs=5, generator_loss="minimax", on_collapse="ignore", **SMALL).fit(matrix)
    assert all(np.isfinite(r.generator_loss) for r in model.log_.records)


def test_saved_model_keeps_its_training_log(tmp_path: Path) -> None:
    model = CFGAN(**SMALL, epochs=3, on_collapse="ignore").fit(blocks())
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "params.json").read_text())
    assert len(meta["extra"]["log"]["records"]) == 3
    loaded = Recommender.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.score(np.arange(5)), model.score(np.arange(5)), rtol=1e-6)


@pytest.mark.slow
def test_movielens_cfgan_beats_popularity_on_recall() -> None:
    """The issue's bar on real data (minutes): CFGAN alone above the most-popular list on Recall@20."""
    from adrec.evaluation.ranking import evaluate_model
    from adrec.models import Popularity
    from adrec.store.datasets import load_dataset

    ds = load_dataset(f"movielens:{require_dataset('ml-100k')}")
    gan = CFGAN(epochs=95, zr_ratio=0.1, pm_ratio=0.1, num_threads=1).fit(ds.train)
    pop = Popularity().fit(ds.train)
    recall = {m.name: evaluate_model(m, ds.train, ds.test, (20,))["recall@20"] for m in (gan, pop)}
    assert recall["cfgan"] > recall["popularity"], recall
