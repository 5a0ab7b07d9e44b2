"""Progress on stderr for people: a live bar on a terminal, whole lines in a pipe or a log."""

from __future__ import annotations

import sys
import time
from pathlib import Path


class Progress:
    """Progress of one phase on stderr: a live bar on a terminal; in a pipe or a file, whole
    lines, at most one every LINE_SECONDS, and the last one always."""

    LINE_SECONDS = 5.0

    def __init__(self, desc: str, total: int, unit: str = "photos") -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.last_line = time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def update(self, done: int, note: str = "") -> None:
        """Show that `done` of the total are done, with an optional note."""
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix_str(note, refresh=False)
            self.bar.refresh()
            return
        now = time.monotonic()
        if done < self.total and now - self.last_line < self.LINE_SECONDS:
            return
        self.last_line = now
        share = done / self.total if self.total else 1.0
        line = f"{self.desc}: {done:,}/{self.total:,} {self.unit} ({share:.0%})"
        print(line + (f", {note}" if note else ""), file=sys.stderr)

    def write(self, line: str) -> None:
        """Print a whole line without breaking the bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        """End the bar (a terminal's stays on screen, complete)."""
        if self.bar is not None:
            self.bar.close()


def scan_with_progress(path: Path):
    from flower_model.data.dataset import scan_dataset

    bars: list[Progress] = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(Progress("checking photos", total))
        bars[0].update(done)

    try:
        return scan_dataset(path, progress=progress)
    finally:
        for bar in bars:
            bar.close()
