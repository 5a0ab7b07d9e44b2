"""Cold start: a fresh process to the first photo classified, and the home page's imports."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench.subprocesses import run_probe

# What the home page imports from the library; none of it may bring TensorFlow.
HOME_MODULES = (
    "flower_model.data.dataset",
    "flower_model.runs.store",
    "flower_model.model.backbone",
    "flower_model.ui.figures",
)


@dataclass(frozen=True)
class ColdStart:
    """Seconds from spawning Python to the first photo classified by a saved run (medians)."""

    samples: int
    ready_seconds: float  # spawn to first prediction
    interpreter_seconds: float  # spawn to the probe's first line
    import_seconds: float  # TensorFlow, Keras and flower_model.inference.predict
    load_seconds: float  # Classifier.load: the saved model.keras
    first_classify_seconds: float  # the first classify_one, tracing included
    peak_rss_mb: float  # the classify path's peak resident memory (largest sample)
    ready_each: tuple[float, ...]


@dataclass(frozen=True)
class HomeImport:
    """Importing the home page's library modules in a fresh process (medians)."""

    samples: int
    modules: tuple[str, ...]
    import_seconds: float  # the imports alone
    process_seconds: float  # spawn to exit, interpreter start-up included
    tensorflow_imported: bool  # in any sample
    peak_rss_mb: float


def measure_cold_start(run_id: str, photo: Path, times: int) -> ColdStart:
    """Return the cold start of the classify path, `times` fresh processes in a row."""
    answers = []
    for _ in range(times):
        answer, _ = run_probe(
            "cold-start", "--run", run_id, "--photo", str(photo), "--spawned", repr(time.time())
        )
        answers.append(answer)

    def median(key: str) -> float:
        return statistics.median(a[key] for a in answers)

    return ColdStart(
        samples=times,
        ready_seconds=median("ready_seconds"),
        interpreter_seconds=median("interpreter_seconds"),
        import_seconds=median("import_seconds"),
        load_seconds=median("load_seconds"),
        first_classify_seconds=median("first_classify_seconds"),
        peak_rss_mb=max(a["peak_rss_mb"] for a in answers),
        ready_each=tuple(a["ready_seconds"] for a in answers),
    )


def measure_home_import(times: int) -> HomeImport:
    """Return the import time of the home page's modules, `times` fresh processes in a row."""
    answers = [run_probe("home-import", *HOME_MODULES) for _ in range(times)]
    return HomeImport(
        samples=times,
        modules=HOME_MODULES,
        import_seconds=statistics.median(a["seconds"] for a, _ in answers),
        process_seconds=statistics.median(wall for _, wall in answers),
        tensorflow_imported=any(a["tensorflow_imported"] for a, _ in answers),
        peak_rss_mb=max(a["peak_rss_mb"] for a, _ in answers),
    )
