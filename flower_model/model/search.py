"""Tune: a search over the head's training settings (Optuna), each trial scored by k-fold
cross-validation on features: its held-out loss (the figure early stopping watches, which
tells apart settings that reach the same accuracy), its accuracy shown beside. A trial's
held-out loss is reported after every epoch, and a hopeless trial is cut short at the epoch
where it falls behind the median of the earlier trials (Optuna's MedianPruner).

The features given are a training part's alone: a run's held-out photos are never seen by the
search. Photos in one duplicate group stay in one fold, as they stay on one side of a split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from flower_model.core.errors import TrainingCancelled, TrainingError
from flower_model.core.events import CancelToken, TrainEvent
from flower_model.model.config import TrainConfig
from flower_model.model.fitting import fit_head
from flower_model.model.head import DROPOUT_RATE, build_head
from flower_model.model.scaling import FeatureRows, Selection

FOLDS = 3
# The settings searched (a setting given outside them is brought inside for the first trial,
# but for a batch size given, which is searched as well). Batches of 16 take twice the time of
# 32 an epoch on 2 cores, for heads no better on 4,317 photos (bench/README.md). Dropout
# rates are a few values, not a range: each rate is a loop of its own to trace.
LEARNING_RATES = (1e-5, 1e-1)
BATCH_SIZES = (32, 64, 128, 256)
EPOCHS = (5, 60)
DROPOUTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
# Trials run before any is pruned: the first ones set the bar; and epochs of a fold before
# a trial may be cut short (the first epochs' loss says little of the last).
STARTUP_TRIALS = 5
WARMUP_EPOCHS = 2
# Every trial's early stopping (and so the settings it hands to a run): a fold whose held-out
# loss has not improved for this many epochs has found its best.
TRIAL_PATIENCE = 3


@dataclass(frozen=True)
class Space:
    """What the search may change; the rest of a trial's settings are the base config's."""

    dropout: bool = False  # searching the dropout rate leaves the seed's model


@dataclass(frozen=True)
class Trial:
    """One trial: its settings, its cross-validated held-out loss and accuracy (mean and
    spread over the folds scored), and how it ended: complete; pruned (cut short at an epoch
    of a fold); diverged (its loss was not a finite number)."""

    number: int
    learning_rate: float
    batch_size: int
    epochs: int
    dropout: float
    state: str  # complete, pruned, diverged
    folds: int  # folds scored to the end
    accuracy: float | None  # mean over the folds scored
    spread: float | None  # standard deviation over them
    loss: float | None  # mean over the folds scored; cut short: the last loss reported
    best_epochs: tuple[int, ...]  # per fold scored: the epoch early stopping kept
    seconds: float
    ended_at: tuple[int, int] = (0, 0)  # cut short: (fold, epoch), 1-based

    @property
    def ended(self) -> str:
        """Return how the trial ended, in words."""
        if self.state == "complete":
            return "complete"
        fold, epoch = self.ended_at
        return f"{self.state} at epoch {epoch} of fold {fold}"

    def config(self, base: TrainConfig) -> TrainConfig:
        """Return the base settings with this trial's (and the search's early stopping)."""
        return replace(
            base,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            epochs=self.epochs,
            dropout=self.dropout,
            patience=TRIAL_PATIENCE,
        )

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "best_epochs": list(self.best_epochs),
            "ended_at": list(self.ended_at),
        }

    @classmethod
    def from_json(cls, value: dict) -> Trial:
        return cls(
            **{
                **value,
                "best_epochs": tuple(value["best_epochs"]),
                "ended_at": tuple(value.get("ended_at", (0, 0))),
            }
        )


@dataclass(frozen=True)
class Search:
    """A finished (or stopped) search: its trials in order, the best one, and why it ended."""

    trials: tuple[Trial, ...]
    best: Trial | None
    folds: int
    photos: int
    seconds: float
    stopped: str  # "all trials", "time limit", "stopped by the user"


def best_trial(trials: Sequence[Trial]) -> Trial | None:
    """Return the complete trial of lowest cross-validated loss (the higher accuracy first
    among equal losses), or None while no trial is complete."""
    complete = [t for t in trials if t.state == "complete" and t.loss is not None]
    return min(complete, key=lambda t: (t.loss, -(t.accuracy or 0.0)), default=None)


def fold_groups(count: int, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Return each row's group id: the rows of a duplicate group share one, every other row
    has its own."""
    ids = np.arange(count)
    for members in groups:
        if len(members) > 1:
            ids[list(members)] = min(members)
    return ids


