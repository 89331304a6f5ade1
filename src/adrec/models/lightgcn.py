"""LightGCN: linear propagation of user and item embeddings over the interaction graph, trained with BPR.

X. He, K. Deng, X. Wang, Y. Li, Y. Zhang, M. Wang, *LightGCN: Simplifying and Powering Graph Convolution Network
for Recommendation*, SIGIR 2020 (arXiv:2002.02126).

Three pieces, in the shape of PyTorch Geometric's ``torch_geometric.nn.models.LightGCN``:

- :class:`BipartiteGraph`: the normalised adjacency ``D^-1/2 A D^-1/2`` of the user–item graph, stored as its two
  off-diagonal blocks ``R~ = D_u^-1/2 R D_i^-1/2`` and ``R~ᵀ`` (sparse CSR tensors);
- :class:`LightGCNModule`: the ``torch.nn.Module`` (ego embeddings, propagation, raw scores, BPR loss);
- :class:`LightGCN`: the registered :class:`~adrec.models.base.Recommender` that trains the module with
  :func:`~adrec.models.trainer.train_bpr` and, given a validator, early stopping on a validation split carved from
  the training data.

Why it is fast on a CPU
-----------------------
PyG propagates with message passing over ``edge_index``: every layer gathers one message per directed edge
(``2 nnz × d`` floats), scatters them back and renormalises the graph, and autograd keeps those buffers for the
backward pass. Here a layer is two sparse–dense products, ``U' = R~ I`` and ``I' = R~ᵀ U`` (MKL, 32-bit indices),
and :func:`propagate_rows` adds three savings (:class:`_PropagateRows`):

- the layer-mean readout ``P = (I + Â + … + Â^L) / (L + 1)`` is linear and symmetric, so the gradient of
  ``F = P E`` is ``P G``: the backward pass is the same propagation applied to the gradient, and nothing is
  stored between the passes; both passes use Horner's rule, one fused ``addmm`` per half and layer;
- a batch needs ``F`` on its own users and items only, so the last layer is computed for those rows only;
- the gradient is zero outside those rows, so the first backward layer only reaches their neighbours.

With 3 layers and a batch of 2,048 triples, a step thus costs 8 full sparse products (4 forward, 4 backward)
plus two small ones, instead of 12; on large batches the shortcuts fade and the step costs 12.

Why it learns fast on a CPU
---------------------------
With ``init="spectral"`` the ego embeddings start from a truncated SVD of ``R~`` (the graph-filter view of
LightGCN: Shen et al., *How Powerful is Graph Convolution for Recommendation?*, CIKM 2021). If
``R~ ≈ U S Vᵀ`` and ``E_u = U h(S)``, ``E_i = V h(S)``, then ``Â^l`` maps them to ``U S^l h(S)``, ``V S^l h(S)``,
so LightGCN's scores start as the low-rank filter ``U h(S)² m(S)² Vᵀ`` with ``m(s) = Σ_l s^l / (L + 1)``. BPR
training then refines them with large batches and a high learning rate, lowered (from the best embeddings so
far) whenever the validation metric stops improving.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from adrec.data.interactions import Interactions, as_matrix
from adrec.data.linalg import degree_normalize
from adrec.data.splits import random_split
from adrec.exceptions import ValidationError
from adrec.models.base import FactorRecommender, FloatArray, IntArray, Validator, register, torch_threads
from adrec.models.trainer import BPRSampler, EpochRecord, TrainingLog, train_bpr

__all__ = ["BipartiteGraph", "LightGCN", "LightGCNModule", "propagate", "propagate_rows", "spectral_embeddings"]

INITS = ("spectral", "normal")


@dataclass(frozen=True)
class BipartiteGraph:
    """The symmetrically normalised user–item adjacency ``Â = D^-1/2 A D^-1/2`` by its two blocks.

    ``A = [[0, R], [Rᵀ, 0]]`` with ``R`` the binarised ``(n_users, n_items)`` interaction matrix, so
    ``Â = [[0, R~], [R~ᵀ, 0]]`` with ``R~ = D_u^-1/2 R D_i^-1/2``. A node without interactions has degree 0 and
    receives nothing.

    Attributes
    ----------
    norm
        ``R~``, a sparse CSR tensor of shape ``(n_users, n_items)``.
    norm_t
        ``R~ᵀ``, a sparse CSR tensor of shape ``(n_items, n_users)`` (kept so both products read rows).
    """

    norm: Tensor
    norm_t: Tensor

    @classmethod
    def from_matrix(
        cls, matrix: sp.spmatrix | Interactions, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> BipartiteGraph:
        """Build from a user × item matrix; every stored entry is an edge of weight 1."""
        r = sp.csr_matrix(as_matrix(matrix), dtype=np.float64, copy=True)
        r.sum_duplicates()
        r.eliminate_zeros()
        r.data[:] = 1.0
        norm = degree_normalize(r, dtype=np.float64)[0]
        norm.sort_indices()
        norm_t = sp.csr_matrix(norm.T)
        norm_t.sort_indices()
        return cls(_to_csr_tensor(norm, device, dtype), _to_csr_tensor(norm_t, device, dtype))

    @property
    def n_users(self) -> int:
        return int(self.norm.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.norm.shape[1])

    @property
    def n_edges(self) -> int:
        """Number of user–item interactions (each is two directed edges of ``A``)."""
        return int(self.norm._nnz())


def _to_csr_tensor(m: sp.csr_matrix, device: str | torch.device, dtype: torch.dtype) -> Tensor:
    # 32-bit indices where they fit: the CPU kernels (MKL) take them without a conversion on every product.
    index = np.int32 if m.nnz < 2**31 else np.int64
    return _csr_tensor(
        torch.from_numpy(m.indptr.astype(index)),
        torch.from_numpy(m.indices.astype(index)),
        torch.from_numpy(m.data).to(dtype),
        m.shape,
    ).to(device)


def _csr_tensor(crow: Tensor, col: Tensor, val: Tensor, size: tuple[int, int]) -> Tensor:
    """A sparse CSR tensor from canonical parts (sorted, no duplicates: the invariants are not re-checked)."""
    with warnings.catch_warnings():
        # torch warns once per process that sparse CSR is "beta"; the products used here are stable.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, size, check_invariants=False)


def propagate(graph: BipartiteGraph, users: Tensor, items: Tensor, n_layers: int) -> tuple[Tensor, Tensor]:
    """The layer-mean readout ``P E = (E + Â E + … + Â^L E) / (L + 1)`` of all user and item embeddings.

    ``users`` has shape ``(n_users, d)`` and ``items`` ``(n_items, d)``; so do the two results. Differentiable:
    the backward pass applies ``P`` to the incoming gradient (``P`` is symmetric).
    """
    return propagate_rows(graph, users, items, n_layers)


def propagate_rows(
    graph: BipartiteGraph,
    users: Tensor,
    items: Tensor,
    n_layers: int,
    user_rows: Tensor | None = None,
    item_rows: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Rows ``user_rows`` and ``item_rows`` (each without repeats; ``None``: all) of :func:`propagate`'s results.

    The last layer is computed for those rows only, and the backward pass starts from their neighbours only,
    so a step on a small batch costs ``L - 1`` full sparse products per half and direction instead of ``L``.
    """
    out: tuple[Tensor, Tensor] = _PropagateRows.apply(  # type: ignore[no-untyped-call]
        users, items, graph, n_layers, user_rows, item_rows
    )
    return out


