"""GF-CF and BSPM against their dense formulas, and the helpers they share (normalisation, truncated SVD)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from adrec.data.interactions import Interactions
from adrec.exceptions import ValidationError
from adrec.models import BSPM, GFCF, get_model
from adrec.models.graph_filters import degree_normalize, truncated_svd


def random_interactions(n_users: int = 30, n_items: int = 20, density: float = 0.25, seed: int = 0) -> np.ndarray:
    """A 0/1 matrix with one empty item column (degree 0) and every user non-empty."""
    rng = np.random.default_rng(seed)
    r = (rng.random((n_users, n_items)) < density).astype(np.float64)
    r[np.arange(n_users), rng.integers(0, n_items - 1, n_users)] = 1.0
    r[:, -1] = 0.0
    return r


def dense_parts(r: np.ndarray, vt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """By hand: ``P = R̃ᵀR̃`` with ``R̃ = D_u^-1/2 R D_i^-1/2`` and ``L = D_i^-1/2 V Vᵀ D_i^1/2`` (0 for empty items)."""
    du, di = r.sum(axis=1), r.sum(axis=0)
    inv_u = np.where(du > 0, 1 / np.sqrt(np.where(du > 0, du, 1)), 0.0)
    inv_i = np.where(di > 0, 1 / np.sqrt(np.where(di > 0, di, 1)), 0.0)
    norm = inv_u[:, None] * r * inv_i[None, :]
    low = (inv_i[:, None] * vt.T) @ (vt * np.sqrt(di)[None, :])
    return norm.T @ norm, low


def test_degree_normalize_matches_dense() -> None:
    r = random_interactions()
    r[3, 4] = 2.5  # a weighted entry: degrees are weighted sums
    norm, du, di = degree_normalize(sp.csr_matrix(r), user_power=0.5, item_power=0.25)
    np.testing.assert_allclose(du, r.sum(axis=1))
    np.testing.assert_allclose(di, r.sum(axis=0))
    expected = r / np.sqrt(r.sum(axis=1))[:, None] / np.where(di > 0, di, 1)[None, :] ** 0.25
    np.testing.assert_allclose(norm.toarray(), expected, rtol=1e-6)
    assert norm.dtype == np.float32
    assert not np.isnan(norm.toarray()).any()


def test_truncated_svd_matches_numpy_on_a_low_rank_matrix() -> None:
    rng = np.random.default_rng(3)
    low_rank = rng.random((60, 6)) @ rng.random((6, 40))
    s, vt = truncated_svd(sp.csr_matrix(low_rank), 4, n_oversamples=8, n_iter=3)
    _, s_ref, vt_ref = np.linalg.svd(low_rank)
    np.testing.assert_allclose(s, s_ref[:4], rtol=1e-4)
    np.testing.assert_allclose(np.abs(vt @ vt_ref[:4].T), np.eye(4), atol=1e-3)  # same vectors up to sign
    np.testing.assert_allclose(vt @ vt.T, np.eye(4), atol=1e-5)


def test_truncated_svd_caps_k_at_the_rank_bound() -> None:
    s, vt = truncated_svd(sp.csr_matrix(np.eye(5, 3)), 10)
    assert s.shape == (3,)
    assert vt.shape == (3, 3)


def test_gfcf_without_low_pass_is_the_dense_linear_filter() -> None:
    r = random_interactions()
    model = GFCF(alpha=0.0, factors=0, batch_size=7).fit(sp.csr_matrix(r))
    p, _ = dense_parts(r, np.zeros((0, r.shape[1])))
    users = np.arange(r.shape[0])
    np.testing.assert_allclose(model.score(users), r @ p, rtol=1e-5, atol=1e-6)


def test_gfcf_adds_the_ideal_low_pass_filter() -> None:
    r = random_interactions()
    model = GFCF(alpha=0.3, factors=5).fit(sp.csr_matrix(r))
    p, low = dense_parts(r, model.vt_.astype(np.float64))
    np.testing.assert_allclose(model.score(np.arange(r.shape[0])), r @ (p + 0.3 * low), rtol=1e-4, atol=1e-5)


def test_gfcf_low_pass_spans_the_top_singular_vectors() -> None:
    r = random_interactions()
    model = GFCF(factors=5, n_iter=8).fit(sp.csr_matrix(r))
    norm = degree_normalize(sp.csr_matrix(r))[0].toarray().astype(np.float64)
    vt_ref = np.linalg.svd(norm)[2][:5]
    np.testing.assert_allclose(model.vt_ @ model.vt_.T, np.eye(5), atol=1e-5)
    np.testing.assert_allclose(np.linalg.svd(model.vt_ @ vt_ref.T)[1], np.ones(5), atol=1e-3)  # same subspace


def test_bspm_without_sharpening_is_gfcf() -> None:
    data = sp.csr_matrix(random_interactions())
    users = np.arange(data.shape[0])
    gfcf = GFCF(alpha=0.2, factors=5).fit(data).score(users)
    for params in ({"sharpen_steps": 0}, {"sharpen_time": 0.0}):
        bspm = BSPM(beta=0.2, factors=5, **params).fit(data)  # type: ignore[arg-type]
        np.testing.assert_allclose(bspm.score(users), gfcf, rtol=1e-5, atol=1e-6)


def test_bspm_without_any_process_returns_the_input_row() -> None:
    r = random_interactions()
    model = BSPM(beta=0.0, factors=0, blur_steps=0, sharpen_steps=0).fit(sp.csr_matrix(r))
    np.testing.assert_array_equal(model.score(np.arange(r.shape[0])), r)


def rk4_polynomial(x: np.ndarray, h: float) -> np.ndarray:
    """One classical RK4 step of dy/dt = -y X from y = I: the degree-4 Taylor polynomial of exp(-hX)."""
    out, power = np.eye(len(x)), np.eye(len(x))
    for j in range(1, 5):
        power = power @ x
        out += (-h) ** j / math.factorial(j) * power
    return out


@pytest.mark.parametrize("merge", ["early", "late"])
def test_bspm_rk4_matches_the_dense_polynomial(merge: str) -> None:
    r = random_interactions()
    model = BSPM(factors=5, beta=0.2, sharpen_time=2.5, sharpen_solver="rk4", merge=merge, batch_size=8)
    model.fit(sp.csr_matrix(r))
    p, low = dense_parts(r, model.vt_.astype(np.float64))
    sharpen = rk4_polynomial(p, 2.5)
    expected = r @ (p + 0.2 * low) @ sharpen if merge == "early" else r @ p @ sharpen + 0.2 * r @ low
    np.testing.assert_allclose(model.score(np.arange(r.shape[0])), expected, rtol=1e-4, atol=1e-5)


def test_bspm_euler_steps_match_the_dense_formula() -> None:
    r = random_interactions()
    model = BSPM(
        factors=0, beta=0.0, blur_time=1.5, blur_steps=3, sharpen_time=0.9, sharpen_steps=2, sharpen_solver="euler"
    )
    model.fit(sp.csr_matrix(r))
    p, _ = dense_parts(r, np.zeros((0, r.shape[1])))
    eye = np.eye(len(p))
    blur = np.linalg.matrix_power(eye + 0.5 * (p - eye), 3)
    sharpen = np.linalg.matrix_power(eye - 0.45 * p, 2)
    np.testing.assert_allclose(model.score(np.arange(r.shape[0])), r @ blur @ sharpen, rtol=1e-4, atol=1e-5)


def test_bspm_rk4_blurring_matches_the_dense_polynomial() -> None:
    r = random_interactions()
    model = BSPM(factors=0, beta=0.0, blur_time=2.0, blur_steps=2, blur_solver="rk4", sharpen_steps=0)
    model.fit(sp.csr_matrix(r))
    p, _ = dense_parts(r, np.zeros((0, r.shape[1])))
    eye = np.eye(len(p))
    step = rk4_polynomial(eye - p, 1.0)  # dy/dt = y (P - I) = -y (I - P)
    np.testing.assert_allclose(model.score(np.arange(r.shape[0])), r @ step @ step, rtol=1e-4, atol=1e-5)


def test_scores_do_not_depend_on_the_batch_size() -> None:
    data = sp.csr_matrix(random_interactions())
    users = np.array([5, 0, 29, 5, 11])
    full = BSPM(factors=4, batch_size=64).fit(data).score(users)
    np.testing.assert_allclose(BSPM(factors=4, batch_size=2).fit(data).score(users), full, rtol=1e-5, atol=1e-6)


def test_an_item_nobody_saw_scores_zero_and_nothing_is_nan() -> None:
    r = random_interactions()
    for model in (GFCF(factors=5), BSPM(factors=5)):
        scores = model.fit(Interactions(sp.csr_matrix(r))).score(np.arange(r.shape[0]))
        assert np.isfinite(scores).all()
        np.testing.assert_array_equal(scores[:, -1], 0.0)


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("bspm", {"sharpen_solver": "dopri5"}, "sharpen_solver"),
        ("bspm", {"blur_solver": "midpoint"}, "blur_solver"),
        ("bspm", {"merge": "middle"}, "merge"),
        ("bspm", {"sharpen_steps": -1}, "sharpen_steps"),
        ("bspm", {"blur_time": -1.0}, "blur_time"),
        ("gfcf", {"factors": -1}, "factors"),
        ("gfcf", {"batch_size": 0}, "batch_size"),
        ("gfcf", {"device": "tpu"}, "device"),
    ],
)
def test_bad_hyper_parameters_are_refused_by_fit(name: str, params: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        get_model(name, **params).fit(sp.csr_matrix(random_interactions()))
