"""Click models behind one contract, registered by name: logistic regression, a factorization machine, DCN-V2,
and LightGBM as the peer on the same features.

Every model learns from :class:`~adrec.models.ctr.features.Examples` and answers click probabilities::

    model = get_click_model("dcnv2", epochs=2).fit(train, valid, spec=spec)
    p = model.predict(test)                          # at each example's own position
    p1 = model.predict(candidates, position=1)       # every candidate in the top slot (serving)

Conventions (as :class:`~adrec.models.base.Recommender`): ``__init__`` stores keyword hyper-parameters; ``fit``
validates, learns and returns ``self``; learned state ends in ``_``; ``save``/``load`` write ``params.json`` and
``arrays.npz`` (LightGBM adds its own text model file), never a pickle.

What every model shares:

- **Position** is a shallow term of its own, ``logit = f(user, ad, context) + b[position]`` (PAL, Guo et al.,
  RecSys 2019): the simulator's truth has exactly this form, and serving scores every candidate at one reference
  position.
- **Unseen values**: a bucket seen fewer than ``min_count`` times in training is mapped to its field's
  *unknown* bucket, in training and at prediction; and a share ``id_dropout`` of the training examples has its
  user, ad and campaign ids replaced by the unknown bucket, so a new ad or user gets a weight learned on known
  ones with their other features instead of an untrained embedding.
- **Calibration**: when ``fit`` is given validation examples, a Platt scaling of the logit is fitted on them
  (:class:`~adrec.models.calibration.Calibrator`) and :meth:`ClickModel.predict` applies it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from adrec.exceptions import NotFittedError, NotFoundError, ValidationError
from adrec.models.base import check_device, torch_threads
from adrec.models.calibration import Calibrator
from adrec.models.ctr.features import DENSE, FIELDS, Examples, FeatureSpec, HashedSpec
from adrec.models.ctr.tabular import TabularSpec
from adrec.progress import Bars

__all__ = [
    "DCNV2",
    "FM",
    "ClickModel",
    "LightGBMClickModel",
    "LogisticRegression",
    "get_click_model",
    "load_click_model",
    "register_click_model",
    "registered_click_models",
]

MAX_POSITION = 32
"""Positions beyond this share its position weight."""

_FORMAT = "adrec.models.ctr"

_REGISTRY: dict[str, type[ClickModel]] = {}
M = TypeVar("M", bound="type[ClickModel]")


def register_click_model(cls: M) -> M:
    """Class decorator: make a click model available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def registered_click_models() -> list[str]:
    return sorted(_REGISTRY)


def get_click_model(name: str, **params: Any) -> ClickModel:
    """A new, unfitted click model by name with the given hyper-parameters."""
    if name not in _REGISTRY:
        raise NotFoundError(f"unknown click model {name!r}; registered: {', '.join(registered_click_models())}")
    cls = _REGISTRY[name]
    unknown = set(params) - set(cls.defaults())
    if unknown:
        raise ValidationError("params", f"{name} has no hyper-parameter {sorted(unknown)}; it has {cls.defaults()}")
    return cls(**params)


def load_click_model(path: str | Path) -> ClickModel:
    """A click model saved by :meth:`ClickModel.save`."""
    folder = Path(path)
    try:
        meta = json.loads((folder / "params.json").read_text())
    except FileNotFoundError:
        raise NotFoundError(f"{folder} holds no click model (params.json is missing)") from None
    if meta.get("format") != _FORMAT:
        raise ValidationError(str(folder / "params.json"), f"is not a click model (format {meta.get('format')!r})")
    kind = meta.get("spec", FeatureSpec.kind)  # models saved before other specs existed are adrec's
    fields = tuple((str(name), int(n)) for name, n in meta.get("fields", []))
    dense = tuple(str(d) for d in meta.get("dense", []))
    spec: HashedSpec
    if kind == FeatureSpec.kind:
        saved, current = [*fields, *dense], [*FIELDS, *DENSE]
        if saved != current:
            differ = sorted({str(f) for f in saved} ^ {str(f) for f in current})
            raise ValidationError(
                str(folder / "params.json"),
                f"was saved with other features than this version encodes (differing: {', '.join(differ)}); "
                "retrain it with `adrec train --task ctr`",
            )
        spec = FeatureSpec(meta["hash_bits"])
    elif kind == TabularSpec.kind:
        spec = TabularSpec(fields, dense, meta["hash_bits"])
    else:
        raise ValidationError(str(folder / "params.json"), f"has an unknown feature spec {kind!r}")
    model = get_click_model(meta["name"], **meta["params"])
    model.spec_ = spec
    model.calibrator_ = Calibrator(**meta["calibration"]) if meta["calibration"] is not None else None
    with np.load(folder / "arrays.npz") as arrays:
        state = {k: arrays[k] for k in arrays.files}
    model.known_ = np.unpackbits(state.pop("known"))[: model.spec_.n_buckets].astype(bool)
    model._restore(folder, state)
    return model