class _PropagateRows(torch.autograd.Function):
    """``(P E)[rows]`` with backward ``P G``; only the rows' blocks of ``R~`` and ``R~ᵀ`` are kept for backward.

    Both passes use Horner's rule, ``Σ_{l≤L} Â^l X = X + Â (X + Â (… (X + Â X)))``: one fused ``addmm`` per half
    and layer. Forward, the outermost layer is needed on the selected rows only; backward, the incoming gradient
    is zero outside them, so the innermost product only reaches their neighbours. Both shortcuts take a product
    over the rows' block of ``R~`` (or ``R~ᵀ``), used while that block holds under half of the edges.
    """

    @staticmethod
    def forward(
        ctx: Any,
        users: Tensor,
        items: Tensor,
        graph: BipartiteGraph,
        n_layers: int,
        user_rows: Tensor | None,
        item_rows: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        users, items = users.detach(), items.detach()
        scale = 1.0 / (n_layers + 1)
        block_u, block_i = _small_block(graph.norm, user_rows), _small_block(graph.norm_t, item_rows)
        ctx.graph, ctx.n_layers, ctx.rows, ctx.blocks = graph, n_layers, (user_rows, item_rows), (block_u, block_i)
        if n_layers == 0:
            return _take(users, user_rows) * scale, _take(items, item_rows) * scale
        h_u, h_i = users, items
        for _ in range(n_layers - 1):
            h_u, h_i = torch.addmm(users, graph.norm, h_i), torch.addmm(items, graph.norm_t, h_u)
        out_u = _last_layer(users, graph.norm, block_u, user_rows, h_i)
        out_i = _last_layer(items, graph.norm_t, block_i, item_rows, h_u)
        return out_u.mul_(scale), out_i.mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad_u: Tensor, grad_i: Tensor) -> tuple[Tensor | None, ...]:
        graph: BipartiteGraph = ctx.graph
        n_layers: int = ctx.n_layers
        user_rows, item_rows = ctx.rows
        block_u, block_i = ctx.blocks
        g_u, g_i = _scatter_rows(grad_u, user_rows, graph.n_users), _scatter_rows(grad_i, item_rows, graph.n_items)
        scale = 1.0 / (n_layers + 1)
        if n_layers == 0:
            return g_u.mul_(scale), g_i.mul_(scale), None, None, None, None
        # Innermost step G + Â G. G is zero outside the rows, so (Â G)_users = R~ g_i = (R~ᵀ[item_rows])ᵀ grad_i.
        if block_i is None:
            h_u = torch.addmm(g_u, graph.norm, g_i)
        else:
            h_u = g_u + _transposed_product(block_i, grad_i, graph.n_users)
        if block_u is None:
            h_i = torch.addmm(g_i, graph.norm_t, g_u)
        else:
            h_i = g_i + _transposed_product(block_u, grad_u, graph.n_items)
        for _ in range(n_layers - 1):
            h_u, h_i = torch.addmm(g_u, graph.norm, h_i), torch.addmm(g_i, graph.norm_t, h_u)
        return h_u.mul_(scale), h_i.mul_(scale), None, None, None, None


