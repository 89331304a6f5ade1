"""The training loop shared by the pairwise (BPR) recommenders: sampling, epochs, early stopping, progress.

The loop knows nothing of the model. It draws ``(user, positive item, negative item)`` triples, hands each batch to
a ``step`` function that updates the model and returns the batch loss, and after every ``eval_every`` epochs asks
a ``validate`` function for the validation metric (higher is better)::

    sampler = BPRSampler(train_matrix, batch_size=8192, random_state=0)
    log = train_bpr(step, sampler, epochs=100, validate=recall_on_validation, patience=3, on_best=snapshot)

Early stopping keeps the evaluation with the best metric: ``on_best`` is called right after each new best, so the
caller can copy its parameters, and the loop stops after ``patience`` evaluations without improvement.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.exceptions import ValidationError

__all__ = ["BPRSampler", "EarlyStopping", "EpochRecord", "TrainingLog", "train_bpr"]

IntArray = npt.NDArray[np.int64]
Step = Callable[[IntArray, IntArray, IntArray], float]
Scorer = Callable[[IntArray, IntArray], npt.NDArray[np.floating[Any]]]


class BPRSampler:
    """Batches of BPR triples: each epoch visits every stored ``(user, item)`` pair once, in random order.

    Every positive pair gets one negative item drawn uniformly from the items the user has no interaction with
    (rejection sampling, vectorised; a user who interacted with every item gets a uniform draw instead). With
    ``n_candidates > 1`` and a ``scorer``, the negative is the best-scored of that many such draws: dynamic
    negative sampling (W. Zhang, T. Chen, J. Wang, Y. Yu, *Optimizing Top-N Collaborative Filtering via Dynamic
    Negative Item Sampling*, SIGIR 2013).

    Parameters
    ----------
    matrix
        User × item CSR matrix; its stored entries are the positive pairs.
    batch_size
        Triples per batch (the last batch of an epoch may be smaller).
    random_state
        Seed or generator of the shuffling and the negative draws.
    n_candidates
        Uniform draws per negative (default 1).
    scorer
        ``scorer(users, candidates) -> scores``, shapes ``(b,)``, ``(b, c)`` → ``(b, c)``: the model's current
        scores, used to pick among ``n_candidates`` draws. May be set after construction.
    """

    def __init__(
        self,
        matrix: sp.csr_matrix,
        batch_size: int,
        random_state: int | np.random.Generator | None = 0,
        *,
        n_candidates: int = 1,
        scorer: Scorer | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValidationError("batch_size", f"must be >= 1 (got {batch_size})")
        if n_candidates < 1:
            raise ValidationError("n_candidates", f"must be >= 1 (got {n_candidates})")
        self.n_candidates = n_candidates
        self.scorer = scorer
        csr = sp.csr_matrix(matrix)
        csr.sum_duplicates()
        csr.sort_indices()
        self.n_users, self.n_items = int(csr.shape[0]), int(csr.shape[1])
        self.users = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(csr.indptr))
        self.items = csr.indices.astype(np.int64)
        # Sorted because the CSR rows ascend and the columns within a row are sorted.
        self._keys = self.users * self.n_items + self.items
        self._full = np.diff(csr.indptr) >= self.n_items
        self.batch_size = batch_size
        self.rng = np.random.default_rng(random_state)

    @property
    def n_pairs(self) -> int:
        return len(self.users)

    def __len__(self) -> int:
        return -(-self.n_pairs // self.batch_size)

    def __iter__(self) -> Iterator[tuple[IntArray, IntArray, IntArray]]:
        order = self.rng.permutation(self.n_pairs)
        for start in range(0, self.n_pairs, self.batch_size):
            idx = order[start : start + self.batch_size]
            users = self.users[idx]
            yield users, self.items[idx], self.sample_negatives(users)

    def sample_negatives(self, users: IntArray) -> IntArray:
        """One negative per user: uniform, or the best-scored of ``n_candidates`` uniform draws."""
        if self.n_candidates == 1 or self.scorer is None:
            return self.negatives(users)
        candidates = np.stack([self.negatives(users) for _ in range(self.n_candidates)], axis=1)
        best = np.argmax(self.scorer(users, candidates), axis=1)
        out: IntArray = candidates[np.arange(len(users)), best]
        return out

    def negatives(self, users: IntArray) -> IntArray:
        """One item per user, uniform over the items that user has no interaction with."""
        neg = self.rng.integers(0, self.n_items, size=len(users), dtype=np.int64)
        todo = np.flatnonzero(self._is_positive(users, neg) & ~self._full[users])
        while todo.size:
            neg[todo] = self.rng.integers(0, self.n_items, size=todo.size, dtype=np.int64)
            todo = todo[self._is_positive(users[todo], neg[todo])]
        return neg

    def _is_positive(self, users: IntArray, items: IntArray) -> npt.NDArray[np.bool_]:
        keys = users * self.n_items + items
        pos = np.searchsorted(self._keys, keys)
        pos[pos == len(self._keys)] = 0
        hit: npt.NDArray[np.bool_] = self._keys[pos] == keys if len(self._keys) else np.zeros(len(keys), bool)
        return hit


class EarlyStopping:
    """Tracks a metric where higher is better; ``should_stop`` after ``patience`` evaluations without improvement.

    ``patience=None`` never stops. An evaluation improves when it beats the best so far by more than
    ``min_delta``.
    """

    def __init__(self, patience: int | None, min_delta: float = 0.0) -> None:
        if patience is not None and patience < 1:
            raise ValidationError("patience", f"must be >= 1 or None (got {patience})")
        self.patience = patience
        self.min_delta = min_delta
        self.best: float | None = None
        self.bad_evaluations = 0

    def step(self, value: float) -> bool:
        """Record one evaluation; return whether it is the new best."""
        if self.best is None or value > self.best + self.min_delta:
            self.best = value
            self.bad_evaluations = 0
            return True
        self.bad_evaluations += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_evaluations >= self.patience


@dataclass
class EpochRecord:
    """One epoch: mean batch loss, the validation metric if it was evaluated, and time spent so far.

    ``seconds`` is the wall time of training and validation since the loop started, excluding the time spent
    in the caller's ``callback``.
    """

    epoch: int
    loss: float
    metric: float | None
    seconds: float


@dataclass
class TrainingLog:
    """What :func:`train_bpr` did: one record per epoch, the best evaluated epoch, and why it stopped."""

    metric_name: str
    records: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None
    stopped_early: bool = False
    """Stopped because the validation metric stopped improving."""
    stopped_by_callback: bool = False
    plateaus: list[int] = field(default_factory=list)
    """Epochs after which ``on_plateau`` let training go on."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric_name": self.metric_name,
            "best_epoch": self.best_epoch,
            "best_metric": self.best_metric,
            "stopped_early": self.stopped_early,
            "stopped_by_callback": self.stopped_by_callback,
            "plateaus": self.plateaus,
            "epochs": [[r.epoch, r.loss, r.metric, r.seconds] for r in self.records],
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TrainingLog:
        """The inverse of :meth:`as_dict`."""
        return cls(
            metric_name=str(state["metric_name"]),
            records=[EpochRecord(int(e), float(loss), m, float(t)) for e, loss, m, t in state["epochs"]],
            best_epoch=state["best_epoch"],
            best_metric=state["best_metric"],
            stopped_early=bool(state["stopped_early"]),
            stopped_by_callback=bool(state.get("stopped_by_callback", False)),
            plateaus=list(state.get("plateaus", [])),
        )


