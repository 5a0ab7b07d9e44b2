"""Evaluate a saved run on its own held-out photos, as they were when it was trained."""

from __future__ import annotations

from collections.abc import Callable

from flower_model.core.errors import RunError
from flower_model.data.dataset import Dataset, records_for
from flower_model.data.decisions import as_recorded
from flower_model.inference.predict import Classifier
from flower_model.metrics.evaluate import Evaluation, evaluate_predictions
from flower_model.runs.store import get_run


def evaluate_run(
    run_id: str,
    dataset: Dataset,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Return a saved run's metrics on its own held-out split of the dataset."""
    info = get_run(run_id)
    recorded = info.metadata.dataset
    # The photos' classes as the run was trained with them, whatever is decided now.
    dataset = as_recorded(dataset, recorded.excluded, recorded.relabelled)
    if tuple(dataset.class_names) != info.class_names:
        raise RunError(
            f"the dataset's classes {list(dataset.class_names)} are not the run's "
            f"{list(info.class_names)}"
        )
    records = records_for(dataset, info.metadata.split.val)
    classifier = Classifier.load(info.run_id)
    probabilities = classifier.probabilities_of_records(
        dataset, records, progress=progress, precision=info.metadata.measured_precision
    )
    return evaluate_predictions(
        [r.label for r in records], probabilities, info.class_names, [r.path for r in records]
    )