def _take(values: Tensor, rows: Tensor | None) -> Tensor:
    return values if rows is None else values.index_select(0, rows)


def _last_layer(ego: Tensor, norm: Tensor, block: Tensor | None, rows: Tensor | None, h: Tensor) -> Tensor:
    """Rows ``rows`` of ``ego + norm @ h``: a product over the rows' block when there is one."""
    if block is not None:
        return torch.addmm(_take(ego, rows), block, h)
    return _take(torch.addmm(ego, norm, h), rows)


def _scatter_rows(values: Tensor, rows: Tensor | None, n_rows: int) -> Tensor:
    if rows is None:
        return values.contiguous()
    out = values.new_zeros(n_rows, values.shape[1])
    out[rows] = values
    return out


def _small_block(csr: Tensor, rows: Tensor | None) -> Tensor | None:
    """Rows ``rows`` of a sparse CSR tensor as a CSR tensor ``(len(rows), n_cols)``, or None if they hold half of
    its entries or more (a product over the whole matrix is then as cheap, and needs no copy)."""
    if rows is None:
        return None
    crow, col, val = csr.crow_indices(), csr.col_indices(), csr.values()
    starts = crow[rows]
    lengths = crow[rows + 1] - starts
    new_crow = torch.zeros(len(rows) + 1, dtype=crow.dtype, device=crow.device)
    torch.cumsum(lengths, 0, out=new_crow[1:])
    total = int(new_crow[-1])
    if 2 * total >= val.numel():
        return None
    pos = torch.repeat_interleave(starts - new_crow[:-1], lengths, output_size=total)
    pos += torch.arange(total, dtype=pos.dtype, device=pos.device)
    return _csr_tensor(new_crow, col[pos], val[pos], (len(rows), int(csr.shape[1])))


