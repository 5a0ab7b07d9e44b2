"""Errors a user can cause, each with a message a person can act on."""


class FlowerLensError(Exception):
    """Base class: the CLI and the pages show these as one line, never a traceback."""


class DatasetError(FlowerLensError):
    """The dataset cannot be found, downloaded or used."""


class ImageError(FlowerLensError):
    """One image file cannot be read."""


class WeightsError(FlowerLensError):
    """The ImageNet weights for ResNet50 cannot be had."""


class RunError(FlowerLensError):
    """A training run cannot be found, loaded or used."""


class AuditError(FlowerLensError):
    """A dataset's audit could not be done (a check of cleanlab's failed)."""


class TrainingCancelled(FlowerLensError):
    """A job was stopped by the user: a training before any epoch completed, or an export."""


class TrainingError(FlowerLensError):
    """Training ran but produced no usable model (it diverged)."""


class FeatureError(FlowerLensError):
    """Features could not be computed (a cluster's worker failed, say)."""