class ClickModel(ABC):
    """Base of every click model: hashing-aware fitting, calibration, position handling, saving."""

    name: ClassVar[str] = ""

    min_count: int
    id_dropout: float
    seed: int

    spec_: HashedSpec
    known_: npt.NDArray[np.bool_]
    calibrator_: Calibrator | None

    def __init__(self, **params: Any) -> None:
        defaults = self.defaults()
        for key, value in {**defaults, **params}.items():
            setattr(self, key, value)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The hyper-parameters and their default values."""
        return {"min_count": 5, "id_dropout": 0.05, "seed": 0}

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.defaults()}

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != self.defaults()[k]}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # -- the contract ----------------------------------------------------------------------------------------
    def fit(self, train: Examples, valid: Examples | None = None, *, spec: HashedSpec, progress: bool = False) -> Self:
        """Learn from labelled ``train`` examples encoded by ``spec``; ``valid`` (labelled) stops the iterative
        models early and calibrates the result. Returns self."""
        y = train.labels
        if len(train) == 0 or y.sum() == 0 or y.sum() == len(y):
            raise ValidationError("train", f"needs clicked and unclicked examples (got {int(y.sum())} of {len(y)})")
        if train.ids.shape[1] != len(spec.slot_fields) or train.dense.shape[1] != len(spec.dense_names):
            raise ValidationError(
                "train",
                f"has {train.ids.shape[1]} slots and {train.dense.shape[1]} dense features; the spec has "
                f"{len(spec.slot_fields)} and {len(spec.dense_names)}",
            )
        if valid is not None:
            valid.labels  # noqa: B018 -- the error names what is missing before any training is done
        self.spec_ = spec
        counts = np.bincount(train.ids.ravel(), minlength=spec.n_buckets)
        self.known_ = counts >= self.min_count
        self.known_[0] = True
        self.calibrator_ = None
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValidationError("id_dropout", f"must be in [0, 1) (got {self.id_dropout!r})")
        train, valid = self._drop_ids(self._remap(train)), None if valid is None else self._remap(valid)
        self._fit(train, valid, progress)
        if valid is not None and len(valid):
            self.calibrator_ = Calibrator.fit(self._logit(valid, None), valid.labels)
        return self

    def predict(self, examples: Examples, *, position: int | None = None) -> npt.NDArray[np.float64]:
        """Click probabilities ``(n,)``, calibrated when the model was: at each example's position, or at
        ``position`` for all of them."""
        z = self.logit(examples, position=position)
        if self.calibrator_ is not None:
            return self.calibrator_(z)
        out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-z))
        return out

    def logit(self, examples: Examples, *, position: int | None = None) -> npt.NDArray[np.float64]:
        """The model's uncalibrated logit ``(n,)``."""
        if not hasattr(self, "spec_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit first")
        return self._logit(self._remap(examples), position)

    def save(self, path: str | Path) -> Path:
        """Write ``params.json`` and ``arrays.npz`` (and what the model adds) into the folder ``path``."""
        if not hasattr(self, "spec_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit first")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": _FORMAT,
            "name": self.name,
            "params": self.get_params(),
            **self.spec_.describe(),
            "calibration": None if self.calibrator_ is None else dataclasses.asdict(self.calibrator_),
        }
        arrays = {"known": np.packbits(self.known_), **self._state(folder)}
        np.savez(folder / "arrays.npz", **arrays)  # type: ignore[arg-type]
        (folder / "params.json").write_text(json.dumps(meta, indent=2))
        return folder

    # -- for subclasses ----------------------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, train: Examples, valid: Examples | None, progress: bool) -> None: ...

    @abstractmethod
    def _logit(self, examples: Examples, position: int | None) -> npt.NDArray[np.float64]:
        """Logits of examples already remapped (:meth:`_remap`)."""

    @abstractmethod
    def _state(self, folder: Path) -> dict[str, npt.NDArray[Any]]:
        """Learned arrays to save (the model may also write files of its own into ``folder``)."""

    @abstractmethod
    def _restore(self, folder: Path, state: dict[str, npt.NDArray[Any]]) -> None: ...

    def _drop_ids(self, train: Examples) -> Examples:
        """Training examples with each id of :data:`DROPPED_IDS` replaced by its field's unknown bucket with
        probability ``id_dropout``: the unknown bucket then learns what an id nobody has seen is worth given
        everything else (a new ad of a known category, brand and advertiser), instead of what the few rare ids were
        worth, or nothing where none was rare."""
        if self.id_dropout == 0 or len(train) == 0:
            return train
        rng = np.random.default_rng(self.seed)
        ids = train.ids.copy()
        for field in DROPPED_IDS:
            if field not in self.spec_.slot_fields:  # an outside log's spec names no such id
                continue
            col = self.spec_.slot_fields.index(field)
            dropped = rng.random(len(ids)) < self.id_dropout
            ids[dropped, col] = self.spec_.unknown_bucket(field)
        return dataclasses.replace(train, ids=ids)

    def _remap(self, examples: Examples) -> Examples:
        """Buckets unseen (or rare) in training → their field's unknown bucket."""
        ids = examples.ids
        known = self.known_[ids]
        if known.all():
            return examples
        unknown = np.array([self.spec_.unknown_bucket(f) for f in self.spec_.slot_fields], dtype=np.int64)
        return dataclasses.replace(examples, ids=np.where(known, ids, unknown[None, :]))