def _transposed_product(block: Tensor, dense: Tensor, n_out: int) -> Tensor:
    """``blockᵀ @ dense`` for a sparse CSR ``block`` ``(r, n_out)`` and ``dense`` ``(r, d)``: shape ``(n_out, d)``."""
    crow, col, val = block.crow_indices(), block.col_indices(), block.values()
    row = torch.repeat_interleave(
        torch.arange(block.shape[0], device=col.device), crow.diff().long(), output_size=len(col)
    )
    # A COO product: several times faster on a CPU than index_add_ over the gathered rows.
    transposed = torch.sparse_coo_tensor(
        torch.stack([col.long(), row]), val, (n_out, block.shape[0]), check_invariants=False
    )
    out: Tensor = torch.sparse.mm(transposed, dense)
    return out


def spectral_embeddings(
    graph: BipartiteGraph, k: int, *, n_iter: int = 4, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Top-``k`` singular triplets of ``R~`` by randomised SVD (Halko et al., 2011): ``R~ ≈ U diag(s) Vᵀ``.

    Returns ``U`` ``(n_users, k)``, ``s`` ``(k,)`` descending and ``V`` ``(n_items, k)``. Uses ``2 k`` probe
    vectors and ``n_iter`` power iterations, all as sparse–dense products on the graph's device.
    """
    k = min(k, graph.n_users, graph.n_items)
    q = min(2 * k, graph.n_users, graph.n_items)
    norm, norm_t = graph.norm, graph.norm_t
    dtype = norm.values().dtype
    probe = torch.randn(graph.n_items, q, generator=generator, device="cpu", dtype=dtype).to(norm.device)
    basis = torch.linalg.qr(torch.sparse.mm(norm, probe)).Q
    for _ in range(n_iter):
        basis_t = torch.linalg.qr(torch.sparse.mm(norm_t, basis)).Q
        basis = torch.linalg.qr(torch.sparse.mm(norm, basis_t)).Q
    # R~ ≈ basis (basisᵀ R~) and basisᵀ R~ = (R~ᵀ basis)ᵀ is small: (q, n_items).
    small = torch.sparse.mm(norm_t, basis).T
    u_small, s, vt = torch.linalg.svd(small, full_matrices=False)
    return (basis @ u_small)[:, :k], s[:k], vt[:k].T


class LightGCNModule(torch.nn.Module):
    r"""The LightGCN network of He et al., SIGIR 2020: ego embeddings propagated over the user–item graph.

    .. math::
        E^{(l+1)} = D^{-1/2} A D^{-1/2} E^{(l)}, \qquad
        F = \frac{1}{L + 1} \sum_{l=0}^{L} E^{(l)}, \qquad
        \hat y_{ui} = F_u^\top F_i .

    Parameters
    ----------
    n_users, n_items
        Number of users and items.
    embedding_dim
        Size ``d`` of every embedding (default 64).
    n_layers
        Number of propagation layers ``L`` (default 3).
    """

    def __init__(self, n_users: int, n_items: int, embedding_dim: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if n_users < 1 or n_items < 1:
            raise ValidationError("LightGCNModule", f"needs users and items (got {n_users} x {n_items})")
        if embedding_dim < 1:
            raise ValidationError("embedding_dim", f"must be >= 1 (got {embedding_dim})")
        if n_layers < 0:
            raise ValidationError("n_layers", f"must be >= 0 (got {n_layers})")
        self.n_users = n_users
        self.n_items = n_items
        self.embedding_dim = embedding_dim
        self.n_layers = n_layers
        self.user_embedding = torch.nn.Parameter(torch.empty(n_users, embedding_dim))
        self.item_embedding = torch.nn.Parameter(torch.empty(n_items, embedding_dim))
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.1, generator: torch.Generator | None = None) -> None:
        """Draw the ego embeddings from ``N(0, std²)`` (the initialisation of the LightGCN authors' PyTorch code)."""
        with torch.no_grad():
            for weight in (self.user_embedding, self.item_embedding):
                noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
                weight.copy_(noise.mul_(std))

    def reset_spectral(self, graph: BipartiteGraph, *, generator: torch.Generator | None = None) -> None:
        """Start from the spectral filter of ``graph`` (see the module docstring).

        ``E_u = c U h(S)``, ``E_i = c V h(S)`` with ``h(s) = sqrt(s) / m(s)``, so that the initial scores are the
        rank-``d`` SVD of ``R~`` (times ``c²``); ``c`` scales the rows to a mean norm of 1. On a graph with fewer
        than ``d`` users or items, the dimensions past the rank start from ``N(0, 0.01²)`` (zeros would never move).
        """
        u, s, v = spectral_embeddings(graph, self.embedding_dim, generator=generator)
        layer_mean = sum(s**layer for layer in range(self.n_layers + 1)) / (self.n_layers + 1)
        weight = s.clamp_min(0).sqrt() / layer_mean
        eu, ei = u * weight, v * weight
        scale = 1.0 / torch.cat([eu, ei]).norm(dim=1).mean().clamp_min(1e-12)
        d = eu.shape[1]
        if d < self.embedding_dim:
            self.reset_parameters(std=0.01, generator=generator)
        with torch.no_grad():
            self.user_embedding[:, :d] = eu * scale
            self.item_embedding[:, :d] = ei * scale

    def get_embedding(self, graph: BipartiteGraph) -> tuple[Tensor, Tensor]:
        """Final (layer-mean) embeddings of every user ``(n_users, d)`` and item ``(n_items, d)``."""
        return propagate(graph, self.user_embedding, self.item_embedding, self.n_layers)

    def forward(self, graph: BipartiteGraph, user_idx: Tensor, item_idx: Tensor) -> Tensor:
        """Raw scores ``F_u · F_i``.

        ``user_idx`` has shape ``(b,)``; ``item_idx`` has shape ``(b,)`` (aligned pairs; scores ``(b,)``) or
        ``(b, c)`` (``c`` items per user, e.g. a positive and a negative; scores ``(b, c)``). Only the final
        embeddings of the users and items in the batch are computed (see :func:`propagate_rows`).
        """
        user_rows, user_pos, _ = _distinct(user_idx, self.n_users)
        item_rows, item_pos, _ = _distinct(item_idx, self.n_items)
        users, items = propagate_rows(
            graph, self.user_embedding, self.item_embedding, self.n_layers, user_rows, item_rows
        )
        # index_select: its backward (index_add_) is about twice as fast on a CPU as that of users[user_pos].
        u = users.index_select(0, user_pos)
        i = items.index_select(0, item_pos.reshape(-1)).view(*item_idx.shape, -1)
        return (u * i if item_idx.dim() == 1 else u[:, None, :] * i).sum(dim=-1)

    def recommendation_loss(
        self, pos_scores: Tensor, neg_scores: Tensor, user_idx: Tensor, pos_idx: Tensor, neg_idx: Tensor, reg: float
    ) -> Tensor:
        r"""Mean BPR loss plus L2 on the batch's ego (layer-0) embeddings, as in the paper.

        .. math::
            \frac{1}{B} \sum_b -\ln \sigma(\hat y_{u_b i_b} - \hat y_{u_b j_b})
            + \frac{\lambda}{2B} \sum_b \left(\|e_{u_b}\|^2 + \|e_{i_b}\|^2 + \|e_{j_b}\|^2\right)
        """
        bpr = F.softplus(neg_scores - pos_scores).mean()
        if reg == 0:
            return bpr
        # Σ_b ‖e_{u_b}‖² as Σ over distinct users of count × ‖e_u‖²: gathers each row once.
        users, _, user_counts = _distinct(user_idx, self.n_users)
        items, _, item_counts = _distinct(torch.cat([pos_idx, neg_idx]), self.n_items)
        l2 = (self.user_embedding[users].square().sum(dim=1) * user_counts).sum() + (
            self.item_embedding[items].square().sum(dim=1) * item_counts
        ).sum()
        return bpr + reg * 0.5 * l2 / len(user_idx)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.n_users}, {self.n_items}, embedding_dim={self.embedding_dim}, "
            f"n_layers={self.n_layers})"
        )


