"""BSPM: blurring-sharpening process models, training-free collaborative filtering by two ODEs on the item graph."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import scipy.sparse as sp
import torch

from adrec.exceptions import ValidationError
from adrec.models.base import register
from adrec.models.graph_filters import GraphFilterRecommender, _dense_into, _Workspace

__all__ = ["BSPM"]

SOLVERS = ("euler", "rk4")
MERGES = ("early", "late")

# f(x, out): the right-hand side of dy/dt = f(y), written into the workspace buffer named `out`.
_Rhs = Callable[[torch.Tensor, str], torch.Tensor]


@register
class BSPM(GraphFilterRecommender):
    """Blurring-sharpening process model: blur a user's row over the item graph, then sharpen it back.

    Choi, Hong, Lee, Park, "Blurring-Sharpening Process Models for Collaborative Filtering", SIGIR 2023.

    With ``P = R̃ᵀR̃`` the GF-CF linear filter (``R̃ = D_u^{-1/2} R D_i^{-1/2}``) and ``L`` its ideal low-pass
    filter on the top ``factors`` singular vectors (see :class:`~adrec.models.graph_filters.GFCF`), a user's
    training row ``r`` goes through

    1. blurring, the heat equation ``dr/dt = r (P - I)`` for ``blur_time`` (one Euler step of size 1 gives
       ``r P``, the paper's setting), and the ideal low-pass filter ``r L`` (the paper's one Euler step);
    2. sharpening, ``dr/dt = -r P`` for ``sharpen_time``, started from ``blurred + beta · r L`` (``merge="early"``,
       BSPM-EM) or from ``blurred`` with ``beta · r L`` added after (``merge="late"``, BSPM-LM).

    Both ODEs are linear and are integrated with fixed steps of a hand-written solver (explicit Euler or the
    classical Runge-Kutta 4), so the scores are a polynomial in ``P`` applied to ``r``. ``sharpen_steps=0``
    (or ``sharpen_time=0``) leaves the blurred signal, which is GF-CF with ``alpha = beta``.

    The defaults are the paper's Gowalla setting (``factors=448, beta=0.2, sharpen_time=2.5``, one RK4 step). On a
    validation split of the Gowalla training data, ``factors=640`` scored a little higher (see
    ``benchmarks/results/baselines.md``).

    Parameters
    ----------
    factors
        Singular vectors in the ideal low-pass filter. Default 448.
    beta
        Weight of the ideal low-pass filter. Default 0.2.
    blur_time, blur_steps, blur_solver
        Length, number of steps and solver (``"euler"`` or ``"rk4"``) of the blurring process. Default 1.0, 1 and
        ``"euler"``.
    sharpen_time, sharpen_steps, sharpen_solver
        The same for the sharpening process. Default 2.5, 1 and ``"rk4"``. An RK4 step costs four products with
        ``P``, an Euler step one.
    merge
        ``"early"`` or ``"late"``: whether the low-pass term is sharpened too. Default ``"early"``.
    n_iter
        Power iterations of the randomized SVD. Default 4.
    batch_size
        Users filtered at once; memory is about ``batch_size * (4 n_items + n_users) * 4`` bytes. Default 1024.
    device
        ``"cpu"`` or ``"cuda"``: where the dense products run. Default ``"cpu"``.
    random_state
        Seed of the randomized SVD. Default 0.
    """

    name: ClassVar[str] = "bspm"

    def __init__(
        self,
        *,
        factors: int = 448,
        beta: float = 0.2,
        blur_time: float = 1.0,
        blur_steps: int = 1,
        blur_solver: str = "euler",
        sharpen_time: float = 2.5,
        sharpen_steps: int = 1,
        sharpen_solver: str = "rk4",
        merge: str = "early",
        n_iter: int = 4,
        batch_size: int = 1024,
        device: str = "cpu",
        random_state: int | None = 0,
    ) -> None:
        self.factors = factors
        self.beta = beta
        self.blur_time = blur_time
        self.blur_steps = blur_steps
        self.blur_solver = blur_solver
        self.sharpen_time = sharpen_time
        self.sharpen_steps = sharpen_steps
        self.sharpen_solver = sharpen_solver
        self.merge = merge
        self.n_iter = n_iter
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        for name in ("blur_solver", "sharpen_solver"):
            if getattr(self, name) not in SOLVERS:
                raise ValidationError(name, f"must be one of {', '.join(SOLVERS)}; got {getattr(self, name)!r}")
        if self.merge not in MERGES:
            raise ValidationError("merge", f"must be one of {', '.join(MERGES)}; got {self.merge!r}")
        for name in ("blur_steps", "sharpen_steps"):
            if getattr(self, name) < 0:
                raise ValidationError(name, f"must be >= 0; got {getattr(self, name)}")
        for name in ("blur_time", "sharpen_time"):
            if getattr(self, name) < 0:
                raise ValidationError(name, f"must be >= 0; got {getattr(self, name)}")

    def _filter(self, rows: sp.csr_matrix, ws: _Workspace) -> torch.Tensor:
        y = self._blur(rows, ws)
        if self.beta != 0 and self.merge == "early":
            y.add_(self._low_pass(rows, ws, "acc"), alpha=self.beta)

        def sharpen(x: torch.Tensor, out: str) -> torch.Tensor:
            return self._propagate(x, ws, out).neg_()

        self._integrate(sharpen, y, self.sharpen_time, self.sharpen_steps, self.sharpen_solver, ws)
        if self.beta != 0 and self.merge == "late":
            y.add_(self._low_pass(rows, ws, "acc"), alpha=self.beta)
        return y

    def _blur(self, rows: sp.csr_matrix, ws: _Workspace) -> torch.Tensor:
        """The blurred rows in the workspace buffer ``"y"``; the first step filters the sparse rows directly."""
        y = ws.items("y")
        if self.blur_steps == 0 or self.blur_time == 0:
            return _dense_into(rows.T, y)
        first = self._linear(rows, ws, "k").sub_(_dense_into(rows.T, y))  # P r - r, from sparse r

        def blur(x: torch.Tensor, out: str) -> torch.Tensor:
            return self._propagate(x, ws, out).sub_(x)

        self._integrate(blur, y, self.blur_time, self.blur_steps, self.blur_solver, ws, first=first)
        return y

    @staticmethod
    def _integrate(
        f: _Rhs,
        y: torch.Tensor,
        time: float,
        steps: int,
        solver: str,
        ws: _Workspace,
        first: torch.Tensor | None = None,
    ) -> None:
        """Integrate ``dy/dt = f(y)`` in place from 0 to ``time`` in ``steps`` fixed steps of ``solver``.

        ``first``, when given, is ``f(y)`` at the start (computed more cheaply by the caller).
        """
        if steps == 0 or time == 0:
            return
        h = time / steps
        for step in range(steps):
            k = first if step == 0 and first is not None else f(y, "k")
            if solver == "euler":
                y.add_(k, alpha=h)
                continue
            acc, stage = ws.items("acc"), ws.items("stage")
            torch.add(y, k, alpha=h / 6, out=acc)
            torch.add(y, k, alpha=h / 2, out=stage)
            k = f(stage, "k")
            acc.add_(k, alpha=h / 3)
            torch.add(y, k, alpha=h / 2, out=stage)
            k = f(stage, "k")
            acc.add_(k, alpha=h / 3)
            torch.add(y, k, alpha=h, out=stage)
            k = f(stage, "k")
            y.copy_(acc.add_(k, alpha=h / 6))
