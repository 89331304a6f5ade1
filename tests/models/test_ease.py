"""EASE: the closed form against a direct NumPy computation, the zero diagonal, and the size guard."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from adrec.exceptions import AdrecError, ValidationError
from adrec.models import EASE


def interactions() -> np.ndarray:
    rng = np.random.default_rng(4)
    return (rng.random((50, 12)) < 0.3).astype(np.float64)


def test_weights_match_the_closed_form() -> None:
    x = interactions()
    lam = 3.0
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    expected = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    model = EASE(regularization=lam).fit(sp.csr_matrix(x))
    np.testing.assert_allclose(model.weights_, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.diag(model.weights_), 0.0)


def test_weights_solve_the_constrained_least_squares_problem() -> None:
    """Stationarity of ||X - XB||² + λ||B||² with diag(B) = 0: off the diagonal, (XᵀX + λI) B = XᵀX."""
    x = interactions()
    lam = 3.0
    b = EASE(regularization=lam).fit(sp.csr_matrix(x)).weights_.astype(np.float64)
    gram = x.T @ x
    residual = (gram + lam * np.eye(len(gram))) @ b - gram
    np.testing.assert_allclose(residual - np.diag(np.diag(residual)), 0.0, atol=1e-3)


def test_scores_are_the_training_row_times_b() -> None:
    x = interactions()
    model = EASE(regularization=3.0).fit(sp.csr_matrix(x))
    np.testing.assert_allclose(model.score(np.arange(50)), x @ model.weights_, rtol=1e-5, atol=1e-6)
    users, items = np.array([0, 7, 49]), np.array([11, 0, 5])
    np.testing.assert_allclose(model.score(users, items), (x @ model.weights_)[users, items], rtol=1e-5, atol=1e-6)


def test_a_catalogue_over_max_items_is_refused_with_advice() -> None:
    with pytest.raises(ValidationError, match="max_items") as err:
        EASE(max_items=10).fit(sp.csr_matrix(interactions()))
    assert isinstance(err.value, AdrecError)
    assert err.value.field == "max_items"
    assert "gfcf" in str(err.value)
    assert "itemknn" in str(err.value)
    assert "12 x 12" in str(err.value)


@pytest.mark.parametrize(
    ("params", "field"), [({"regularization": 0.0}, "regularization"), ({"device": "x"}, "device")]
)
def test_bad_hyper_parameters_are_refused(params: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        EASE(**params).fit(sp.csr_matrix(interactions()))  # type: ignore[arg-type]
