"""cleanlab's Datalab on a dataset's features: run quietly, failures raised, not printed."""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING

import numpy as np

from flower_model.core.errors import AuditError
from flower_model.model.scaling import standardised

if TYPE_CHECKING:
    from cleanlab import Datalab

# Neighbours each photo is compared with (cleanlab's default), fewer in a smaller dataset.
NEIGHBOURS = 10


def find_issues(
    features: np.ndarray,
    issue_types: dict[str, dict],
    labels: np.ndarray | None = None,
    pred_probs: np.ndarray | None = None,
) -> Datalab:
    """Return a Datalab that has looked for these issues, on the standardised features.

    cleanlab prints a check that fails and goes on; here it raises AuditError with what
    cleanlab said, so that a finding is never silently missing.
    """
    from cleanlab import Datalab

    count = len(features)
    if count < 3:
        raise AuditError(f"finding issues needs at least three photos, not {count}")
    k = min(NEIGHBOURS, count - 1)
    types = {
        name: {**({"k": k} if name in ("near_duplicate", "outlier") else {}), **options}
        for name, options in issue_types.items()
    }
    given = np.zeros(count, dtype=int) if labels is None else np.asarray(labels)
    lab = Datalab(data={"label": given}, label_name="label", verbosity=0)
    said = io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
        lab.find_issues(features=standardised(features), pred_probs=pred_probs, issue_types=types)
    missing = [name for name in types if name not in lab.info]
    if missing:
        text = " ".join(said.getvalue().split())
        raise AuditError(f"cleanlab could not check {', '.join(missing)}: {text}")
    return lab
