"""CFGAN behind the :class:`~adrec.models.base.Recommender` contract."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch

from adrec.data.interactions import Interactions
from adrec.exceptions import ModeCollapseError, ValidationError
from adrec.models.base import IntArray, check_device, register, torch_threads
from adrec.models.gan.discriminator import Discriminator
from adrec.models.gan.generator import Generator
from adrec.models.gan.trainer import GANEpoch, GANLog, train_cfgan
from adrec.models.graph_filters import ItemBasedRecommender

__all__ = ["CFGAN", "ModeCollapseError", "ModeCollapseWarning"]

ON_COLLAPSE = ("warn", "raise", "ignore")


class ModeCollapseWarning(UserWarning):
    """A CFGAN generator ended training with outputs that barely depend on the user."""


@register
class CFGAN(ItemBasedRecommender):
    """Collaborative filtering GAN, the ZP variant (partial masking + zero reconstruction).

    D.-K. Chae, J.-S. Kang, S.-W. Kim, J.-T. Lee, *CFGAN: A Generic Collaborative Filtering Framework based on
    Generative Adversarial Networks*, CIKM 2018. Replications found it often no better than tuned simple
    baselines: M. Ferrari Dacrema, F. Parroni, P. Cremonesi, D. Jannach, *Critically Examining the Claimed Value
    of Convolutions over User-Item Embedding Maps for Recommender Systems*, CIKM 2020 / TOIS 2021
    (arXiv:2201.01815 examines CFGAN).

    A :class:`~adrec.models.gan.generator.Generator` maps a user's purchase vector ``c_u`` (the condition) to a
    real-valued vector ``r̂_u`` over all items; a :class:`~adrec.models.gan.discriminator.Discriminator` learns to
    tell ``r_u`` from ``r̂_u ⊙ (c_u + k_u)``; :func:`~adrec.models.gan.trainer.train_cfgan` alternates them. The
    score of item ``i`` for user ``u`` is the generator's logit ``G(c_u)_i`` (monotone in ``r̂_ui``; logits keep
    near-saturated items apart). Scoring runs in float64 so that a user's scores do not depend on the batch.

    After training the generator is checked for mode collapse (see :mod:`adrec.models.gan.trainer`); ``log_``
    holds every epoch's losses, discriminator accuracy and spread ratio.

    Parameters
    ----------
    hidden_units, hidden_layers
        Generator MLP: hidden ReLU layers and their width (defaults 400 and 1).
    discriminator_units, discriminator_layers
        Discriminator MLP (defaults 125 and 1).
    zr_ratio, pm_ratio
        Shares of each user's unpurchased items sampled for zero reconstruction and partial masking (default 0.1
        each, the best of 0.1 / 0.3 / 0.5 on MovieLens-100k validation; the paper tunes both in [0, 0.9]).
    zr_weight
        Weight ``α`` of the zero-reconstruction loss (default 0.1, the paper's).
    epochs
        Passes over the users (default 100; validation NDCG@20 on MovieLens-100k was still rising at 95).
    batch_size
        Users per step (default 64).
    d_steps, g_steps
        Discriminator and generator steps per batch (default 1 each).
    lr
        Adam learning rate of both networks (default 1e-3).
    weight_decay
        Adam L2 weight decay of both networks (default 0).
    generator_loss
        ``"non_saturating"`` (default: minimise ``-log D``) or ``"minimax"`` (the paper's ``log(1 - D)``). On
        MovieLens-100k (``benchmarks/results/gan.json``) the minimax generator lost to the discriminator (accuracy
        ~0.997) and its sigmoid outputs were squashed towards 0 (spread ratio ~0.05, flagged collapsed in 65 of
        100 epochs), although its rankings by logit stayed personalised; the best validation run overall was
        non-saturating with ratios 0.1.
    collapse_threshold
        Spread ratio below which the generator counts as collapsed (default 0.05).
    on_collapse
        ``"warn"`` (default: a :class:`ModeCollapseWarning`), ``"raise"`` or ``"ignore"`` when the generator is
        collapsed at the end of training. Every epoch's flag is in ``log_`` whatever this says.
    random_state
        Seed of the initialisation, the shuffling and the masks (default 0).
    device
        ``"cpu"`` (default) or ``"cuda"``.
    num_threads
        Torch CPU threads while fitting and scoring (default None: torch's setting).
    verbose
        Show a progress bar with both losses (default False).
    """

    name: ClassVar[str] = "cfgan"
    _learned: ClassVar[tuple[str, ...]] = (*ItemBasedRecommender._learned, "generator_weights_")

    generator_weights_: npt.NDArray[np.float32]
    log_: GANLog
    _scorer: Generator | None = None
    _callback: Callable[[GANEpoch, CFGAN], bool | None] | None = None

    def __init__(
        self,
        *,
        hidden_units: int = 400,
        hidden_layers: int = 1,
        discriminator_units: int = 125,
        discriminator_layers: int = 1,
        zr_ratio: float = 0.1,
        pm_ratio: float = 0.1,
        zr_weight: float = 0.1,
        epochs: int = 100,
        batch_size: int = 64,
        d_steps: int = 1,
        g_steps: int = 1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        generator_loss: str = "non_saturating",
        collapse_threshold: float = 0.05,
        on_collapse: str = "warn",
        random_state: int | None = 0,
        device: str = "cpu",
        num_threads: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.hidden_units = hidden_units
        self.hidden_layers = hidden_layers
        self.discriminator_units = discriminator_units
        self.discriminator_layers = discriminator_layers
        self.zr_ratio = zr_ratio
        self.pm_ratio = pm_ratio
        self.zr_weight = zr_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.d_steps = d_steps
        self.g_steps = g_steps
        self.lr = lr
        self.weight_decay = weight_decay
        self.generator_loss = generator_loss
        self.collapse_threshold = collapse_threshold
        self.on_collapse = on_collapse
        self.random_state = random_state
        self.device = device
        self.num_threads = num_threads
        self.verbose = verbose

    def fit(
        self,
        interactions: Interactions | sp.spmatrix,
        *,
        callback: Callable[[GANEpoch, CFGAN], bool | None] | None = None,
    ) -> Self:
        """Train on ``interactions``; ``callback(record, self)`` runs after every epoch with the model scoreable
        by the current generator (for learning curves and tuning the number of epochs); True stops training."""
        self._callback = callback
        try:
            return super().fit(interactions)
        finally:
            self._callback = None

    def _check_params(self) -> None:
        if self.on_collapse not in ON_COLLAPSE:
            raise ValidationError("on_collapse", f"must be one of {ON_COLLAPSE} (got {self.on_collapse!r})")
        check_device(self.device)

    def _fit_items(self, matrix: sp.csr_matrix) -> None:
        self._check_params()
        with torch_threads(self.num_threads):
            self._train_networks(matrix)
        if self.log_.collapsed and self.on_collapse != "ignore":
            last = self.log_.records[-1]
            message = (
                f"CFGAN's generator is collapsed after epoch {last.epoch}: the spread of its outputs across users is "
                f"{last.spread_ratio:.3f} of the data's (threshold {self.collapse_threshold}; first flagged at epoch "
                f"{self.log_.first_collapse}). Its lists barely depend on the user; try a lower lr, fewer epochs, "
                "a smaller zr_weight or more d_steps"
            )
            if self.on_collapse == "raise":
                raise ModeCollapseError("cfgan", message)
            warnings.warn(message, ModeCollapseWarning, stacklevel=4)

    def _train_networks(self, matrix: sp.csr_matrix) -> None:
        binary = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
        binary.data[:] = 1.0
        rng = np.random.default_rng(self.random_state)
        init = torch.Generator().manual_seed(int(rng.integers(2**62)))
        generator = Generator(self.n_items_, self.hidden_units, self.hidden_layers)
        discriminator = Discriminator(self.n_items_, self.discriminator_units, self.discriminator_layers)
        generator.reset_parameters(init)
        discriminator.reset_parameters(init)
        generator.to(self.device)
        discriminator.to(self.device)

        def on_epoch(record: GANEpoch) -> bool | None:
            assert self._callback is not None
            self._set_generator(generator)
            return self._callback(record, self)

        self.log_ = train_cfgan(
            generator,
            discriminator,
            binary,
            epochs=self.epochs,
            batch_size=self.batch_size,
            zr_ratio=self.zr_ratio,
            pm_ratio=self.pm_ratio,
            zr_weight=self.zr_weight,
            d_steps=self.d_steps,
            g_steps=self.g_steps,
            lr=self.lr,
            weight_decay=self.weight_decay,
            generator_loss=self.generator_loss,
            collapse_threshold=self.collapse_threshold,
            random_state=rng,
            verbose=self.verbose,
            callback=on_epoch if self._callback is not None else None,
        )
        self._set_generator(generator)

    def _set_generator(self, generator: Generator) -> None:
        self.generator_weights_ = (
            torch.nn.utils.parameters_to_vector(generator.parameters()).detach().cpu().numpy().astype(np.float32)
        )
        self._scorer = None

    def _set_learned(self, name: str, value: npt.NDArray[Any]) -> None:
        super()._set_learned(name, value)
        self._scorer = None

    def generator(self) -> Generator:
        """The trained generator, in float64 on the CPU, in eval mode (rebuilt from ``generator_weights_``)."""
        self._check_fitted()
        if self._scorer is None:
            net = Generator(self.n_items_, self.hidden_units, self.hidden_layers).double().eval()
            weights = torch.from_numpy(self.generator_weights_.astype(np.float64))
            torch.nn.utils.vector_to_parameters(weights, net.parameters())
            net.requires_grad_(False)
            self._scorer = net
        return self._scorer

    def generate(self, users: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """The generated purchase vectors ``r̂_u = σ(G(c_u))`` of ``users``, shape ``(len(users), n_items)``."""
        idx = self._check_users(np.atleast_1d(np.asarray(users, dtype=np.int64)))
        return torch.sigmoid(torch.from_numpy(self._score_users(idx).astype(np.float64))).numpy().astype(np.float32)

    def _score_users(self, users: IntArray) -> npt.NDArray[np.floating[Any]]:
        with torch_threads(self.num_threads):
            return self._generator_logits(users)

    def _generator_logits(self, users: IntArray) -> npt.NDArray[np.float32]:
        rows = self._rows(users)
        condition = np.zeros((len(users), self.n_items_), dtype=np.float64)
        condition[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = 1.0
        with torch.no_grad():
            logits = self.generator()(torch.from_numpy(condition))
        scores: npt.NDArray[np.float32] = logits.numpy().astype(np.float32)
        return scores

    def _extra_state(self) -> dict[str, Any]:
        log = getattr(self, "log_", None)
        return {"log": log.as_dict()} if log is not None else {}
