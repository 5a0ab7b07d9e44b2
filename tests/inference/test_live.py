"""Live frames: the same pixels as a dropped photo, the latest result kept, the rate counted,
Grad-CAM redone at most once a second."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from flower_model.data.images import load_rgb
from flower_model.inference import live
from flower_model.inference.live import LiveClassifier, frame_input


class Counting:
    """A classifier that names the frame's brightest channel, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def probabilities(self, images: np.ndarray, precision: str = "float32") -> np.ndarray:
        self.calls += 1
        means = images.reshape(len(images), -1, 3).mean(axis=1)
        return np.eye(3)[means.argmax(axis=1)]


def frame(colour: tuple[int, int, int], size=(480, 640)) -> np.ndarray:
    generator = np.random.default_rng(sum(colour))
    noise = generator.integers(0, 30, (*size, 3))
    return np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)


def test_a_frame_reaches_the_model_as_the_same_photo_dropped_would() -> None:
    shot = frame((200, 120, 40))
    png = io.BytesIO()
    Image.fromarray(shot).save(png, format="PNG")
    np.testing.assert_array_equal(frame_input(shot), load_rgb(png.getvalue(), size=224))


def test_the_latest_frame_wins_and_the_rate_is_counted() -> None:
    model = Counting()
    stream = LiveClassifier(model)
    assert stream.latest() is None and stream.rate() == 0.0
    for colour in ((250, 0, 0), (0, 250, 0), (0, 0, 250)):
        shown = stream.frame(frame(colour), arrived=1.0)
        assert shown.shape == (480, 640, 3)
    latest = stream.latest()
    assert latest is not None and latest.number == 3 and np.argmax(latest.probabilities) == 2
    assert latest.classified >= latest.arrived == 1.0 and model.calls == 3
    assert stream.rate() > 0


def test_a_stopped_streams_frames_are_forgotten_before_the_next() -> None:
    stream = LiveClassifier(Counting())
    for colour in ((250, 0, 0), (0, 250, 0)):
        stream.frame(frame(colour))
    stream.reset()
    assert stream.latest() is None and stream.rate() == 0.0
    stream.frame(frame((0, 0, 250)))
    latest = stream.latest()
    assert latest is not None and latest.number == 1 and np.argmax(latest.probabilities) == 2


def test_grad_cam_is_redone_at_most_once_a_second(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(live.time, "monotonic", lambda: clock[0])
    asked = []

    def explainer(image: np.ndarray, index: int) -> np.ndarray:
        asked.append(index)
        return np.ones((224, 224))

    stream = LiveClassifier(Counting(), explainer)
    plain = frame((0, 250, 0))
    assert stream.frame(plain) is plain and asked == []  # the switch is off
    stream.explain = True
    for _ in range(5):
        clock[0] += 0.3
        shown = stream.frame(plain)
        assert shown.shape == plain.shape and not np.array_equal(shown, plain)
    assert asked == [1, 1]  # at 0.3 s and at 1.5 s (0.3 + 4 × 0.3 ≥ 1 s later)
