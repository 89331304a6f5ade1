"""Matrix factorisation trained with the Bayesian personalised ranking (BPR) loss, in PyTorch."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from adrec.exceptions import ValidationError
from adrec.models.base import FactorRecommender, IntArray, check_device, register

__all__ = ["BPR", "sample_negatives"]


def sample_negatives(
    matrix: sp.csr_matrix, users: IntArray, rng: np.random.Generator, *, max_rounds: int = 20
) -> IntArray:
    """One uniformly drawn item per entry of ``users`` that the user has no interaction with in ``matrix``.

    Vectorized rejection sampling: draws that hit a positive are redrawn, up to ``max_rounds`` times (a user who
    has nearly every item may keep a positive after that).
    """
    n_items = np.int64(matrix.shape[1])
    keys = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr)) * n_items + matrix.indices
    keys.sort()
    items = rng.integers(0, n_items, size=len(users), dtype=np.int64)
    todo = np.arange(len(users))
    for _ in range(max_rounds):
        cand = users[todo] * n_items + items[todo]
        pos = np.minimum(np.searchsorted(keys, cand), max(len(keys) - 1, 0))
        todo = todo[keys[pos] == cand] if len(keys) else todo[:0]
        if len(todo) == 0:
            break
        items[todo] = rng.integers(0, n_items, size=len(todo), dtype=np.int64)
    return items


@register
class BPR(FactorRecommender):
    """Matrix factorisation ``score(u, i) = p_u · q_i`` trained by BPR on sampled (user, positive, negative) triples.

    Rendle, Freudenthaler, Gantner, Schmidt-Thieme, "BPR: Bayesian Personalized Ranking from Implicit Feedback",
    UAI 2009.

    Each epoch visits every training interaction ``(u, i)`` once in random order, pairs it with an item ``j`` the
    user has not interacted with (uniform), and minimises ``-log σ(p_u·q_i - p_u·q_j)`` plus
    ``regularization / 2 · (|p_u|² + |q_i|² + |q_j|²)`` per triple (as in LightGCN's MF baseline) over large
    batches, with lazy Adam (as :class:`torch.optim.SparseAdam`: only the rows in a batch move).

    Parameters
    ----------
    factors
        Embedding dimension. Default 64.
    epochs
        Passes over the training interactions. Default 50.
    batch_size
        Triples per Adam step. Default 8192.
    learning_rate
        Adam learning rate. Default 0.005.
    regularization
        L2 weight on the embeddings of each triple. Default 1e-4.
    init_std
        Standard deviation of the normal initial embeddings. Default 0.1.
    device
        ``"cpu"`` or ``"cuda"``. Default ``"cpu"``.
    random_state
        Seed of the initialisation and the sampling. Default 0.
    verbose
        Show a progress bar with the loss. Default True.
    """

    name: ClassVar[str] = "bpr"

    def __init__(
        self,
        *,
        factors: int = 64,
        epochs: int = 50,
        batch_size: int = 8192,
        learning_rate: float = 0.005,
        regularization: float = 1e-4,
        init_std: float = 0.1,
        device: str = "cpu",
        random_state: int | None = 0,
        verbose: bool = True,
    ) -> None:
        self.factors = factors
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.init_std = init_std
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self) -> None:
        for name in ("factors", "batch_size"):
            if getattr(self, name) < 1:
                raise ValidationError(name, f"must be >= 1; got {getattr(self, name)}")
        if self.epochs < 0:
            raise ValidationError("epochs", f"must be >= 0; got {self.epochs}")
        for name in ("learning_rate", "init_std"):
            if getattr(self, name) <= 0:
                raise ValidationError(name, f"must be > 0; got {getattr(self, name)}")
        if self.regularization < 0:
            raise ValidationError("regularization", f"must be >= 0; got {self.regularization}")
        check_device(self.device)

    def _fit(self, matrix: sp.csr_matrix) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._check_params()
        rng = np.random.default_rng(self.random_state)
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        device = torch.device(self.device)
        users_emb = torch.empty(self.n_users_, self.factors).normal_(0.0, self.init_std, generator=generator)
        items_emb = torch.empty(self.n_items_, self.factors).normal_(0.0, self.init_std, generator=generator)
        user_opt = _LazyAdam(users_emb.to(device), self.learning_rate)
        item_opt = _LazyAdam(items_emb.to(device), self.learning_rate)
        pos_users = np.repeat(np.arange(self.n_users_, dtype=np.int64), np.diff(matrix.indptr))
        pos_items = matrix.indices.astype(np.int64)
        columns = (
            TextColumn("bpr"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, disable=not self.verbose) as progress:
            task = progress.add_task("bpr", total=self.epochs, loss=float("nan"))
            for _ in range(self.epochs):
                order = rng.permutation(len(pos_users))
                users = pos_users[order]
                triples = torch.from_numpy(
                    np.stack([users, pos_items[order], sample_negatives(matrix, users, rng)])
                ).to(device)
                total = 0.0
                for start in range(0, triples.shape[1], self.batch_size):
                    u, i, j = triples[:, start : start + self.batch_size]
                    user, pos, neg = (
                        t.detach().requires_grad_() for t in (user_opt.table[u], item_opt.table[i], item_opt.table[j])
                    )
                    loss = self._loss(user, pos, neg)
                    user_grad, pos_grad, neg_grad = torch.autograd.grad(loss, (user, pos, neg))
                    user_opt.step(u, user_grad)
                    item_opt.step(torch.cat([i, j]), torch.cat([pos_grad, neg_grad]))
                    total += float(loss.detach()) * len(u)
                progress.update(task, advance=1, loss=total / max(triples.shape[1], 1))
        self.user_factors_ = user_opt.table.cpu().numpy()
        self.item_factors_ = item_opt.table.cpu().numpy()

    def _loss(self, user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Mean BPR loss of a batch of embedding triples, plus the L2 term."""
        margin = (user * (pos - neg)).sum(dim=1)
        l2 = (user.square().sum() + pos.square().sum() + neg.square().sum()) / (2 * len(user))
        return F.softplus(-margin).mean() + self.regularization * l2

    def _score_users(self, users: IntArray) -> npt.NDArray[np.floating[Any]]:
        # Accumulated in float64 so that a user's scores do not depend on the batch (GEMV vs GEMM rounding).
        user = self.user_factors_[users].astype(np.float64)
        return (user @ self.item_factors_.T.astype(np.float64)).astype(np.float32)

    def _score_pairs(self, users: IntArray, items: IntArray) -> npt.NDArray[np.floating[Any]]:
        user, item = self.user_factors_[users].astype(np.float64), self.item_factors_[items].astype(np.float64)
        return np.asarray(np.einsum("ij,ij->i", user, item), dtype=np.float32)


class _LazyAdam:
    """Adam on the rows of an embedding table that a batch touched; other rows and their moments stay put.

    The update of :class:`torch.optim.SparseAdam` (bias correction by the global step), done with row gathers and
    scatters instead of sparse tensors, which are several times slower on the CPU for embedding batches.
    """

    def __init__(self, table: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.table = table
        self.lr, (self.beta1, self.beta2) = lr, betas
        self.eps = 1e-8
        self.exp_avg = torch.zeros_like(table)
        self.exp_avg_sq = torch.zeros_like(table)
        self.steps = 0

    @torch.no_grad()
    def step(self, index: torch.Tensor, grad: torch.Tensor) -> None:
        """Apply the gradients ``grad`` ``(n, d)`` of the rows ``index`` ``(n,)`` (repeated rows add up)."""
        self.steps += 1
        rows, inverse = torch.unique(index, return_inverse=True)
        g = torch.zeros(len(rows), grad.shape[1], dtype=grad.dtype, device=grad.device).index_add_(0, inverse, grad)
        avg = self.exp_avg[rows].mul_(self.beta1).add_(g, alpha=1 - self.beta1)
        avg_sq = self.exp_avg_sq[rows].mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
        self.exp_avg[rows], self.exp_avg_sq[rows] = avg, avg_sq
        step_size = self.lr / (1 - self.beta1**self.steps)
        denom = avg_sq.div_(1 - self.beta2**self.steps).sqrt_().add_(self.eps)
        self.table.index_add_(0, rows, avg.div_(denom), alpha=-step_size)