DROPPED_IDS = ("user", "ad", "campaign")
"""The id fields a new user or a new ad brings unseen (see ``id_dropout``)."""


# -- the torch models -------------------------------------------------------------------------------------------
class ClickNet(nn.Module):
    """``logit = first order + second order (FM) or cross and deep network (DCN-V2) + position term``.

    ``kind`` is ``lr``, ``fm`` or ``dcnv2``; the first-order weights (one per bucket, plus a linear layer on the
    standardised dense features) and the position term are common to all three.
    """

    def __init__(self, kind: str, spec: HashedSpec, params: dict[str, Any]) -> None:
        super().__init__()
        self.kind = kind
        self.dedup = bool(params.get("dedup", True))
        slot_fields, names = spec.slot_fields, spec.fields
        pool = torch.zeros(len(slot_fields), len(names))
        for s, f in enumerate(slot_fields):
            pool[s, names.index(f)] = 1.0
        # A spec without dense features (an Avazu log) gets one constant zero column: the dense layer also holds
        # the bias the base rate starts from.
        n_dense = max(len(spec.dense_names), 1)
        dim = int(params.get("dim", 1))
        self.pool: torch.Tensor
        self.dense_mean: torch.Tensor
        self.dense_std: torch.Tensor
        self.register_buffer("pool", pool)
        self.register_buffer("dense_mean", torch.zeros(n_dense))
        self.register_buffer("dense_std", torch.ones(n_dense))
        self.linear = nn.Embedding(spec.n_buckets, 1, padding_idx=0, sparse=True)
        self.dense_linear = nn.Linear(n_dense, 1)
        self.position = nn.Embedding(MAX_POSITION + 1, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.position.weight)
        if kind != "lr":
            self.embedding = nn.Embedding(spec.n_buckets, dim, padding_idx=0, sparse=True)
            nn.init.normal_(self.embedding.weight, std=0.01)
            with torch.no_grad():
                self.embedding.weight[0].zero_()
        if kind == "fm":
            self.dense_embedding = nn.Parameter(torch.randn(n_dense, dim) * 0.01)
        if kind == "dcnv2":
            width = len(names) * dim + n_dense
            rank, n_cross = int(params["rank"]), int(params["cross_layers"])
            self.cross_u = nn.ModuleList(nn.Linear(rank, width) for _ in range(n_cross))
            self.cross_v = nn.ModuleList(nn.Linear(width, rank, bias=False) for _ in range(n_cross))
            layers: list[nn.Module] = []
            size = width
            for hidden in params["hidden"]:
                layers += [nn.Linear(size, int(hidden)), nn.ReLU()]
                size = int(hidden)
            layers.append(nn.Linear(size, 1))
            self.deep = nn.Sequential(*layers)

    def forward(
        self, ids: torch.Tensor, dense: torch.Tensor, position: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(n,)`` and the batch's L2 penalty on the embeddings it used."""
        if dense.shape[1] < self.dense_mean.shape[0]:
            dense = torch.zeros(len(dense), self.dense_mean.shape[0], dtype=dense.dtype, device=dense.device)
        x = (dense - self.dense_mean) / self.dense_std
        # With ``dedup``, training looks each distinct bucket of the batch up once: the sparse gradients then hold
        # one row per bucket, not one per occurrence, which makes the optimiser step cheaper (on 2.4M simulated
        # examples DCN-V2 trains 25 % faster); where a few buckets fill most slots the gather's backward costs more.
        uniq, inv = torch.unique(ids, return_inverse=True) if self.training and self.dedup else (ids, None)
        w = self.linear(uniq).squeeze(-1) if inv is None else self.linear(uniq).squeeze(-1)[inv]
        logit = w.sum(1) + self.dense_linear(x).squeeze(-1) + self.position(position).squeeze(-1)
        penalty = (w * w).sum()
        if self.kind == "lr":
            return logit, penalty
        v = self.embedding(uniq) if inv is None else self.embedding(uniq)[inv]  # (n, slots, dim)
        penalty = penalty + (v * v).sum()
        fields = torch.einsum("nsd,sf->nfd", v, self.pool)  # multi-valued fields: their values summed
        if self.kind == "fm":
            vectors = torch.cat([fields, x.unsqueeze(-1) * self.dense_embedding], dim=1)
            total = vectors.sum(1)
            return logit + 0.5 * (total * total - (vectors * vectors).sum(1)).sum(-1), penalty
        x0 = torch.cat([fields.flatten(1), x], dim=1)
        xl = x0
        for u, v_ in zip(self.cross_u, self.cross_v, strict=True):  # low-rank cross layers (DCN-V2, eq. 3)
            xl = x0 * u(v_(xl)) + xl
        return logit + self.deep(xl).squeeze(-1), penalty


class _NumpyNet:
    """:class:`ClickNet`'s forward pass in NumPy, on views of its CPU weights (they follow the optimiser's in-place
    updates), for scoring on the CPU: a request's 200 candidates pass through a dozen small layers, where torch's
    per-call overhead costs more than the arithmetic (DCN-V2: 0.2 ms against 0.7 ms). Same float32 arithmetic as
    the net, equal to it to rounding (a test checks 1e-5)."""

    def __init__(self, net: ClickNet) -> None:
        def a(t: torch.Tensor) -> npt.NDArray[np.float32]:
            return t.detach().numpy()

        self.net = net
        self.kind = net.kind
        self.first = a(net.linear.weight)[:, 0]
        self.dense_mean, self.dense_std = a(net.dense_mean), a(net.dense_std)
        self.dense_w, self.dense_b = a(net.dense_linear.weight)[0], a(net.dense_linear.bias)
        self.position = a(net.position.weight)[:, 0]
        if self.kind == "lr":
            return
        self.embedding = a(net.embedding.weight)
        # A field's vector is the sum of its slots' (multi-valued fields have several): the first slot of each
        # field gathered, then the others added one by one (faster here than any (slots x fields) product).
        field_of = a(net.pool).argmax(1)
        self.primary = np.array([int(np.flatnonzero(field_of == f)[0]) for f in range(net.pool.shape[1])])
        first = set(self.primary.tolist())
        self.extra = [(s, int(f)) for s, f in enumerate(field_of.tolist()) if s not in first]
        if self.kind == "fm":
            self.dense_embedding = a(net.dense_embedding)
            return
        self.cross = [
            (a(v.weight).T, a(u.weight).T, a(u.bias))
            for u, v in zip(net.cross_u.children(), net.cross_v.children(), strict=True)
            if isinstance(u, nn.Linear) and isinstance(v, nn.Linear)
        ]
        self.deep = [(a(m.weight).T, a(m.bias)) for m in net.deep.children() if isinstance(m, nn.Linear)]

    def __call__(
        self, ids: npt.NDArray[np.int64], dense: npt.NDArray[np.float32], position: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        n = len(ids)
        if dense.shape[1] < len(self.dense_mean):
            dense = np.zeros((n, len(self.dense_mean)), dtype=np.float32)
        x = (dense - self.dense_mean) / self.dense_std
        logit: npt.NDArray[np.float32] = (
            np.take(self.first, ids).sum(1) + x @ self.dense_w + self.dense_b + np.take(self.position, position)
        )
        if self.kind == "lr":
            return logit
        fields = np.take(self.embedding, ids[:, self.primary], axis=0)  # (n, fields, dim); faster than [ids]
        for s, f in self.extra:
            fields[:, f] += np.take(self.embedding, ids[:, s], axis=0)
        if self.kind == "fm":  # (NumPy's sums over a middle axis are slow; einsum's are not)
            vectors = np.concatenate([fields, x[:, :, None] * self.dense_embedding], axis=1)
            total = np.einsum("nfd->nd", vectors)
            pairs: npt.NDArray[np.float32] = np.einsum("nd,nd->n", total, total)
            pairs -= np.einsum("nfd,nfd->n", vectors, vectors)
            return logit + 0.5 * pairs
        x0 = np.concatenate([fields.reshape(n, -1), x], axis=1)
        xl = x0
        for v_w, u_w, u_b in self.cross:  # low-rank cross layers (DCN-V2, eq. 3), as in ClickNet.forward
            xl = x0 * ((xl @ v_w) @ u_w + u_b) + xl
        h = xl
        for i, (w, b) in enumerate(self.deep):
            h = h @ w + b
            if i < len(self.deep) - 1:
                h = np.maximum(h, 0.0)
        out: npt.NDArray[np.float32] = logit + h[:, 0]
        return out


@contextmanager
def _deterministic(device: str) -> Iterator[None]:
    """Torch's deterministic algorithms for the block, on the CPU: without them the sparse embedding updates add up
    in thread order, and two fits of the same data differ in the fifth digit (so an experiment arm, or a server
    trained apart, would not repeat its decisions). On a GPU the block runs as it is: there some kernels may lack
    a deterministic version and cuBLAS needs a workspace setting for one, so GPU fits are not bit-repeatable."""
    if device != "cpu":
        yield
        return
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)


class _TorchClickModel(ClickModel):
    """Mini-batch training with Adam (sparse Adam for the embedding tables), early stopping on validation
    logloss, the best epoch kept."""

    _kind: ClassVar[str] = ""

    epochs: int
    batch_size: int
    lr: float
    lr_decay: float
    l2: float
    patience: int
    dedup: bool
    device: str
    threads: int | None

    net_: ClickNet
    epochs_run_: int
    _numpy: _NumpyNet | None = None

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {
            **super().defaults(),
            "epochs": 3,
            "batch_size": 4096,
            "lr": 0.002,
            "lr_decay": 0.5,
            "l2": 1e-6,
            "patience": 1,
            "dedup": True,
            "device": "cpu",
            "threads": None,
        }

    def _fit(self, train: Examples, valid: Examples | None, progress: bool) -> None:
        check_device(self.device)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        net = ClickNet(self._kind, self.spec_, self.get_params())
        rate = float(train.labels.mean())
        with torch.no_grad():
            net.dense_linear.bias.fill_(math.log(rate / (1 - rate)))  # start at the base rate, not at p = 0.5
            if train.dense.shape[1]:
                net.dense_mean.copy_(torch.from_numpy(train.dense.mean(0)))
                net.dense_std.copy_(torch.from_numpy(np.maximum(train.dense.std(0), 1e-3)))
        net.to(self.device)
        params = dict(net.named_parameters())
        sparse = [
            params.pop("linear.weight"),
            *([params.pop("embedding.weight")] if "embedding.weight" in params else []),
        ]
        # The position term is a handful of weights every example moves: at the embeddings' step size it is still
        # far from the truth when a small dataset ends training (and serving prices at position 1), so it steps ten
        # times faster.
        position = params.pop("position.weight")
        groups: list[dict[str, Any]] = [
            {"params": list(params.values())},
            {"params": [position], "lr": 10 * self.lr},
        ]
        optimizers: list[torch.optim.Optimizer] = [
            torch.optim.SparseAdam(sparse, lr=self.lr),
            torch.optim.Adam(groups, lr=self.lr),
        ]
        best, best_state, stale = math.inf, None, 0
        self.epochs_run_ = 0
        with torch_threads(self.threads), _deterministic(self.device), Bars(enabled=progress) as bars:
            for epoch in range(1, self.epochs + 1):
                net.train()
                advance = bars.task(f"{self.name} epoch {epoch}", len(train))
                order = rng.permutation(len(train))
                for start in range(0, len(train), self.batch_size):
                    rows = order[start : start + self.batch_size]
                    ids, x, pos = self._tensors(train, rows, None)
                    y = torch.from_numpy(train.labels[rows]).to(self.device)
                    logit, penalty = net(ids, x, pos)
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y)
                    loss = loss + self.l2 * penalty / len(rows)
                    for opt in optimizers:
                        opt.zero_grad()
                    loss.backward()
                    for opt in optimizers:
                        opt.step()
                    advance(len(rows))
                self.net_ = net
                self.epochs_run_ = epoch
                for opt in optimizers:  # a smaller step each epoch: the last iterates settle near the optimum
                    for group in opt.param_groups:
                        group["lr"] *= self.lr_decay
                if valid is None or len(valid) == 0:
                    continue
                score = _logloss(valid.labels, self._logit(valid, None))
                if score < best - 1e-6:
                    best, stale = score, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    stale += 1
                    if stale > self.patience:
                        break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.net_ = net

    def _tensors(
        self, examples: Examples, rows: npt.NDArray[np.intp] | slice, position: int | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = examples.position[rows] if position is None else np.full(len(examples.ids[rows]), position)
        return (
            torch.from_numpy(examples.ids[rows]).to(self.device),
            torch.from_numpy(examples.dense[rows]).to(self.device),
            torch.from_numpy(np.minimum(pos, MAX_POSITION)).to(self.device),
        )

    def _logit(self, examples: Examples, position: int | None) -> npt.NDArray[np.float64]:
        out = np.empty(len(examples), dtype=np.float64)
        if self.device == "cpu":
            forward = self._numpy
            if forward is None or forward.net is not self.net_:
                forward = self._numpy = _NumpyNet(self.net_)
            pos = examples.position if position is None else np.full(len(examples), position)
            for start in range(0, len(examples), 65_536):
                part = slice(start, start + 65_536)
                out[part] = forward(examples.ids[part], examples.dense[part], np.minimum(pos[part], MAX_POSITION))
            return out
        with torch.no_grad(), torch_threads(self.threads):
            for start in range(0, len(examples), 65_536):
                part = slice(start, start + 65_536)
                out[part] = self.net_(*self._tensors(examples, part, position))[0].cpu().numpy()
        return out

    def _state(self, folder: Path) -> dict[str, npt.NDArray[Any]]:
        return {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}

    def _restore(self, folder: Path, state: dict[str, npt.NDArray[Any]]) -> None:
        net = ClickNet(self._kind, self.spec_, self.get_params())
        net.load_state_dict({k.removeprefix("net."): torch.from_numpy(v) for k, v in state.items()})
        net.eval()
        self.net_ = net.to(self.device)


@register_click_model
class LogisticRegression(_TorchClickModel):
    """Logistic regression on the hashed features (a weight per bucket) and the dense features: the floor."""

    name = "lr"
    _kind = "lr"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {**super().defaults(), "lr": 0.01}


@register_click_model
class FM(_TorchClickModel):
    """Factorization machine (Rendle, ICDM 2010): first order plus pairwise interactions of field vectors, the
    dense features entering as vectors scaled by their value."""

    name = "fm"
    _kind = "fm"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {**super().defaults(), "dim": 8, "lr": 0.002}


@register_click_model
class DCNV2(_TorchClickModel):
    """DCN-V2 (Wang et al., "DCN V2: Improved Deep & Cross Network", WWW 2021), stacked: low-rank cross layers
    over the field embeddings and dense features, then a deep network, plus first-order and position terms."""

    name = "dcnv2"
    _kind = "dcnv2"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {
            **super().defaults(),
            "dim": 8,
            "lr": 0.005,
            "batch_size": 8192,
            "cross_layers": 2,
            "rank": 32,
            "hidden": [128, 64],
        }


@register_click_model
class LightGBMClickModel(ClickModel):
    """The peer: LightGBM (Ke et al., NeurIPS 2017) on the same fields, each slot a categorical column (its
    buckets numbered by training frequency), the dense features and the position as numbers; early stopping on
    the validation examples. Needs the ``lightgbm`` package (``pip install 'adrec[bench]'``)."""

    name = "lightgbm"

    num_leaves: int
    learning_rate: float
    rounds: int
    patience: int
    min_child_samples: int
    threads: int | None

    booster_: Any
    codes_: list[npt.NDArray[np.int64]]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {
            **super().defaults(),
            "num_leaves": 63,
            "learning_rate": 0.05,
            "rounds": 500,
            "patience": 20,
            "min_child_samples": 100,
            "threads": None,
        }

    def _matrix(self, examples: Examples, position: int | None) -> npt.NDArray[np.float64]:
        cols: list[npt.NDArray[np.float64]] = []
        for s, codes in enumerate(self.codes_):
            at = np.minimum(np.searchsorted(codes, examples.ids[:, s]), len(codes) - 1)
            hit = codes[at] == examples.ids[:, s]
            cols.append(np.where(hit, at, np.nan))
        pos = examples.position if position is None else np.full(len(examples), position)
        cols += [examples.dense[:, j].astype(np.float64) for j in range(examples.dense.shape[1])]
        cols.append(np.minimum(pos, MAX_POSITION).astype(np.float64))
        return np.stack(cols, axis=1) if cols else np.zeros((len(examples), 0))

    def _lightgbm(self) -> Any:
        try:
            import lightgbm
        except ImportError:
            raise NotFoundError("the lightgbm model needs the lightgbm package: pip install 'adrec[bench]'") from None
        return lightgbm

    def _fit(self, train: Examples, valid: Examples | None, progress: bool) -> None:
        lgb = self._lightgbm()
        self.codes_ = [np.unique(train.ids[:, s]) for s in range(train.ids.shape[1])]
        n_slots = len(self.codes_)
        params = {
            "objective": "binary",
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_child_samples": self.min_child_samples,
            "seed": self.seed,
            "verbosity": -1,
            "num_threads": self.threads or 0,
            "max_cat_to_onehot": 8,
            "cat_smooth": 10.0,
        }
        data = lgb.Dataset(self._matrix(train, None), train.labels, categorical_feature=list(range(n_slots)))
        sets, callbacks = [], []
        if valid is not None and len(valid):
            sets = [lgb.Dataset(self._matrix(valid, None), valid.labels, reference=data)]
            callbacks = [lgb.early_stopping(self.patience, verbose=False)]
        self.booster_ = lgb.train(params, data, self.rounds, valid_sets=sets, callbacks=callbacks)

    def _logit(self, examples: Examples, position: int | None) -> npt.NDArray[np.float64]:
        out: npt.NDArray[np.float64] = np.asarray(
            self.booster_.predict(self._matrix(examples, position), raw_score=True), dtype=np.float64
        )
        return out

    def _state(self, folder: Path) -> dict[str, npt.NDArray[Any]]:
        (folder / "lightgbm.txt").write_text(self.booster_.model_to_string())
        return {f"codes.{s}": c for s, c in enumerate(self.codes_)}

    def _restore(self, folder: Path, state: dict[str, npt.NDArray[Any]]) -> None:
        self.codes_ = [state[f"codes.{s}"] for s in range(len(state))]
        self.booster_ = self._lightgbm().Booster(model_str=(folder / "lightgbm.txt").read_text())


def _logloss(y: npt.NDArray[Any], logit: npt.NDArray[np.float64]) -> float:
    """Mean binary cross-entropy of logits (numerically stable)."""
    return float(np.mean(np.logaddexp(0.0, logit) - y * logit))