def train_bpr(
    step: Step,
    sampler: BPRSampler,
    *,
    epochs: int,
    validate: Callable[[], float] | None = None,
    patience: int | None = None,
    on_best: Callable[[], None] | None = None,
    eval_every: int = 1,
    metric_name: str = "recall@20",
    verbose: bool = False,
    on_plateau: Callable[[], bool] | None = None,
    callback: Callable[[EpochRecord], bool | None] | None = None,
) -> TrainingLog:
    """Run up to ``epochs`` epochs of ``step`` over the batches of ``sampler``.

    Parameters
    ----------
    step
        ``step(users, positives, negatives) -> loss``: one optimisation step on a batch of index arrays of
        shape ``(b,)``.
    sampler
        The batches of an epoch.
    epochs
        Most epochs to run.
    validate
        Returns the validation metric (higher is better); without it, every epoch runs and none is "best".
    patience
        Stop after this many evaluations without improvement (``None``: never stop early).
    on_best
        Called after each evaluation that is the new best (to keep a copy of the parameters).
    eval_every
        Evaluate every this many epochs, and after the last one.
    metric_name
        Name of the metric, for the progress bar and the log.
    verbose
        Show a progress bar with the loss and the validation metric.
    on_plateau
        Called when ``patience`` evaluations brought no improvement. If it returns True (for example after
        restoring the best parameters and lowering the learning rate), training goes on with the patience
        renewed; otherwise it stops.
    callback
        Called with each epoch's record after it is complete (its time is not counted in ``seconds``); training
        stops after this epoch if it returns True (e.g. when a time budget is spent).
    """
    if epochs < 0:
        raise ValidationError("epochs", f"must be >= 0 (got {epochs})")
    if eval_every < 1:
        raise ValidationError("eval_every", f"must be >= 1 (got {eval_every})")
    log = TrainingLog(metric_name=metric_name)
    stopper = EarlyStopping(patience)
    progress = _Progress(epochs, len(sampler), metric_name) if verbose else None
    started = time.perf_counter()
    excluded = 0.0  # time spent in the caller's callback
    try:
        for epoch in range(1, epochs + 1):
            total, seen = 0.0, 0
            for users, pos, neg in sampler:
                total += step(users, pos, neg) * len(users)
                seen += len(users)
                if progress is not None:
                    progress.batch(total / seen)
            metric = None
            if validate is not None and (epoch % eval_every == 0 or epoch == epochs):
                metric = float(validate())
                if stopper.step(metric):
                    log.best_epoch, log.best_metric = epoch, metric
                    if on_best is not None:
                        on_best()
            record = EpochRecord(epoch, total / max(seen, 1), metric, time.perf_counter() - started - excluded)
            log.records.append(record)
            if progress is not None:
                progress.epoch(record, stopper.best)
            if callback is not None:
                t0 = time.perf_counter()
                halt = callback(record)
                excluded += time.perf_counter() - t0
                if halt:
                    log.stopped_by_callback = True
                    break
            if stopper.should_stop:
                if on_plateau is not None and on_plateau():
                    stopper.bad_evaluations = 0
                    log.plateaus.append(epoch)
                    continue
                log.stopped_early = True
                break
    finally:
        if progress is not None:
            progress.close()
    return log


class _Progress:
    """A rich progress bar over all batches of all epochs, showing the loss and the validation metric."""

    def __init__(self, epochs: int, batches: int, metric_name: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.metric_name = metric_name
        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[metric]}"),
            TimeElapsedColumn(),
        )
        self.task = self.bar.add_task("train", total=epochs * batches, epoch=1, loss=float("nan"), metric="")
        self.bar.start()

    def batch(self, loss: float) -> None:
        self.bar.update(self.task, advance=1, loss=loss)

    def epoch(self, record: EpochRecord, best: float | None) -> None:
        metric = "" if record.metric is None else f"val {self.metric_name} {record.metric:.4f} (best {best:.4f})"
        self.bar.update(self.task, epoch=record.epoch + 1, loss=record.loss, metric=metric or self._last_metric())
        if record.metric is not None:
            self.bar.console.log(f"epoch {record.epoch}: loss {record.loss:.4f}, {metric}")

    def _last_metric(self) -> str:
        return str(self.bar.tasks[0].fields.get("metric", ""))

    def close(self) -> None:
        self.bar.stop()
