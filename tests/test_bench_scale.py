"""`make bench-scale`'s pieces that need no large dataset: its photos, its datasets of hard
links, its table. Not a timing test (the stages' run is `python -m bench.scale`'s)."""

from __future__ import annotations

from pathlib import Path

from bench import scale


def test_photos_are_made_once_and_datasets_hold_exactly_their_photos(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    scale.ensure_photos(photos, 12, lambda message: None)
    made = sorted(photos.rglob("*.jpg"))
    assert len(made) == 12 and not list(photos.rglob("*.partial"))
    before = {p: p.stat().st_mtime_ns for p in made}
    scale.ensure_photos(photos, 12, lambda message: None)  # nothing missing: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in made} == before
    folder = tmp_path / "datasets" / "8"
    scale.link_dataset(photos, folder, 8)
    linked = sorted(folder.rglob("*.jpg"))
    assert len(linked) == 8 and all(p.stat().st_nlink == 2 for p in linked)
    scale.link_dataset(photos, folder, 5)  # a smaller size: the rest unlinked
    assert len(list(folder.rglob("*.jpg"))) == 5


def _size(size: int, seconds: float, computed: int, written: int = 0) -> dict:
    stage = {"seconds": seconds, "peak_mb": 900.0, "photos": size}
    return {
        "size": size,
        "stages": {
            "scan": stage,
            "rescan": {**stage, "read": size // 100},
            "extraction": {
                **stage,
                "computed": computed,
                "cached": size - computed,
                "written_by_bench": written,
                "precision": "bfloat16",
            },
            "fit": {**stage, "peak_mb": 5000.0},
            "page home": {"median": 2.5, "first_seconds": 3.0, "exceptions": []},
            "run list": {"seconds": 0.01},
            "disk": {"ratio": 1.07},
        },
    }


def test_the_table_gives_each_stage_per_photo_beside_its_targets() -> None:
    report = {
        "targets": scale.TARGETS,
        "sizes": [
            _size(4000, 4.0, 4000),
            _size(20_000, 24.0, 16_000),
            _size(100_000, 200.0, 0, written=80_000),
        ],
    }
    text = scale.table(report)
    # Scan: 1 ms a photo at 4,000, 2 ms at 100,000: twice, over the 1.3 allowed.
    scan = next(line for line in text.splitlines() if line.startswith("| scan |"))
    assert "2.00 **no**" in scan and "1.000 ms" in scan and "2.000 ms" in scan
    fit = next(line for line in text.splitlines() if line.startswith("| fit |"))
    assert fit.endswith("5,000 **no** |")  # over the 4 GB peak
    assert "| home | " + " | ".join(["2.50 s (first 3.0 s)"] * 3) + " | **no** |" in text
    assert "80,000 of them written by the bench" in text
    # Extraction per photo ResNet50 computed: 1 ms at 4,000, 1.5 ms at 20,000 (none at 100,000).
    extraction = next(line for line in text.splitlines() if line.startswith("| extraction |"))
    assert "1.50 **no** (at 20,000: ResNet50 ran on no more)" in extraction
