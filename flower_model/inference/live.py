"""Live classification: a camera's (or a video file's) frames classified one at a time with a
run's classifier, the same way as a dropped photo (model_sized, then the folded serving
model), the latest result kept for whoever draws it, and Grad-CAM overlaid at a lower rate.

The stream's frames come from streamlit-webrtc's processing thread, which hands over the
latest frame and drops those that arrived while the previous one was classified: when the
CPU is behind, frames are dropped, never queued, so the bars never fall behind the camera.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from flower_model.data.images import model_sized
from flower_model.model.backbone import INPUT_SIZE

if TYPE_CHECKING:
    from flower_model.inference.explain import GradCam
    from flower_model.inference.predict import Classifier

# The frame rate is counted over this many seconds of the latest frames.
RATE_WINDOW_SECONDS = 2.0
# Grad-CAM costs about three classifications: it is redone at most this often, and the
# overlay of the last one is kept on the frames between.
EXPLAIN_EVERY_SECONDS = 1.0
WARM_UP_FRAMES = 10


@dataclass(frozen=True)
class FrameResult:
    """The latest classified frame: its probabilities, when it reached the classifier and
    when its probabilities were ready (time.monotonic), and how many frames came before."""

    probabilities: tuple[float, ...]
    arrived: float
    classified: float
    number: int

    def age(self, now: float | None = None) -> float:
        """Return the seconds since the frame reached the classifier."""
        return (time.monotonic() if now is None else now) - self.arrived


def frame_input(frame: np.ndarray) -> np.ndarray:
    """Return a video frame (H, W, 3 uint8 RGB) as the model takes it: size×size, as a
    dropped photo is resized after decoding."""
    return np.asarray(model_sized(Image.fromarray(frame), INPUT_SIZE), dtype=np.uint8)


class LiveClassifier:
    """Classifies the frames of one stream; thread-safe: frames come from the stream's
    thread, results are read from the page's."""

    def __init__(
        self, classifier: Classifier, explainer: GradCam | None = None, precision: str = "float32"
    ) -> None:
        self.classifier = classifier
        self.explainer = explainer
        self.precision = precision
        self.explain = False  # the page's switch, read per frame
        self._lock = threading.Lock()
        self._latest: FrameResult | None = None
        self._times: collections.deque[float] = collections.deque(maxlen=256)
        self._heat: np.ndarray | None = None
        self._explained = -float("inf")

    def frame(self, rgb: np.ndarray, arrived: float | None = None) -> np.ndarray:
        """Classify one frame; return the frame to show (overlaid with Grad-CAM when asked)."""
        arrived = time.monotonic() if arrived is None else arrived
        image = frame_input(rgb)
        row = self.classifier.probabilities(image[np.newaxis], self.precision)[0]
        done = time.monotonic()
        with self._lock:
            number = self._latest.number + 1 if self._latest is not None else 1
            self._latest = FrameResult(tuple(float(p) for p in row), arrived, done, number)
            self._times.append(done)
        if not self.explain or self.explainer is None:
            return rgb
        if done - self._explained >= EXPLAIN_EVERY_SECONDS:
            self._heat = self.explainer(image, int(np.argmax(row)))
            self._explained = time.monotonic()
        return self._overlaid(rgb)

    def _overlaid(self, rgb: np.ndarray) -> np.ndarray:
        from flower_model.inference.explain import overlay

        if self._heat is None:
            return rgb
        size = (rgb.shape[1], rgb.shape[0])
        heat = Image.fromarray(self._heat.astype(np.float32), mode="F").resize(size)
        return overlay(rgb, np.asarray(heat))

    def warm_up(self, frames: int = WARM_UP_FRAMES) -> None:
        """Classify a few blank frames, uncounted: the first calls of a model in a process
        prepare its arithmetic (measured: the first ten frames took two to three times as
        long as the next)."""
        blank = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        for _ in range(frames):
            self.classifier.probabilities(blank[np.newaxis], self.precision)

    def reset(self) -> None:
        """Forget the last stream's frames (it stopped): the next stream's bars wait for its
        own first frame instead of showing the last one of the stream before."""
        with self._lock:
            self._latest = None
            self._times.clear()
            self._heat = None

    def latest(self) -> FrameResult | None:
        """Return the latest classified frame, if any."""
        with self._lock:
            return self._latest

    def rate(self, now: float | None = None) -> float:
        """Return the frames classified per second over the last RATE_WINDOW_SECONDS."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [t for t in self._times if now - t <= RATE_WINDOW_SECONDS]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)
