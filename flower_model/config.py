"""What decides a training run: every setting with its default and help, in one place.

The command line, the Train page and the benchmark all read the defaults and help from
`TrainConfig`, and `resolve_config` is the one function that fills in what a setting leaves
open (which weights 'imagenet' means here, which learning rate 'auto' means).
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from flower_model.backbone import WeightsChoice, resolve_weights
from flower_model.precision import validate_precision

MODES = ("features", "finetune")
# Learning rates when none is given: the head alone learns fast on ImageNet features; on random
# features (large, shared offsets) 1e-3 collapses to the class prior, while 1e-4 reached 42%
# held-out accuracy on the 500-photo sample (measured; 1e-3: 25%); fine-tuning must not wreck conv5.
DEFAULT_LEARNING_RATE = {"features": 1e-3, "features-random": 1e-4, "finetune": 1e-5}


def _setting(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run, with its default."""

    epochs: int = _setting(20, "at most this many passes over the training photos")
    # 64, not 32: a step of the head costs about as much at 64 as at 32 on a 2-core CPU, so an
    # epoch takes about a third less (`make bench`: 20 epochs on 4,000 features 6.94 s, 4.56 s).
    batch_size: int = _setting(64, "photos per training step; larger steps make epochs faster")
    learning_rate: float | None = _setting(
        None,
        "the optimizer's step size; by default (auto) "
        f"{DEFAULT_LEARNING_RATE['features']:g} for the head on ImageNet features, "
        f"{DEFAULT_LEARNING_RATE['features-random']:g} on random features, "
        f"{DEFAULT_LEARNING_RATE['finetune']:g} for fine-tuning (so as not to wreck what "
        "ResNet50 knows)",
    )
    val_fraction: float = _setting(0.2, "share of each class held out to measure the model")
    seed: int = _setting(42, "the split, the initialisation and the shuffling: same seed, same run")
    patience: int = _setting(
        5,
        "stop after this many epochs without a better validation loss (keeping the best); 0: never",
    )
    mode: str = _setting(
        "features",
        "features: train the head on cached ResNet50 features (fast); finetune: also train "
        "ResNet50's last stage on flipped, rotated and zoomed photos (every epoch runs the "
        "whole network: slow)",
    )
    weights: str = _setting(
        "imagenet",
        "imagenet: ResNet50's ImageNet weights (transfer learning; the Keras cache, "
        "$FLOWER_LENS_WEIGHTS or a download); a weights file; or none: random weights, "
        "no transfer learning",
    )
    precision: str = _setting(
        "auto",
        "ResNet50's arithmetic when extracting features; auto: bfloat16 where the CPU computes "
        "it natively and its features agree with float32 ones, else float32",
    )

    def __post_init__(self) -> None:
        validate_precision(self.precision)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not '{self.mode}'")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")
        if self.learning_rate is not None and not 0 < self.learning_rate < float("inf"):
            raise ValueError(
                f"the learning rate must be a positive number, not {self.learning_rate}"
            )
        if self.patience < 0:
            raise ValueError(f"patience must be 0 (off) or more, not {self.patience}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(
                f"the validation share must be between 0 and 1, not {self.val_fraction}"
            )

    def to_json(self) -> dict:
        """Return the settings as plain JSON values."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict) -> TrainConfig:
        """Rebuild settings stored with a run, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in known})


def default_of(name: str) -> Any:
    """Return the default of one TrainConfig setting."""
    default = next(f.default for f in fields(TrainConfig) if f.name == name)
    if default is MISSING:
        raise KeyError(name)
    return default


def help_of(name: str) -> str:
    """Return the help text of one TrainConfig setting."""
    return next(f.metadata["help"] for f in fields(TrainConfig) if f.name == name)


def default_learning_rate(mode: str, transfer_learning: bool) -> float:
    """Return the learning rate 'auto' means for a mode and whether the weights are ImageNet's."""
    if mode == "features" and not transfer_learning:
        return DEFAULT_LEARNING_RATE["features-random"]
    return DEFAULT_LEARNING_RATE[mode]


@dataclass(frozen=True)
class ResolvedConfig:
    """A TrainConfig with everything it left open decided: the weights found, the learning rate."""

    config: TrainConfig  # learning_rate is set
    weights: WeightsChoice

    @property
    def learning_rate(self) -> float:
        """Return the learning rate in effect."""
        assert self.config.learning_rate is not None
        return self.config.learning_rate


def resolve_config(config: TrainConfig) -> ResolvedConfig:
    """Return the config with its weights resolved and its learning rate chosen for them.

    Raises WeightsError when a weights file is named but missing. The learning rate follows
    the weights actually found, so '$FLOWER_LENS_WEIGHTS=none' with weights 'imagenet' trains
    random features at the random-features rate.
    """
    choice = resolve_weights(config.weights)
    rate = config.learning_rate
    if rate is None:
        rate = default_learning_rate(config.mode, choice.transfer_learning)
    return ResolvedConfig(replace(config, learning_rate=rate), choice)
