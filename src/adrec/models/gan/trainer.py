"""The CFGAN training loop: alternate discriminator and generator steps, log both losses, watch for mode collapse.

Each epoch visits every user with at least one interaction once, in shuffled batches. For each batch of
purchase vectors ``r`` (which are also the conditions ``c``), the discriminator takes ``d_steps`` steps and then
the generator ``g_steps`` steps (Chae et al., CIKM 2018, Algorithm 1, with the ZP variant's two tricks):

- **partial masking (PM)**: the discriminator sees :math:`\\hat r_u \\odot (c_u + k_u)`, the generated vector on
  the user's purchases *and* on a random ``pm_ratio`` share :math:`k_u` of the items they did not purchase, so the
  generator is penalised for putting mass there instead of being judged on the purchases alone (which it can copy
  from the condition);
- **zero reconstruction (ZR)**: the generator's loss adds ``zr_weight`` times
  :math:`\\sum_{j \\in N_u} \\hat r_{uj}^2` over a random ``zr_ratio`` share :math:`N_u` of the unpurchased items.

Losses: the discriminator minimises the binary cross-entropy of real (label 1) vs generated (label 0); the generator
minimises the paper's :math:`\\log(1 - D(\\hat r_u \\odot (c_u + k_u) \\mid c_u))` (or, with
``generator_loss="non_saturating"``, :math:`-\\log D(\\cdot)`) plus the ZR term.

Mode collapse
-------------
A collapsed generator gives (nearly) the same vector to every user. After every epoch :class:`CollapseMonitor`
generates the vectors of a fixed sample of users and compares their spread across users,
:math:`\\sum_i \\mathrm{Var}_u \\hat r_{ui}`, with the data's, :math:`\\sum_i \\mathrm{Var}_u r_{ui}`: the epoch is
flagged when the ratio falls below ``collapse_threshold``. It also records the mean pairwise Jaccard overlap of the
users' top-``k`` lists of unpurchased items (1.0: everyone gets the same list), a diagnostic that is not flagged
(popularity-heavy data sets have legitimately similar lists).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from adrec.exceptions import ValidationError
from adrec.models.gan.discriminator import Discriminator
from adrec.models.gan.generator import Generator
from adrec.progress import Bars

__all__ = ["CollapseMonitor", "GANEpoch", "GANLog", "train_cfgan"]

GENERATOR_LOSSES = ("minimax", "non_saturating")
_DENSE_CELLS = 1 << 24  # densify user × item matrices up to 64 MiB of float32


@dataclass(frozen=True)
class GANEpoch:
    """What one epoch of :func:`train_cfgan` did."""

    epoch: int
    generator_loss: float
    """Mean over batches of the generator's loss (adversarial term plus ``zr_weight`` × ZR)."""
    discriminator_loss: float
    """Mean over batches of the discriminator's binary cross-entropy."""
    discriminator_accuracy: float
    """Share of real and generated vectors the discriminator classified right, before each of its steps."""
    spread_ratio: float
    """Spread of the generated vectors across the monitored users over the data's (see the module docstring)."""
    top_overlap: float
    """Mean pairwise Jaccard overlap of the monitored users' top-``k`` unpurchased items."""
    collapsed: bool
    """``spread_ratio < collapse_threshold``."""
    seconds: float
    """Training time since the start (callbacks excluded)."""


@dataclass
class GANLog:
    """Per-epoch records of a CFGAN training run."""

    collapse_threshold: float
    records: list[GANEpoch] = field(default_factory=list)
    stopped_by_callback: bool = False

    @property
    def collapsed(self) -> bool:
        """Whether the last epoch was flagged as collapsed."""
        return bool(self.records) and self.records[-1].collapsed

    @property
    def first_collapse(self) -> int | None:
        """The first epoch flagged as collapsed, if any."""
        return next((r.epoch for r in self.records if r.collapsed), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "collapse_threshold": self.collapse_threshold,
            "stopped_by_callback": self.stopped_by_callback,
            "first_collapse": self.first_collapse,
            "records": [asdict(r) for r in self.records],
        }