@dataclass(frozen=True)
class Scores:
    """Per fold scored: the held-out accuracy and loss, and the epoch early stopping kept."""

    accuracy: tuple[float, ...] = ()
    loss: tuple[float, ...] = ()
    epochs: tuple[int, ...] = ()

    @property
    def mean(self) -> float:
        """Return the mean held-out accuracy over the folds."""
        return float(np.mean(self.accuracy))

    @property
    def spread(self) -> float:
        """Return the standard deviation of the held-out accuracy over the folds."""
        return float(np.std(self.accuracy))

    def to_json(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, value: dict) -> Scores:
        return cls(*(tuple(value[k]) for k in ("accuracy", "loss", "epochs")))


def cross_validate(
    features: FeatureRows,
    labels: np.ndarray,
    classes: int,
    config: TrainConfig,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    after_fold: Callable[[Scores], None] | None = None,
    cancel: CancelToken | None = None,
    on_epoch: Callable[[int, int, float], None] | None = None,
) -> Scores:
    """Return per fold the held-out accuracy and loss of the head trained on the other
    folds (at the epoch early stopping kept), and that epoch. `on_epoch(fold, epoch,
    held-out loss)` after each epoch and `after_fold(scores so far)` after each fold may
    raise to end it early (Optuna's pruning)."""
    accuracies: list[float] = []
    losses: list[float] = []
    epochs: list[int] = []
    source = features.features if isinstance(features, Selection) else features
    base = features.index if isinstance(features, Selection) else np.arange(len(labels))
    for number, (train, held) in enumerate(folds):

        def epoch_ended(event: TrainEvent, number: int = number) -> None:
            if on_epoch is not None and event.kind == "epoch" and event.val_loss is not None:
                on_epoch(number, event.epoch or 0, float(event.val_loss))

        head = build_head(classes, config.seed, config.dropout)
        fit = fit_head(
            head,
            (Selection(source, base[train]), labels[train]),
            (Selection(source, base[held]), labels[held]),
            config,
            epoch_ended,
            cancel,
        )
        if fit.stopped == "stopped by the user":
            raise TrainingCancelled("the search was stopped")
        best = fit.best_epoch - 1
        accuracies.append(float(fit.history["val_accuracy"][best]))
        losses.append(float(fit.history["val_loss"][best]))
        epochs.append(fit.best_epoch)
        if after_fold is not None:
            after_fold(Scores(tuple(accuracies), tuple(losses), tuple(epochs)))
    return Scores(tuple(accuracies), tuple(losses), tuple(epochs))


