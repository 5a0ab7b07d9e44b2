"""Extraction shared by processes: a second process waits for the one computing a dataset's
features, then reads them from the cache instead of computing them again."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

HOLDER = """
import sys, time
from flower_model.core.locks import holding
from flower_model.data.dataset import scan_dataset
from tests.conftest import stand_in_features
dataset = scan_dataset(sys.argv[2])
with holding(sys.argv[1]):
    print("held", flush=True)
    time.sleep(1.0)
    stand_in_features(dataset)  # as a process extracting would, batch after batch
"""


def test_a_second_process_waits_for_the_features_then_reads_them(sample, fresh_home) -> None:
    import os

    from flower_model.features.extraction import dataset_features, features_work
    from flower_model.model.backbone import resolve_weights

    work = features_work(sample, resolve_weights("none"), 42, "auto")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, work, str(sample.root)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=os.environ.copy(),
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    phases: list[str] = []
    # No ResNet50 may be built in this test (conftest): the features must come from the cache.
    got = dataset_features(sample, "none", 42, on_phase=phases.append)
    assert holder.wait(timeout=120) == 0
    assert phases == [
        "another process on this workspace is computing these features: waiting for it"
    ]
    assert got.stats.computed == 0 and got.stats.cached == len(sample.records)
    assert got.features.shape == (len(sample.records), 2048)
