"""What decides a training run: every setting with its default and help, in one place.

The command line (its options are made from these fields: flag, type, default, help), the
Train page and the benchmark all read the defaults and help from `TrainConfig`, and
`resolve_config` is the one function that decides what a setting leaves open: which weights
'imagenet' means on this machine.
"""

from __future__ import annotations

from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any

from flower_model.model.backbone import WeightsChoice, resolve_weights
from flower_model.model.head import DROPOUT_RATE
from flower_model.model.precision import PRECISIONS, validate_precision

MODES = ("features", "finetune")


def _setting(
    default: Any,
    help_text: str,
    flag: str,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """Return a setting: its default, its help, and how the command line spells it."""
    return field(
        default=default,
        metadata={"help": help_text, "flag": flag, "metavar": metavar, "choices": choices},
    )


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run, with its default."""

    epochs: int = _setting(
        20, "at most this many passes over the training photos", flag="--epochs", metavar="N"
    )
    # 64, not 32: a step of the head costs about as much at 64 as at 32 on a 2-core CPU, so an
    # epoch takes about a third less (`make bench`: 20 epochs on 4,000 features 7.31 s, 4.78 s).
    batch_size: int = _setting(
        64,
        "photos per training step; larger steps make epochs faster",
        flag="--batch-size",
        metavar="N",
    )
    # One rate for ImageNet and random features alike: the head trains on standardised
    # features. Measured on the 500-photo sample with random weights, 3 seeds: 1e-3 50%, 3e-4
    # 50%, 1e-4 47% held-out accuracy (unstandardised, as before: 1e-3 27%, 1e-4 29%).
    learning_rate: float = _setting(
        1e-3, "the head's step size (Adam)", flag="--lr", metavar="RATE"
    )
    fine_tune_learning_rate: float = _setting(
        1e-5,
        "finetune only: the step size once ResNet50's last stage trains too; small, so as not "
        "to wreck what ResNet50 knows",
        flag="--fine-tune-lr",
        metavar="RATE",
    )
    # The seed's model has Dropout 0.2 after each hidden layer; Tune may suggest another rate,
    # and a run trained with it says that it left the seed's model.
    dropout: float = _setting(
        DROPOUT_RATE,
        "the rate of the head's three Dropout layers (the seed's model: 0.2)",
        flag="--dropout",
        metavar="RATE",
    )
    cross_validation: int = _setting(
        0,
        "also score the head by K-fold cross-validation on the training photos, recorded "
        "beside the held-out accuracy (each fold costs about one fit of the head); 0: none",
        flag="--cross-validation",
        metavar="K",
    )
    val_fraction: float = _setting(
        0.2,
        "share of each class held out to measure the model",
        flag="--val-fraction",
        metavar="SHARE",
    )
    seed: int = _setting(
        42,
        "the split, the initialisation and the shuffling: same seed, same run",
        flag="--seed",
        metavar="N",
    )
    patience: int = _setting(
        5,
        "stop after this many epochs without a better validation loss (keeping the best); 0: never",
        flag="--patience",
        metavar="N",
    )
    mode: str = _setting(
        "features",
        "features: train the head on cached ResNet50 features (fast); finetune: then unfreeze "
        "ResNet50's last stage and train it with the head on flipped, rotated and zoomed "
        "photos (every epoch runs the whole network: slow)",
        flag="--mode",
        choices=MODES,
    )
    weights: str = _setting(
        "imagenet",
        "imagenet: ResNet50's ImageNet weights (transfer learning; the Keras cache, "
        "$FLOWER_LENS_WEIGHTS or a download); a weights file; or none: random weights, "
        "no transfer learning",
        flag="--weights",
        metavar="imagenet|none|FILE",
    )
    precision: str = _setting(
        "auto",
        "ResNet50's arithmetic when extracting features; auto: bfloat16 where the CPU computes "
        "it natively and its features agree with float32 ones, else float32",
        flag="--precision",
        choices=PRECISIONS,
    )

    def __post_init__(self) -> None:
        validate_precision(self.precision)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not '{self.mode}'")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")
        for rate in (self.learning_rate, self.fine_tune_learning_rate):
            if not 0 < rate < float("inf"):  # NaN fails this too
                raise ValueError(f"a learning rate must be a positive number, not {rate}")
        if not 0.0 <= self.dropout < 1.0:  # NaN fails this too
            raise ValueError(f"the dropout rate must be from 0 to below 1, not {self.dropout}")
        if self.cross_validation < 0 or self.cross_validation == 1:
            raise ValueError(
                f"cross-validation needs 2 folds or more (0: none), not {self.cross_validation}"
            )
        if self.seed < 0:
            raise ValueError(f"the seed must be 0 or more, not {self.seed}")
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


def _setting_field(name: str) -> Field:
    for setting in fields(TrainConfig):
        if setting.name == name:
            return setting
    raise KeyError(f"TrainConfig has no setting '{name}'")


def default_of(name: str) -> Any:
    """Return the default of one TrainConfig setting."""
    return _setting_field(name).default


def help_of(name: str) -> str:
    """Return the help text of one TrainConfig setting."""
    return _setting_field(name).metadata["help"]


@dataclass(frozen=True)
class SettingOption:
    """How the command line spells one TrainConfig setting."""

    name: str  # the TrainConfig field
    flag: str
    type: type
    default: Any
    help: str
    metavar: str | None
    choices: tuple[str, ...] | None


def setting_options() -> tuple[SettingOption, ...]:
    """Return every TrainConfig setting as a command-line option, in the fields' order."""
    return tuple(
        SettingOption(
            f.name,
            f.metadata["flag"],
            type(f.default),
            f.default,
            f.metadata["help"],
            f.metadata["metavar"],
            f.metadata["choices"],
        )
        for f in fields(TrainConfig)
    )


@dataclass(frozen=True)
class ResolvedConfig:
    """A TrainConfig with what it left open decided: the weights it means on this machine."""

    config: TrainConfig
    weights: WeightsChoice


def resolve_config(config: TrainConfig) -> ResolvedConfig:
    """Return the config with its weights resolved (the one reading of `weights`).

    Raises WeightsError when a weights file is named but missing. '$FLOWER_LENS_WEIGHTS=none'
    with weights 'imagenet' resolves to random weights, and the run is labelled so.
    """
    return ResolvedConfig(config, resolve_weights(config.weights))