def stratified_folds(
    labels: np.ndarray, groups: np.ndarray, count: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return `count` folds, each class spread evenly, each duplicate group in one fold
    (fewer folds when the smallest class has fewer photos)."""
    from sklearn.model_selection import StratifiedGroupKFold

    smallest = int(np.bincount(labels).min())
    count = max(2, min(count, smallest))
    splitter = StratifiedGroupKFold(count, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups))


def search(
    features: FeatureRows,
    labels: np.ndarray,
    classes: int,
    base: TrainConfig,
    trials: int = 30,
    seconds: float | None = None,
    space: Space | None = None,
    groups: Sequence[Sequence[int]] = (),
    folds: int = FOLDS,
    on_trial: Callable[[Trial], None] | None = None,
    cancel: CancelToken | None = None,
) -> Search:
    """Search the settings for the lowest cross-validated held-out loss on these features.

    The first trial is the base settings themselves, so that the search is measured against
    them. Sampling (TPE) and folds follow the base seed: the same seed and features give the
    same trials. `seconds` bounds the search's time; `cancel` stops it after the trial's
    current batch, keeping the trials done.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cancel = cancel or CancelToken()
    space = space or Space()
    labels = np.asarray(labels)
    split = stratified_folds(labels, fold_groups(len(labels), groups), folds, base.seed)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=base.seed, n_startup_trials=STARTUP_TRIALS),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=STARTUP_TRIALS, n_warmup_steps=WARMUP_EPOCHS
        ),
    )
    study.enqueue_trial(
        {
            "learning_rate": min(max(base.learning_rate, LEARNING_RATES[0]), LEARNING_RATES[1]),
            "batch_size": base.batch_size,
            "epochs": min(max(base.epochs, EPOCHS[0]), EPOCHS[1]),
            **(
                {"dropout": base.dropout if base.dropout in DROPOUTS else DROPOUT_RATE}
                if space.dropout
                else {}
            ),
        }
    )
    batches = tuple(sorted({*BATCH_SIZES, base.batch_size}))
    done: list[Trial] = []
    started = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        config = replace(
            base,
            learning_rate=trial.suggest_float("learning_rate", *LEARNING_RATES, log=True),
            batch_size=trial.suggest_categorical("batch_size", batches),
            epochs=trial.suggest_int("epochs", *EPOCHS),
            dropout=(
                trial.suggest_categorical("dropout", DROPOUTS) if space.dropout else base.dropout
            ),
            patience=TRIAL_PATIENCE,
        )
        begun = time.perf_counter()
        scored = [Scores()]
        last = {"fold": 0, "epoch": 0, "loss": math.nan}

        def record(state: str) -> Trial:
            scores = scored[-1]
            complete = bool(scores.accuracy)
            result = Trial(
                number=trial.number,
                learning_rate=config.learning_rate,
                batch_size=config.batch_size,
                epochs=config.epochs,
                dropout=config.dropout,
                state=state,
                folds=len(scores.accuracy),
                accuracy=float(np.mean(scores.accuracy)) if complete else None,
                spread=float(np.std(scores.accuracy)) if complete else None,
                loss=(
                    float(np.mean(scores.loss))
                    if state == "complete"
                    else (last["loss"] if math.isfinite(last["loss"]) else None)
                ),
                best_epochs=scores.epochs,
                seconds=time.perf_counter() - begun,
                ended_at=(0, 0) if state == "complete" else (last["fold"] + 1, last["epoch"]),
            )
            done.append(result)
            if on_trial is not None:
                on_trial(result)
            return result

        def on_epoch(fold: int, epoch: int, loss: float) -> None:
            last.update(fold=fold, epoch=epoch, loss=loss)
            if not math.isfinite(loss):
                raise TrainingError("the held-out loss is not a finite number")
            trial.report(loss, fold * EPOCHS[1] + epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        def after_fold(scores: Scores) -> None:
            scored.append(scores)

        try:
            cross_validate(features, labels, classes, config, split, after_fold, cancel, on_epoch)
        except optuna.TrialPruned:
            record("pruned")
            raise
        except TrainingError:
            # Diverged (a learning rate too high): pruned, so that it weighs on no median,
            # and said so.
            record("diverged")
            raise optuna.TrialPruned() from None
        except TrainingCancelled:
            study.stop()
            raise optuna.TrialPruned() from None  # not a finding: the user stopped it
        return float(record("complete").loss or 0.0)

    def stop_when_asked(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        if cancel.is_set():
            study.stop()

    study.optimize(
        objective,
        n_trials=trials,
        timeout=seconds,
        callbacks=[stop_when_asked],
        catch=(),
    )
    elapsed = time.perf_counter() - started
    best = best_trial(done)
    if cancel.is_set():
        stopped = "stopped by the user"
    elif len(done) < trials:
        stopped = "time limit"
    else:
        stopped = "all trials"
    return Search(tuple(done), best, len(split), len(labels), elapsed, stopped)