class CollapseMonitor:
    """Measures how much a generator's output depends on the user, on a fixed sample of users.

    Parameters
    ----------
    matrix
        Binary user × item CSR matrix (the purchase vectors, which are also the conditions).
    n_users
        Users in the sample (default 256; all users with interactions if fewer).
    k
        List length of the overlap diagnostic (default 20, capped so that every user has ``k`` unpurchased items).
    random_state
        Seed or generator of the sample.
    device
        Where the generator lives.
    """

    def __init__(
        self,
        matrix: sp.csr_matrix,
        n_users: int = 256,
        k: int = 20,
        random_state: int | np.random.Generator | None = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        rng = np.random.default_rng(random_state)
        active = np.flatnonzero(np.diff(matrix.indptr) > 0)
        users = np.sort(rng.choice(active, size=min(n_users, len(active)), replace=False))
        rows = matrix[users].toarray().astype(np.float32)
        self.conditions = torch.from_numpy(rows).to(device)
        self.data_spread = float(rows.var(axis=0).sum())
        unseen = matrix.shape[1] - int(rows.sum(axis=1).max(initial=0))
        self.k = max(1, min(k, unseen))

    @torch.no_grad()
    def measure(self, generator: Generator) -> tuple[float, float]:
        """``(spread_ratio, top_overlap)`` of the generator's current outputs (see the module docstring)."""
        was_training = generator.training
        generator.eval()
        generated = generator.generate(self.conditions)
        generator.train(was_training)
        spread = float(generated.var(dim=0, unbiased=False).sum())
        ratio = spread / self.data_spread if self.data_spread > 0 else float("nan")
        m = len(self.conditions)
        if m < 2:
            return ratio, float("nan")
        masked = generated.masked_fill(self.conditions > 0, -1.0)
        top = torch.topk(masked, self.k, dim=1).indices
        member = torch.zeros_like(generated).scatter_(1, top, 1.0)
        inter = member @ member.T
        jaccard = inter / (2 * self.k - inter)
        overlap = float((jaccard.sum() - jaccard.diagonal().sum()) / (m * (m - 1)))
        return ratio, overlap


def _check(name: str, value: float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValidationError(name, f"must be {bound} (got {value})")


def train_cfgan(
    generator: Generator,
    discriminator: Discriminator,
    matrix: sp.csr_matrix,
    *,
    epochs: int,
    batch_size: int = 64,
    zr_ratio: float = 0.1,
    pm_ratio: float = 0.1,
    zr_weight: float = 0.1,
    d_steps: int = 1,
    g_steps: int = 1,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    generator_loss: str = "minimax",
    collapse_threshold: float = 0.05,
    random_state: int | np.random.Generator | None = 0,
    verbose: bool = False,
    callback: Callable[[GANEpoch], bool | None] | None = None,
) -> GANLog:
    """Train ``generator`` and ``discriminator`` adversarially on the purchase vectors of ``matrix``.

    Parameters
    ----------
    generator, discriminator
        The two networks, initialised, on the same device.
    matrix
        Binary user × item CSR matrix ``(n_users, n_items)``; each row is a user's purchase and condition vector.
    epochs
        Passes over the users.
    batch_size
        Users per step.
    zr_ratio, pm_ratio
        Shares of each user's unpurchased items drawn (afresh at every step) for zero reconstruction and partial
        masking.
    zr_weight
        Weight ``α`` of the zero-reconstruction term.
    d_steps, g_steps
        Discriminator and generator steps per batch.
    lr, weight_decay
        Adam's learning rate and L2 weight decay, for both networks.
    generator_loss
        ``"minimax"``: the paper's :math:`\\log(1 - D(\\cdot))`, whose gradient vanishes once the discriminator
        wins; ``"non_saturating"``: :math:`-\\log D(\\cdot)` (Goodfellow et al., 2014), same fixed point.
    collapse_threshold
        Flag an epoch as collapsed when the spread ratio falls below this.
    random_state
        Seed or generator of the shuffling, the masks and the monitored users.
    verbose
        Show a progress bar with both losses, the discriminator's accuracy and the spread ratio.
    callback
        Called with each epoch's record (its time is not counted); training stops if it returns True.
    """
    _check("epochs", epochs, 0)
    _check("batch_size", batch_size, 1)
    _check("zr_ratio", zr_ratio, 0.0, 1.0)
    _check("pm_ratio", pm_ratio, 0.0, 1.0)
    _check("zr_weight", zr_weight, 0.0)
    _check("d_steps", d_steps, 0)
    _check("g_steps", g_steps, 0)
    _check("weight_decay", weight_decay, 0.0)
    if lr <= 0:
        raise ValidationError("lr", f"must be > 0 (got {lr})")
    if generator_loss not in GENERATOR_LOSSES:
        raise ValidationError("generator_loss", f"must be one of {GENERATOR_LOSSES} (got {generator_loss!r})")
    minimax = generator_loss == "minimax"
    rng = np.random.default_rng(random_state)
    device = next(generator.parameters()).device
    torch_rng = torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    active = np.flatnonzero(np.diff(matrix.indptr) > 0)
    # Small data sets are densified once (a batch is then one row gather); large ones batch by batch.
    dense = torch.from_numpy(matrix.toarray()).to(device) if matrix.shape[0] * matrix.shape[1] <= _DENSE_CELLS else None

    def rows(users: npt.NDArray[np.int64]) -> Tensor:
        if dense is not None:
            return dense[torch.from_numpy(users).to(device)]
        return torch.from_numpy(matrix[users].toarray()).to(device)

    monitor = CollapseMonitor(matrix, random_state=rng, device=device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, weight_decay=weight_decay)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, weight_decay=weight_decay)
    ones, zeros = torch.ones(batch_size, device=device), torch.zeros(batch_size, device=device)
    log = GANLog(collapse_threshold)

    def masks(real: Tensor, ratio: float) -> Tensor:
        """A random ``ratio`` share of each row's zero entries, as a 0/1 tensor of the shape of ``real``."""
        draw = torch.rand(real.shape, generator=torch_rng, device=device)
        return ((draw < ratio) & (real == 0)).to(real.dtype)

    started, excluded = time.perf_counter(), 0.0
    with Bars(enabled=verbose) as bars:
        advance = bars.task("cfgan", total=epochs)
        show = bars.update("")
        for epoch in range(1, epochs + 1):
            g_sum, d_sum, acc_sum = (torch.zeros((), device=device) for _ in range(3))
            g_count = d_count = 0
            order = rng.permutation(active)
            for start in range(0, len(order), batch_size):
                real = rows(order[start : start + batch_size])
                target = torch.cat([ones[: len(real)], zeros[: len(real)]])  # of the discriminator's [real; fake]
                for _ in range(d_steps):
                    with torch.no_grad():
                        fake = generator.generate(real) * (real + masks(real, pm_ratio))
                    # One pass over [real; fake]: half the small-op overhead of two calls.
                    logits = discriminator(torch.cat([real, fake]), real.repeat(2, 1))
                    d_loss = F.binary_cross_entropy_with_logits(logits, target)
                    opt_d.zero_grad(set_to_none=True)
                    d_loss.backward()  # type: ignore[no-untyped-call]
                    opt_d.step()
                    d_sum += d_loss.detach()
                    acc_sum += ((logits > 0) == (target > 0)).float().mean()
                    d_count += 1
                discriminator.requires_grad_(False)
                for _ in range(g_steps):
                    generated = generator.generate(real)
                    fake = generated * (real + masks(real, pm_ratio))
                    logit = discriminator(fake, real)
                    # log(1 - σ(x)) = -softplus(x);  -log σ(x) = softplus(-x)
                    adversarial = -F.softplus(logit).mean() if minimax else F.softplus(-logit).mean()
                    zero_rec = (generated * masks(real, zr_ratio)).square().sum(dim=1).mean()
                    g_loss = adversarial + zr_weight * zero_rec
                    opt_g.zero_grad(set_to_none=True)
                    g_loss.backward()  # type: ignore[no-untyped-call]
                    opt_g.step()
                    g_sum += g_loss.detach()
                    g_count += 1
                discriminator.requires_grad_(True)
            ratio, overlap = monitor.measure(generator)
            record = GANEpoch(
                epoch=epoch,
                generator_loss=float(g_sum) / max(g_count, 1),
                discriminator_loss=float(d_sum) / max(d_count, 1),
                discriminator_accuracy=float(acc_sum) / max(d_count, 1),
                spread_ratio=ratio,
                top_overlap=overlap,
                collapsed=bool(ratio < collapse_threshold),
                seconds=time.perf_counter() - started - excluded,
            )
            log.records.append(record)
            advance(1)
            show(
                f"G {record.generator_loss:.4f}  D {record.discriminator_loss:.4f}  "
                f"D acc {record.discriminator_accuracy:.3f}  spread {ratio:.3f}"
                + ("  COLLAPSED" if record.collapsed else "")
            )
            if callback is not None:
                t0 = time.perf_counter()
                halt = callback(record)
                excluded += time.perf_counter() - t0
                if halt:
                    log.stopped_by_callback = True
                    break
    return log
