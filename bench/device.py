"""`python -m bench --device`: a short check (a few minutes) of what this machine's device does
for Flower Lens: the device TensorFlow computes on (a GPU where it sees one), ResNet50's
feature extraction throughput there in float32 and in bfloat16, and how closely bfloat16's
features agree with float32's (the check the app makes before it uses bfloat16)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PHOTOS = 256
BATCH = 64
REPEATS = 3


@dataclass(frozen=True)
class DeviceCheck:
    """What the device check measured."""

    device: str
    gpus: tuple[str, ...]
    photos: int
    batch_size: int
    float32_photos_per_s: float
    bfloat16_photos_per_s: float
    bfloat16_cosine_min: float  # lowest cosine of a photo's bfloat16 features to float32's
    bfloat16_used_by_auto: bool  # whether 'auto' would use bfloat16 on these weights


def _rate(extractor, images, repeats: int) -> float:
    extractor.run(images[:BATCH])  # traced and warmed, not timed
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(images), BATCH):
            extractor.run(images[start : start + BATCH])
        best = min(best, time.perf_counter() - started)
    return len(images) / best


def check_device(photos: int = PHOTOS, repeats: int = REPEATS) -> DeviceCheck:
    """Measure extraction on this machine's device; return the figures."""
    import numpy as np

    from bench.photos import make_photos
    from flower_model.data.images import load_rgb
    from flower_model.features.extractor import FeatureExtractor
    from flower_model.model.backbone import INPUT_SIZE, build_resnet50, resolve_weights
    from flower_model.model.devices import compute_device, prepare_gpus
    from flower_model.model.precision import MIN_BF16_COSINE, cosine_similarity

    gpus = tuple(prepare_gpus())
    folder = Path(tempfile.mkdtemp(prefix="flower-lens-device-"))
    made = make_photos(folder, photos)
    images = np.stack([load_rgb(p, size=INPUT_SIZE) for p in made.paths])
    resnet = build_resnet50(resolve_weights("none"), seed=42)
    exact, fast = FeatureExtractor(resnet, "float32"), FeatureExtractor(resnet, "bfloat16")
    cosine = float(cosine_similarity(exact.run(images[:BATCH]), fast.run(images[:BATCH])).min())
    return DeviceCheck(
        device=compute_device(),
        gpus=gpus,
        photos=photos,
        batch_size=BATCH,
        float32_photos_per_s=_rate(exact, images, repeats),
        bfloat16_photos_per_s=_rate(fast, images, repeats),
        bfloat16_cosine_min=cosine,
        bfloat16_used_by_auto=cosine >= MIN_BF16_COSINE,
    )


def report(check: DeviceCheck) -> str:
    """Return the figures for people."""
    speedup = check.bfloat16_photos_per_s / check.float32_photos_per_s
    verdict = "used by 'auto'" if check.bfloat16_used_by_auto else "NOT used by 'auto'"
    return (
        f"device     {check.device}\n"
        f"float32    {check.float32_photos_per_s:8.1f} photos/s  (ResNet50, batch "
        f"{check.batch_size}, {check.photos} photos, best of {REPEATS})\n"
        f"bfloat16   {check.bfloat16_photos_per_s:8.1f} photos/s  ({speedup:.2f}× float32)\n"
        f"agreement  lowest cosine of bfloat16 to float32 features {check.bfloat16_cosine_min:.6f} "
        f"(bfloat16 {verdict})\n"
    )


def main(out: Path | None = None) -> int:
    check = check_device()
    if out is not None:
        out.write_text(json.dumps(asdict(check), indent=1) + "\n")
    print(report(check), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