def _distinct(idx: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """``torch.unique(idx, return_inverse=True, return_counts=True)`` for indices in ``[0, n)``, without a sort."""
    counts = torch.bincount(idx.reshape(-1), minlength=n)
    rows = counts.nonzero().squeeze(1)
    position = torch.cumsum(counts > 0, 0).sub_(1)
    return rows, position[idx], counts[rows]


@register
class LightGCN(FactorRecommender):
    """LightGCN (He et al., SIGIR 2020) behind the :class:`~adrec.models.base.Recommender` contract.

    Trains :class:`LightGCNModule` with BPR and Adam. Given a ``validator``, ``fit`` holds out
    ``validation_fraction`` of every user's interactions (:func:`~adrec.data.splits.random_split`), trains on the
    rest, scores the model on the held-out part with the validator every ``eval_every`` epochs, stops after
    ``patience`` evaluations without improvement and keeps the best ego embeddings. Without one, it trains on
    everything for ``epochs`` epochs. The final embeddings are then propagated over the graph of **all** the training
    interactions: LightGCN has no per-node weights besides the ego embeddings, and the held-out edges inform the
    users' final embeddings like any edge added after training would.

    Parameters
    ----------
    factors
        Embedding size ``d`` (default 64, the paper's). On a CPU budget, 128 with ``reg`` 1e-3 did much better on
        Gowalla's validation split (Recall@20 0.213 against 0.177 for 64 / 1e-4, and 0.198 for 128 / 1e-4) and
        reached test Recall@20 0.181 in 18 minutes on 2 cores (benchmarks/results/lightgcn-d128-reg1e3.md).
    n_layers
        Propagation layers ``L`` (default 3).
    lr
        Adam learning rate (default 0.05: with large batches and a spectral start, large steps pay off; chosen on
        a validation split of Gowalla).
    reg
        L2 weight ``λ`` on the ego embeddings of each batch (default 1e-4, the paper's).
    batch_size
        BPR triples per step (default 65536). A step propagates over the whole graph, so its cost grows slowly
        with the batch size: larger batches make epochs much cheaper.
    neg_candidates
        Uniform draws per negative item (default 8). The negative is the best-scored of them (dynamic negative
        sampling, Zhang et al., SIGIR 2013), scored with the embeddings of the start of the epoch; 1 gives the
        paper's uniform negatives. Hard negatives keep the BPR gradient alive once most uniform ones are easy:
        on Gowalla's and Last.fm's validation splits, 8 beat 1 by far at equal time.
    epochs
        Most epochs (default 200); one epoch visits every training interaction once.
    patience
        Evaluations without validation improvement before the learning rate is lowered or, after
        ``max_decays`` such drops, training stops (default 3; ``None``: neither).
    lr_decay
        On a plateau, the best embeddings are restored and the learning rate is multiplied by this (default
        0.2).
    max_decays
        Learning-rate drops before a plateau stops training (default 2; 0: plain early stopping).
    validation_fraction
        Share of each user's interactions held out for the validator (default 0.1; 0, or no ``validator``, trains
        on everything for ``epochs`` epochs).
    validator
        ``validator(model, train, valid) -> float``, the score to early-stop on, higher is better (default None:
        no early stopping). The models package measures nothing itself: pass evaluation's, e.g.
        ``RecallValidator(k=20)`` of :mod:`adrec.evaluation.ranking`, the Recall@20 that chose the defaults here.
        It is code, not state: :meth:`save` does not keep it.
    eval_every
        Epochs between validation evaluations (default 1).
    init
        ``"spectral"`` (default: truncated SVD of the normalised interactions) or ``"normal"`` (``N(0, 0.1²)``,
        as in the authors' PyTorch code).
    random_state
        Seed of the initialisation, the validation split and the sampling (default 0).
    device
        ``"cpu"`` (default) or ``"cuda"``.
    num_threads
        CPU threads of torch while fitting (default None: torch's setting, usually one per core). On a busy
        machine 1 can be faster: every sparse product waits for all its threads.
    verbose
        Show a progress bar with the loss and the validation metric (default False).
    """

    name: ClassVar[str] = "lightgcn"

    log_: TrainingLog
    _callback: Callable[[EpochRecord, LightGCN], bool | None] | None = None

    def __init__(
        self,
        *,
        factors: int = 64,
        n_layers: int = 3,
        lr: float = 0.05,
        reg: float = 1e-4,
        batch_size: int = 65536,
        neg_candidates: int = 8,
        epochs: int = 200,
        patience: int | None = 3,
        lr_decay: float = 0.2,
        max_decays: int = 2,
        validation_fraction: float = 0.1,
        validator: Validator | None = None,
        eval_every: int = 1,
        init: str = "spectral",
        random_state: int | None = 0,
        device: str = "cpu",
        num_threads: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.factors = factors
        self.n_layers = n_layers
        self.lr = lr
        self.reg = reg
        self.batch_size = batch_size
        self.neg_candidates = neg_candidates
        self.epochs = epochs
        self.patience = patience
        self.lr_decay = lr_decay
        self.max_decays = max_decays
        self.validation_fraction = validation_fraction
        self.validator = validator
        self.eval_every = eval_every
        self.init = init
        self.random_state = random_state
        self.device = device
        self.num_threads = num_threads
        self.verbose = verbose

    def fit(
        self,
        interactions: Interactions | sp.spmatrix,
        *,
        callback: Callable[[EpochRecord, LightGCN], bool | None] | None = None,
    ) -> Self:
        """Learn from a user × item matrix; return self.

        ``callback(record, model)``, if given, runs after every epoch with the model holding that epoch's
        embeddings, propagated as the fitted model's would be (for example to evaluate on a test split and
        draw a learning curve). Its time is excluded from ``record.seconds``; returning True stops training
        (the best embeddings so far are kept, as on early stopping).
        """
        self._callback = callback
        try:
            return super().fit(interactions)
        finally:
            self._callback = None

    # -- training --------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        checks = {
            "factors": self.factors >= 1,
            "n_layers": self.n_layers >= 0,
            "lr": self.lr > 0,
            "reg": self.reg >= 0,
            "batch_size": self.batch_size >= 1,
            "neg_candidates": self.neg_candidates >= 1,
            "epochs": self.epochs >= 0,
            "patience": self.patience is None or self.patience >= 1,
            "lr_decay": 0.0 < self.lr_decay <= 1.0,
            "max_decays": self.max_decays >= 0,
            "validation_fraction": 0.0 <= self.validation_fraction < 1.0,
            "eval_every": self.eval_every >= 1,
            "num_threads": self.num_threads is None or self.num_threads >= 1,
        }
        for field, ok in checks.items():
            if not ok:
                raise ValidationError(field, f"out of range (got {getattr(self, field)!r})")
        if self.init not in INITS:
            raise ValidationError("init", f"must be one of {', '.join(INITS)} (got {self.init!r})")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValidationError("device", f"must be 'cpu' or 'cuda' (got {self.device!r})")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValidationError("device", f"{self.device!r} asked for, but CUDA is not available")

    def _fit(self, matrix: sp.csr_matrix) -> None:
        self._check_params()
        with torch_threads(self.num_threads):
            self._train(matrix)

    def _train(self, matrix: sp.csr_matrix) -> None:
        rng = np.random.default_rng(self.random_state)
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        data = Interactions(matrix)
        train, valid = data, None
        if self.validator is not None and self.validation_fraction > 0:
            train, valid = random_split(data, self.validation_fraction, random_state=rng)
            if valid.nnz == 0:
                train, valid = data, None
        graph = BipartiteGraph.from_matrix(train, self.device)
        full_graph = BipartiteGraph.from_matrix(data, self.device) if valid is not None else graph
        module = LightGCNModule(self.n_users_, self.n_items_, self.factors, self.n_layers).to(self.device)
        if self.init == "spectral":
            module.reset_spectral(graph, generator=generator)
        else:
            module.reset_parameters(generator=generator)
        optimizer = torch.optim.Adam(module.parameters(), lr=self.lr, fused=True)
        sampler = BPRSampler(train.matrix, self.batch_size, random_state=rng, n_candidates=self.neg_candidates)
        scored: list[Tensor] = []
        calls = 0

        def score_candidates(users: IntArray, candidates: IntArray) -> npt.NDArray[np.floating[Any]]:
            nonlocal calls
            if calls % len(sampler) == 0:  # once per epoch: a full propagation costs as much as a step
                with torch.no_grad():
                    scored[:] = module.get_embedding(graph)
            calls += 1
            u = scored[0].index_select(0, torch.from_numpy(users).to(self.device))
            c = scored[1].index_select(0, torch.from_numpy(candidates.ravel()).to(self.device))
            return (u[:, None, :] * c.view(*candidates.shape, -1)).sum(dim=-1).cpu().numpy()

        sampler.scorer = score_candidates

        def step(users: IntArray, pos: IntArray, neg: IntArray) -> float:
            u = torch.from_numpy(users).to(self.device)
            items = torch.from_numpy(np.stack([pos, neg], axis=1)).to(self.device)
            scores = module(graph, u, items)
            loss = module.recommendation_loss(scores[:, 0], scores[:, 1], u, items[:, 0], items[:, 1], self.reg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            return float(loss.detach())

        best: list[Tensor] = []
        decays = 0

        def snapshot() -> None:
            best[:] = [p.detach().clone() for p in (module.user_embedding, module.item_embedding)]

        def restore_best() -> None:
            if best:
                with torch.no_grad():
                    module.user_embedding.copy_(best[0])
                    module.item_embedding.copy_(best[1])

        def decay() -> bool:
            # Back to the best epoch, with a smaller step and fresh Adam moments (ReduceLROnPlateau with rollback).
            nonlocal decays
            if decays >= self.max_decays:
                return False
            decays += 1
            restore_best()
            optimizer.state.clear()
            for group in optimizer.param_groups:
                group["lr"] *= self.lr_decay
            return True

        def validate() -> float:
            assert valid is not None and self.validator is not None  # validate is passed only with both
            self._set_factors(module, graph)
            return float(self.validator(self, train, valid))

        def on_epoch(record: EpochRecord) -> bool | None:
            assert self._callback is not None
            self._set_factors(module, full_graph)
            return self._callback(record, self)

        self.log_ = train_bpr(
            step,
            sampler,
            epochs=self.epochs,
            validate=validate if valid is not None else None,
            patience=self.patience,
            on_best=snapshot,
            on_plateau=decay,
            eval_every=self.eval_every,
            metric_name=str(getattr(self.validator, "name", "validation")),
            verbose=self.verbose,
            callback=on_epoch if self._callback is not None else None,
        )
        restore_best()
        self._set_factors(module, full_graph)

    def _set_factors(self, module: LightGCNModule, graph: BipartiteGraph) -> None:
        with torch.no_grad():
            users, items = module.get_embedding(graph)
        self.user_factors_ = users.cpu().numpy()
        self.item_factors_ = items.cpu().numpy()

    # -- scoring ---------------------------------------------------------------------------------------
    def _score_users(self, users: IntArray) -> npt.NDArray[np.floating[Any]]:
        return self.user_factors_[users] @ self.item_factors_.T

    def _score_pairs(self, users: IntArray, items: IntArray) -> npt.NDArray[np.floating[Any]]:
        out: FloatArray = np.einsum("bd,bd->b", self.user_factors_[users], self.item_factors_[items])
        return out

    def _extra_state(self) -> dict[str, Any]:
        log = getattr(self, "log_", None)
        return {"log": log.as_dict()} if log is not None else {}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        if "log" in state:
            self.log_ = TrainingLog.from_dict(state["log"])
