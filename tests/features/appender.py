"""A process that appends rows to a store (its own module: a spawned process imports only
this, not the test module's TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def append_rows(folder: str, start: int) -> None:
    """Append 60 keys from `start`, three at a time, each batch's rows its first key."""
    from flower_model.features.store import RowStore

    store = RowStore(Path(folder), 4)
    for i in range(start, start + 60, 3):  # overlapping keys, written in batches of three
        keys = [i.to_bytes(32, "big"), (i + 1).to_bytes(32, "big"), (i + 2).to_bytes(32, "big")]
        store.append(keys, np.full((3, 4), i, dtype=np.float16))
