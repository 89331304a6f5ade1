"""LightGCN: the propagation against the dense formula, its gradient, training, early stopping and seeding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from adrec.data.interactions import Interactions
from adrec.evaluation.ranking import RecallValidator, evaluate_model
from adrec.exceptions import ValidationError
from adrec.models import LightGCN, Recommender, get_model
from adrec.models.lightgcn import BipartiteGraph, LightGCNModule, propagate, propagate_rows, spectral_embeddings
from adrec.models.popularity import Popularity
from adrec.models.trainer import BPRSampler, EarlyStopping, train_bpr
from adrec_testdata import require_dataset


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny products: a second thread only adds hand-off latency (large on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


FAST = {"factors": 8, "epochs": 5, "batch_size": 64, "lr": 0.05, "num_threads": 1}
VALIDATED = {**FAST, "validator": RecallValidator(k=20)}


def small_graph() -> np.ndarray:
    """5 users x 7 items with an isolated user (row 4) and an isolated item (column 6)."""
    rng = np.random.default_rng(1)
    r = (rng.random((5, 7)) < 0.45).astype(np.float64)
    r[4] = 0.0
    r[:, 6] = 0.0
    r[0, 0] = r[1, 0] = 1.0  # at least one edge, whatever the draw
    return r


def dense_layer_mean(r: np.ndarray, emb: np.ndarray, n_layers: int) -> np.ndarray:
    """By hand: Â = D^-1/2 A D^-1/2 on A = [[0, R], [Rᵀ, 0]], applied L times, averaged over the L+1 layers."""
    n_users, n_items = r.shape
    a = np.block([[np.zeros((n_users, n_users)), r], [r.T, np.zeros((n_items, n_items))]])
    deg = a.sum(axis=1)
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    a_hat = inv[:, None] * a * inv[None, :]
    layer, total = emb.copy(), emb.copy()
    for _ in range(n_layers):
        layer = a_hat @ layer
        total += layer
    return total / (n_layers + 1)


def blocks(
    n_groups: int = 4, users_per: int = 12, items_per: int = 15, density: float = 0.5, seed: int = 0
) -> Interactions:
    """Users of group g interact only with items of group g (each with probability ``density``)."""
    rng = np.random.default_rng(seed)
    user_group = np.repeat(np.arange(n_groups), users_per)
    item_group = np.repeat(np.arange(n_groups), items_per)
    dense = (user_group[:, None] == item_group[None, :]) & (rng.random((len(user_group), len(item_group))) < density)
    return Interactions(sp.csr_matrix(dense.astype(np.float32)))


# -- propagation ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_layers", [0, 1, 2, 3, 4])
def test_propagation_equals_the_dense_formula(n_layers: int) -> None:
    r = small_graph()
    emb = np.random.default_rng(2).normal(size=(12, 3))
    graph = BipartiteGraph.from_matrix(sp.csr_matrix(r), dtype=torch.float64)
    users, items = propagate(graph, torch.tensor(emb[:5]), torch.tensor(emb[5:]), n_layers)
    expected = dense_layer_mean(r, emb, n_layers)
    np.testing.assert_allclose(users.numpy(), expected[:5], atol=1e-12)
    np.testing.assert_allclose(items.numpy(), expected[5:], atol=1e-12)


def test_isolated_nodes_keep_their_scaled_ego_embedding() -> None:
    r = small_graph()
    emb = np.random.default_rng(3).normal(size=(12, 2))
    graph = BipartiteGraph.from_matrix(sp.csr_matrix(r), dtype=torch.float64)
    users, items = propagate(graph, torch.tensor(emb[:5]), torch.tensor(emb[5:]), 3)
    np.testing.assert_allclose(users[4].numpy(), emb[4] / 4)
    np.testing.assert_allclose(items[6].numpy(), emb[11] / 4)


def test_weights_and_duplicates_are_binarised() -> None:
    r = small_graph()
    weighted = sp.csr_matrix(r * np.arange(1, 8))  # counts instead of 1s
    a = BipartiteGraph.from_matrix(sp.csr_matrix(r), dtype=torch.float64)
    b = BipartiteGraph.from_matrix(weighted, dtype=torch.float64)
    np.testing.assert_allclose(a.norm.to_dense().numpy(), b.norm.to_dense().numpy())
    np.testing.assert_allclose(a.norm_t.to_dense().numpy(), a.norm.to_dense().numpy().T)


@pytest.mark.parametrize(
    ("user_rows", "item_rows"),
    [([0, 3, 4], [1, 6]), ([2], [0, 1, 2, 3, 4, 5, 6]), (list(range(5)), list(range(7)))],
)
@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_selected_rows_and_their_gradient(user_rows: list[int], item_rows: list[int], n_layers: int) -> None:
    r = small_graph()
    graph = BipartiteGraph.from_matrix(sp.csr_matrix(r), dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    users = torch.randn(5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    items = torch.randn(7, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    ur, ir = torch.tensor(user_rows), torch.tensor(item_rows)
    full_u, full_i = propagate(graph, users, items, n_layers)
    part_u, part_i = propagate_rows(graph, users, items, n_layers, ur, ir)
    torch.testing.assert_close(part_u, full_u[ur])
    torch.testing.assert_close(part_i, full_i[ir])
    assert torch.autograd.gradcheck(lambda a, b: propagate_rows(graph, a, b, n_layers, ur, ir), (users, items))
    assert torch.autograd.gradcheck(lambda a, b: propagate(graph, a, b, n_layers), (users, items))


def test_module_scores_pairs_and_candidate_lists() -> None:
    r = small_graph()
    graph = BipartiteGraph.from_matrix(sp.csr_matrix(r))
    module = LightGCNModule(5, 7, embedding_dim=4, n_layers=2)
    users, items = module.get_embedding(graph)
    u, i = torch.tensor([0, 3, 0]), torch.tensor([[1, 2], [6, 1], [0, 5]])
    full = users @ items.T
    torch.testing.assert_close(module(graph, u, i), full[u[:, None], i])
    torch.testing.assert_close(module(graph, u, i[:, 0]), full[u, i[:, 0]])
    assert repr(module) == "LightGCNModule(5, 7, embedding_dim=4, n_layers=2)"


def test_loss_is_bpr_plus_l2_on_the_batch_ego_embeddings() -> None:
    module = LightGCNModule(5, 7, embedding_dim=4, n_layers=2)
    u, p, n = torch.tensor([0, 0, 3, 4]), torch.tensor([1, 2, 1, 6]), torch.tensor([5, 2, 0, 0])
    pos, neg = torch.randn(4), torch.randn(4)
    e_u, e_i = module.user_embedding, module.item_embedding
    l2 = (e_u[u].square().sum() + e_i[p].square().sum() + e_i[n].square().sum()) / 2 / 4
    expected = -torch.nn.functional.logsigmoid(pos - neg).mean() + 0.1 * l2
    torch.testing.assert_close(module.recommendation_loss(pos, neg, u, p, n, reg=0.1), expected)
    torch.testing.assert_close(module.recommendation_loss(pos, neg, u, p, n, reg=0.0), expected - 0.1 * l2)


def test_spectral_embeddings_match_the_svd() -> None:
    r = blocks().matrix
    graph = BipartiteGraph.from_matrix(r, dtype=torch.float64)
    u, s, v = spectral_embeddings(graph, 6, n_iter=30, generator=torch.Generator().manual_seed(0))
    exact = np.linalg.svd(graph.norm.to_dense().numpy(), compute_uv=False)
    np.testing.assert_allclose(s.numpy(), exact[:6], rtol=1e-6)
    np.testing.assert_allclose((u * s) @ v.T, graph.norm.to_dense().numpy() @ (v @ v.T).numpy(), atol=1e-6)
    assert s[0].item() == pytest.approx(1.0)  # the top singular value of D^-1/2 R D^-1/2


# -- training ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("init", ["spectral", "normal"])
def test_loss_decreases_on_block_data(init: str) -> None:
    # Uniform negatives: with hard (dynamic) negatives the loss is measured on ever harder triples.
    model = LightGCN(**{**FAST, "epochs": 8, "neg_candidates": 1}, init=init, validation_fraction=0.0).fit(blocks())
    losses = [r.loss for r in model.log_.records]
    assert len(losses) == 8
    assert losses[-1] < 0.5 * losses[0]
    assert model.log_.best_epoch is None  # no validation split, no "best"


def test_learns_the_blocks() -> None:
    data = blocks()
    model = LightGCN(**FAST, validation_fraction=0.0).fit(data)
    scores = model.score(np.arange(data.n_users))
    same = np.repeat(np.arange(4), 12)[:, None] == np.repeat(np.arange(4), 15)[None, :]
    assert scores[same].mean() > scores[~same].mean() + 0.5 * scores.std()


def test_early_stopping_stops_when_validation_stops_improving() -> None:
    data = blocks(n_groups=2, users_per=30, items_per=40, density=0.4)
    model = LightGCN(**{**VALIDATED, "epochs": 60, "lr": 0.1}, patience=2, max_decays=0).fit(data)
    log = model.log_
    assert log.stopped_early
    assert len(log.records) < 60
    metrics = [r.metric for r in log.records]
    assert all(m is not None for m in metrics)
    best = max(m for m in metrics if m is not None)
    assert log.best_metric == best
    assert log.best_epoch == metrics.index(best) + 1
    assert len(log.records) == log.best_epoch + 2  # stopped after `patience` evaluations without improvement


def test_the_validator_scores_a_held_out_part_and_names_the_metric() -> None:
    data = blocks()
    calls: list[tuple[Recommender, Interactions, Interactions]] = []

    def validator(model: Recommender, train: Interactions, valid: Interactions) -> float:
        calls.append((model, train, valid))
        return 0.5

    model = LightGCN(**FAST, validator=validator, validation_fraction=0.2).fit(data)
    assert len(calls) == FAST["epochs"]
    fitted, train, valid = calls[0]
    assert fitted is model
    assert train.nnz + valid.nnz == data.nnz
    assert train.matrix.multiply(valid.matrix).nnz == 0
    assert model.log_.metric_name == "validation"
    assert LightGCN(**VALIDATED).fit(data).log_.metric_name == "recall@20"


def test_without_a_validator_nothing_is_held_out() -> None:
    data = blocks()
    model = LightGCN(**FAST, validation_fraction=0.5).fit(data)
    assert [r.metric for r in model.log_.records] == [None] * FAST["epochs"]
    assert model.log_.best_epoch is None
    on_everything = LightGCN(**FAST, validation_fraction=0.0).fit(data)
    np.testing.assert_array_equal(model.user_embeddings, on_everything.user_embeddings)


def test_train_bpr_keeps_the_best_and_stops_after_patience() -> None:
    sampler = BPRSampler(blocks().matrix, batch_size=50, random_state=0)
    values = iter([0.1, 0.3, 0.2, 0.3, 0.25, 0.9])
    epochs_seen: list[int] = []
    best_at: list[int] = []
    steps: list[int] = []

    def step(users: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> float:
        steps.append(len(users))
        return 1.0

    log = train_bpr(
        step,
        sampler,
        epochs=10,
        validate=lambda: next(values),
        patience=3,
        on_best=lambda: best_at.append(len(epochs_seen) + 1),
        callback=lambda record: epochs_seen.append(record.epoch),
    )
    assert log.stopped_early
    assert [r.metric for r in log.records] == [0.1, 0.3, 0.2, 0.3, 0.25]
    assert (log.best_epoch, log.best_metric) == (2, 0.3)
    assert best_at == [1, 2]
    assert epochs_seen == [1, 2, 3, 4, 5]
    assert sum(steps) == 5 * sampler.n_pairs


def test_a_plateau_can_renew_the_patience() -> None:
    sampler = BPRSampler(blocks().matrix, batch_size=500, random_state=0)
    values = iter([0.1, 0.2, 0.2, 0.3, 0.3, 0.3, 0.9])
    renewals = iter([True, False])
    log = train_bpr(
        lambda u, p, n: 0.0,
        sampler,
        epochs=10,
        validate=lambda: next(values),
        patience=1,
        on_plateau=lambda: next(renewals),
    )
    assert log.plateaus == [3]
    assert log.stopped_early
    assert [r.metric for r in log.records] == [0.1, 0.2, 0.2, 0.3, 0.3]
    assert (log.best_epoch, log.best_metric) == (4, 0.3)


def test_plateaus_lower_the_learning_rate_from_the_best_embeddings() -> None:
    data = blocks(n_groups=2, users_per=30, items_per=40, density=0.4)
    model = LightGCN(**{**VALIDATED, "epochs": 60, "lr": 0.1}, patience=1, max_decays=2).fit(data)
    log = model.log_
    assert log.stopped_early
    assert len(log.plateaus) == 2
    assert log.plateaus[0] < log.plateaus[1] < len(log.records)
    assert log.best_metric == max(r.metric for r in log.records if r.metric is not None)


def test_eval_every_skips_epochs_and_always_evaluates_the_last() -> None:
    sampler = BPRSampler(blocks().matrix, batch_size=500, random_state=0)
    log = train_bpr(lambda u, p, n: 0.0, sampler, epochs=7, validate=lambda: 0.5, eval_every=3)
    assert [r.epoch for r in log.records if r.metric is not None] == [3, 6, 7]
    assert log.best_epoch == 3


def test_early_stopping_rules() -> None:
    stop = EarlyStopping(patience=2, min_delta=0.01)
    assert stop.step(0.5)
    assert not stop.step(0.505)  # not better by more than min_delta
    assert not stop.should_stop
    assert not stop.step(0.4)
    assert stop.should_stop
    assert not EarlyStopping(None).should_stop
    with pytest.raises(ValidationError, match="patience"):
        EarlyStopping(0)


def test_sampler_visits_every_pair_once_with_true_negatives() -> None:
    data = blocks(density=0.7)
    sampler = BPRSampler(data.matrix, batch_size=97, random_state=0)
    users, pos, neg = (np.concatenate(x) for x in zip(*sampler, strict=True))
    assert len(sampler) == -(-data.nnz // 97)
    seen = data.matrix.toarray() > 0
    assert sorted(zip(users.tolist(), pos.tolist(), strict=True)) == sorted(zip(*np.nonzero(seen), strict=True))
    assert not seen[users, neg].any()


def test_dynamic_negatives_are_the_best_scored_true_negatives() -> None:
    data = blocks(density=0.7)
    seen = data.matrix.toarray() > 0
    hard = BPRSampler(data.matrix, 97, random_state=0, n_candidates=5, scorer=lambda u, c: c.astype(np.float64))
    uniform = BPRSampler(data.matrix, 97, random_state=0)
    users, _, neg = (np.concatenate(x) for x in zip(*hard, strict=True))
    _, _, neg_uniform = (np.concatenate(x) for x in zip(*uniform, strict=True))
    assert not seen[users, neg].any()
    assert neg.mean() > neg_uniform.mean() + 5  # the scorer prefers high item indices
    model = LightGCN(**FAST, neg_candidates=4, validation_fraction=0.0).fit(data)
    assert model.log_.records[-1].loss < model.log_.records[0].loss


def test_same_seed_same_embeddings_other_seed_others() -> None:
    data = blocks()
    a = LightGCN(**VALIDATED, random_state=7).fit(data)
    b = LightGCN(**VALIDATED, random_state=7).fit(data)
    c = LightGCN(**VALIDATED, random_state=8).fit(data)
    np.testing.assert_array_equal(a.user_embeddings, b.user_embeddings)
    np.testing.assert_array_equal(a.item_embeddings, b.item_embeddings)
    assert not np.allclose(a.user_embeddings, c.user_embeddings)


def test_callback_sees_every_epoch_with_current_embeddings() -> None:
    data = blocks()
    seen: list[tuple[int, float]] = []
    model = LightGCN(**FAST, validation_fraction=0.0)
    model.fit(data, callback=lambda rec, m: seen.append((rec.epoch, float(m.score([0], [0])[0]))))
    assert [e for e, _ in seen] == [1, 2, 3, 4, 5]
    assert len({s for _, s in seen}) == 5  # the embeddings moved between epochs


def test_a_callback_can_stop_training_and_the_best_epoch_is_kept() -> None:
    model = LightGCN(**{**VALIDATED, "epochs": 50}, patience=None)
    model.fit(blocks(), callback=lambda record, m: record.epoch >= 3)
    assert model.log_.stopped_by_callback
    assert [r.epoch for r in model.log_.records] == [1, 2, 3]
    assert model.log_.best_epoch in (1, 2, 3)


def test_verbose_shows_progress(capsys: pytest.CaptureFixture[str]) -> None:
    LightGCN(**VALIDATED, verbose=True).fit(blocks())
    out = capsys.readouterr().out
    assert "val recall@20" in out


def test_params_round_trip_and_bad_params_are_refused(tmp_path: Path) -> None:
    model = get_model("lightgcn", **VALIDATED).fit(blocks())
    assert model.get_params()["factors"] == 8
    loaded = Recommender.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.user_embeddings, model.user_embeddings)
    assert isinstance(loaded, LightGCN)
    assert loaded.log_ == model.log_
    assert loaded.validator is None  # code, not state: a loaded model is fitted already
    with pytest.raises(ValidationError, match="init"):
        LightGCN(init="xavier").fit(blocks())
    with pytest.raises(ValidationError, match="validation_fraction"):
        LightGCN(validation_fraction=1.0).fit(blocks())
    with pytest.raises(ValidationError, match="device"):
        LightGCN(device="tpu").fit(blocks())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="CUDA is not available"):
        LightGCN(device="cuda").fit(blocks())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    data = blocks()
    cpu = LightGCN(**FAST, validation_fraction=0.0).fit(data)
    gpu = LightGCN(**FAST, validation_fraction=0.0, device="cuda").fit(data)
    np.testing.assert_allclose(gpu.user_embeddings, cpu.user_embeddings, atol=1e-3)


# -- real data -----------------------------------------------------------------------------------------------
def lastfm() -> tuple[Interactions, Interactions]:
    """LightGCN-PyTorch's Last.fm split (1-based ``user item weight`` rows); see ``require_dataset`` when missing."""
    root = require_dataset("lastfm_lightgcn_pytorch", "data1.txt", "test1.txt")
    shape = (1892, 4489)
    train, test = (np.loadtxt(root / name, dtype=np.float64, ndmin=2) for name in ("data1.txt", "test1.txt"))
    return tuple(  # type: ignore[return-value]
        Interactions.from_pairs(t[:, 0].astype(np.int64) - 1, t[:, 1].astype(np.int64) - 1, shape)
        for t in (train, test)
    )


@pytest.mark.slow
def test_lastfm_beats_popularity_by_far() -> None:
    train, test = lastfm()
    model = LightGCN(random_state=0, validator=RecallValidator(k=20)).fit(train)
    result = evaluate_model(model, train, test, ks=(20,))
    baseline = evaluate_model(Popularity().fit(train), train, test, ks=(20,))
    assert model.log_.best_epoch is not None
    assert result["recall@20"] > 1.5 * baseline["recall@20"]
    assert result["recall@20"] > 0.25  # measured: 0.276 (0.247 with the uniform negatives of neg_candidates=1)
