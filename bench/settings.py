"""How much the benchmark measures: the full run, or the quick smoke run the tests use."""

from __future__ import annotations

from dataclasses import dataclass, replace

from flower_model.model.config import default_of

DEFAULT_BATCH_SIZE = default_of("batch_size")

# The targets the measurements are compared with (limits, not results).
TARGETS = {
    "extraction_ratio_min": 0.9,  # pipeline from JPEGs / raw model call, images per second
    "cached_training_seconds_max": 2.0,  # 20 epochs of the head on 4,000 cached features
    "training_speedup_min": 100.0,  # the seed's plain fit through ResNet50 / training from cache
    "classify_ratio_p50_max": 1.0,  # classify_one on a JPEG / raw model call on a ready tensor
    "growth_per_photo_max": 1.1,  # seconds per photo at the largest N / at the smallest N
    "audit_seconds_max": 30.0,  # audit_dataset on 4,000 cached photos, 5 folds
    "warm_retrain_seconds_max": 8.0,  # `train` command, 4,317 photos cached, spawn to exit
    "cold_training_seconds_max": 90.0,  # the same with an empty workspace
    "app_retrain_seconds_max": 3.0,  # click Train to the final curves, the server warm
}


@dataclass(frozen=True)
class Settings:
    """Sizes and repetitions of every measurement."""

    growth_sizes: tuple[int, ...] = (500, 1000, 2000, 4000)  # photos per growth step
    extraction_images: int = 640  # photos for pipeline vs raw model call
    extraction_repeats: int = 2
    training_images: int = 4000  # cached features the head trains on
    epochs: int = 20
    plain_images: int = 128  # photos for one epoch of the seed's plain fit through ResNet50
    batch_size: int = DEFAULT_BATCH_SIZE  # the app's default
    other_batch_size: int = 32  # head training is also timed at this batch size
    # Each loop's head fit is timed this often, the median kept: this machine's speed drifts
    # by 5-10 % from minute to minute (measured), as much as a change under study.
    head_fit_repeats: int = 5
    variant_images: int = 64  # photos for the arithmetic variants (and their agreement)
    variant_batch_sizes: tuple[int, ...] = (32, 16, 64)  # the first is the one every variant gets
    variant_repeats: int = 3
    classify_repeats: int = 30
    export_formats: tuple[str, ...] = ("keras", "savedmodel", "tflite", "tflite-int8", "onnx")
    export_photos: int = 500  # photos each format is compared with the app on
    export_repeats: int = 30
    cold_starts: int = 3
    home_imports: int = 3
    retrain_images: int = 4317  # the Kaggle flowers set's size: trained on cold, then warm

    @property
    def photos_needed(self) -> int:
        """Return how many photos the measurements read from disk at most."""
        return max(
            (
                *self.growth_sizes,
                self.extraction_images,
                self.plain_images,
                self.variant_images,
                self.retrain_images,
            )
        )


FULL = Settings()
QUICK = Settings(
    growth_sizes=(16,),
    extraction_images=16,
    extraction_repeats=1,
    training_images=160,
    plain_images=8,
    head_fit_repeats=1,
    variant_images=4,
    variant_batch_sizes=(4,),
    variant_repeats=1,
    classify_repeats=1,
    export_formats=("keras",),  # the quickest to export (tflite: about 2x as long)
    export_photos=8,
    export_repeats=2,
    cold_starts=1,
    home_imports=1,
    retrain_images=40,
)


def with_sizes(settings: Settings, sizes: tuple[int, ...]) -> Settings:
    """Return the settings with another growth series."""
    if not sizes or min(sizes) < 5:
        raise ValueError("growth sizes must be at least 5 photos each (one per class)")
    return replace(settings, growth_sizes=tuple(sorted(set(sizes))))
