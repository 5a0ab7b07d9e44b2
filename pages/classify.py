"""Classify: drop photos in and see the softmax bars; the model is loaded once per server."""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
import streamlit as st
from PIL import Image

from flower_model.core.errors import FlowerLensError
from flower_model.data.images import load_preview, load_rgb
from flower_model.inference.explain import overlay
from flower_model.inference.predict import Failure, Prediction
from flower_model.metrics.calibration import CONFIDENT, MIN_SUPPORT, TARGET_PRECISION, Threshold
from flower_model.model.backbone import INPUT_SIZE
from flower_model.runs.store import RunInfo, list_runs
from flower_model.ui import figures, session


class Upload(NamedTuple):
    """A photo a visitor gave, and the key of its bytes."""

    name: str
    data: bytes
    digest: str

    @classmethod
    def of(cls, name: str, data: bytes) -> Upload:
        """Return an upload with its bytes' SHA-256."""
        return cls(name, data, hashlib.sha256(data).hexdigest())


Result = Prediction | Failure
# Photos classified per model call when many are dropped at once.
BATCH = 16
# Results drawn per page, newest first.
PER_PAGE = 12
# How many results a visitor's session keeps (each is a few hundred bytes).
REMEMBERED = 1000


@st.cache_data(max_entries=256, show_spinner=False)
def preview_jpeg(digest: str, name: str, _data: bytes) -> bytes:
    """Return an upload's preview, upright and at most PREVIEW_SIDE, as JPEG bytes: decoded
    once per server, and small to keep (a decoded preview would be ~1 MB)."""
    buffer = io.BytesIO()
    Image.fromarray(load_preview(_data, name)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@st.cache_data(max_entries=32, show_spinner=False)
def gradcam_overlay(run_id: str, digest: str, class_index: int, _data: bytes) -> np.ndarray:
    """Return the photo at the model's size with Grad-CAM's heatmap for one class over it."""
    image = load_rgb(_data, size=INPUT_SIZE)
    return overlay(image, session.gradcam(run_id)(image, class_index))


def classify_new(run_id: str, uploads: list[Upload]) -> dict[str, Result]:
    """Return this session's results by upload digest, classifying only the photos not seen
    before, in batches, with a progress bar: an upload never makes earlier ones run again."""
    results: OrderedDict[str, Result] = st.session_state.setdefault(
        f"results-{run_id}", OrderedDict()
    )
    pending = {u.digest: (u.name, u.data) for u in uploads if u.digest not in results}
    if pending:
        bar = st.progress(0.0, text=f"Classifying {len(pending)} photo(s)…")
        classifier = session.classifier(run_id)
        stream = classifier.classify_stream(list(pending.values()), batch_size=BATCH)
        for done, (digest, result) in enumerate(zip(pending, stream, strict=True), start=1):
            results[digest] = result
            bar.progress(done / len(pending), text=f"Classified {done} of {len(pending)}")
        bar.empty()
    for upload in uploads:
        results.move_to_end(upload.digest)
    # Forget the oldest results, but never one of the photos on the page now.
    current = {upload.digest for upload in uploads}
    for digest in [d for d in results if d not in current][: max(0, len(results) - REMEMBERED)]:
        del results[digest]
    return results


class Shown(NamedTuple):
    """How results are shown: where the model looked, and with calibrated probabilities."""

    explain: bool
    temperature: float | None  # None: the model's own probabilities
    threshold: Threshold | None  # None: the run has none of its own (CONFIDENT is used)


def threshold_ui(info: RunInfo, calibrated: bool) -> Threshold | None:
    """Say below what a photo is called not sure, in the run's own numbers; return it."""
    calibration = info.metadata.calibration
    if calibration is None:
        return None
    threshold = calibration.threshold_scaled if calibrated else calibration.threshold
    if threshold is None:
        st.caption(
            f"No threshold kept {TARGET_PRECISION:.0%} of this run's {calibration.count} "
            f"held-out photos right with {MIN_SUPPORT} or more above it: a photo is called "
            f"**not sure** below the default {CONFIDENT:.0%}."
        )
        return None
    below = (
        f"below it, they were right only {threshold.below_accuracy:.0%} of the time"
        if threshold.below_accuracy is not None
        else "none of them fell below it"
    )
    st.caption(
        f"A photo is called **not sure** below {figures.percent(threshold.threshold)}: on this "
        f"run's held-out photos, {threshold.precision:.0%} of those above it were right; {below}."
    )
    return threshold


def model_ui(runs: list[RunInfo]) -> tuple[RunInfo, Shown]:
    """Draw the model picker and the switches; return the run and how to show results."""
    labels = {
        r.run_id: f"{r.describe()} · by {session.trained_by(r.owner)}"
        + (" · latest" if r is runs[0] else "")
        for r in runs
    }
    left, right = st.columns([3, 1])
    run_id = left.selectbox("Model", list(labels), format_func=labels.__getitem__)
    explain = right.toggle("Show where it looked (Grad-CAM)")
    info = next(r for r in runs if r.run_id == run_id)
    calibration = info.metadata.calibration
    temperature = calibration.temperature if calibration is not None else None
    if temperature is not None and not right.toggle(
        "Calibrated probabilities",
        help=f"Divide the logits by the temperature fitted on this run's held-out photos "
        f"({temperature:.2f}), so that 80 % means right about 80 % of the time. The model "
        "itself is unchanged.",
    ):
        temperature = None
    threshold = threshold_ui(info, temperature is not None)
    if not info.transfer_learning:
        st.warning(
            "This model was trained with **no transfer learning** (random ResNet50 weights): "
            "expect many wrong guesses.",
            icon=":material/casino:",
        )
    return info, Shown(explain, temperature, threshold)


def uploads_ui() -> list[Upload]:
    """Draw the upload box and the camera switch; return the photos given."""
    photos = session.photos_ui(
        "Drop flower photos here",
        key="classify_photos",
        help="Phone photos of any size are fine: they are decoded at a reduced scale.",
    )
    return [Upload.of(name, data) for name, data in photos]


def result_ui(info: RunInfo, upload: Upload, result: Result, shown: Shown, key: str) -> None:
    """Draw one photo with its softmax bars (and where the model looked, if asked)."""
    name, data, digest = upload
    with st.container(border=True):
        if isinstance(result, Failure):
            st.error(result.message, icon=":material/broken_image:")
            return
        limit = shown.threshold.threshold if shown.threshold else CONFIDENT
        if shown.temperature is not None:
            result = result.scaled(shown.temperature, limit)
        photo_col, bars_col = st.columns([1, 2])
        if shown.explain:
            index = info.class_names.index(result.top_class)
            photo_col.image(
                gradcam_overlay(info.run_id, digest, index, data),
                caption=f"{name} · where it looked for {result.top_class}",
                width="stretch",
            )
        else:
            photo_col.image(preview_jpeg(digest, name, data), caption=name, width="stretch")
        with bars_col:
            sure = result.confident
            st.markdown(
                f"### {result.top_class}{'' if sure else '?'} · {result.top_probability:.0%}"
            )
            if not sure:
                st.warning(not_sure_text(shown.threshold), icon=":material/help:")
            st.plotly_chart(
                figures.probability_bars(info.class_names, np.asarray(result.probabilities)),
                width="stretch",
                key=f"bars-{key}",
            )


def not_sure_text(threshold: Threshold | None) -> str:
    """Return what a photo below the not-sure threshold means, in the run's own numbers."""
    if threshold is None:
        return f"No class reaches {CONFIDENT:.0%}: this may not be one of these flowers."
    right = (
        f"on this run's held-out photos, those below it were right only "
        f"{threshold.below_accuracy:.0%} of the time"
        if threshold.below_accuracy is not None
        else "no held-out photo was this unsure"
    )
    limit = figures.percent(threshold.threshold)
    return f"Below {limit}: {right}. This may not be one of these flowers."


# The camera asked for: small frames at a modest rate, which 2 cores classify as they come.
CAMERA = {"video": {"width": 320, "height": 240, "frameRate": {"max": 15}}, "audio": False}
LIVE_REDRAW_SECONDS = 0.25
VIDEO_TYPES = ["mp4", "webm", "mov", "mkv", "avi", "y4m"]
MODES = ["Photos", "Live camera", "A video file"]


def live_stream(info: RunInfo, explain: bool, key: str):
    """Return this visitor's live classifier for a run (one per stream), its Grad-CAM
    switch set as the page's."""
    from flower_model.inference.live import LiveClassifier

    stream = st.session_state.get(key)
    classifier = session.classifier(info.run_id)
    if stream is None or stream.classifier is not classifier:
        explainer = session.gradcam(info.run_id) if explain else None
        stream = LiveClassifier(classifier, explainer, classifier.fast_precision)
        with st.spinner("Preparing the model for the live view…"):
            stream.warm_up()
        st.session_state[key] = stream
    if explain and stream.explainer is None:
        stream.explainer = session.gradcam(info.run_id)
    stream.explain = explain
    return stream


def live_bars_ui(info: RunInfo, stream, shown: Shown) -> None:
    """Redraw the latest frame's top class and bars in place while the stream plays."""

    @st.fragment(run_every=LIVE_REDRAW_SECONDS)
    def bars() -> None:
        latest = stream.latest()
        if latest is None:
            st.caption("Waiting for the first frame…")
            return
        limit = shown.threshold.threshold if shown.threshold else CONFIDENT
        result = Prediction("frame", info.class_names, latest.probabilities, limit)
        if shown.temperature is not None:
            result = result.scaled(shown.temperature, limit)
        st.markdown(f"### {result.top_class}{'' if result.confident else '?'} · "
                    f"{result.top_probability:.0%}")  # fmt: skip
        if not result.confident:
            st.caption(not_sure_text(shown.threshold))
        st.html(figures.probability_rows_html(info.class_names, result.probabilities))
        st.caption(
            f"{stream.rate():.1f} frames classified per second · the bars' frame reached the "
            f"server {latest.age() * 1000:.0f} ms ago · frame {latest.number:,} · "
            f"{stream.precision}"
        )

    bars()


def live_ui(info: RunInfo, shown: Shown, source: str) -> None:
    """Classify what the camera sees (or a video file plays), frame by frame: the bars update
    in place; frames the CPU cannot keep up with are dropped, never queued."""
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    try:
        ice = session.ice_servers()
    except FlowerLensError as exc:
        session.show_error(exc)
        return
    player = None
    if source == "A video file":
        video = st.file_uploader("A video of flowers", type=VIDEO_TYPES, key="live-video")
        if video is None:
            st.info("Drop a video file: it plays here, classified frame by frame.")
            return
        path = session.kept_upload(video.name, video.getvalue())
        player = live_player(path)
    stream = live_stream(info, shown.explain, key=f"live-classifier-{source}-{info.run_id}")

    def classify(frame):
        import av

        rgb = frame.to_ndarray(format="rgb24")
        shown_frame = stream.frame(rgb)
        if shown_frame is rgb:
            return frame
        return av.VideoFrame.from_ndarray(shown_frame, format="rgb24")

    left, right = st.columns([3, 2])
    with left:
        context = webrtc_streamer(
            key=f"live-{source}-{info.run_id}",
            mode=WebRtcMode.SENDRECV if player is None else WebRtcMode.RECVONLY,
            player_factory=player,
            video_frame_callback=classify,
            media_stream_constraints=CAMERA,
            rtc_configuration={"iceServers": ice},
            async_processing=True,  # the latest frame wins: none is queued behind the CPU
        )
    with right:
        if context.state.playing:
            live_bars_ui(info, stream, shown)
        else:
            stream.reset()  # a next START shows its own frames, never this stream's last
            st.caption(
                "Click **START** (and allow the camera): the bars follow the flower in view."
                if player is None
                else "Click **START** to play the video, classified as it plays."
            )


def live_player(path):
    """Return a factory of aiortc's player of a video file, looping (a stream each START)."""
    from aiortc.contrib.media import MediaPlayer

    return lambda: MediaPlayer(str(path), loop=True)


def shown_ui(uploads: list[Upload]) -> list[tuple[int, Upload]]:
    """Return the uploads to draw, newest first, a page at a time: a page costs the same to
    draw after 300 photos as after one."""
    numbered = list(enumerate(uploads))[::-1]
    pages = -(-len(numbered) // PER_PAGE)
    page = 1
    if pages > 1:
        left, right = st.columns([1, 3])
        page = left.number_input("Page", min_value=1, max_value=pages, value=1, step=1)
        right.caption(f"{len(uploads)} photos, newest first, {PER_PAGE} a page")
    return numbered[(page - 1) * PER_PAGE : page * PER_PAGE]


session.through_app_navigation()
st.title("Classify")
runs = list_runs()
if not runs:
    session.no_run_hint()
    st.stop()
info, shown = model_ui(runs)
session.prepare_classifier(info.run_id)  # loaded while the visitor picks a photo
mode = st.segmented_control("Classify", MODES, default=MODES[0], key="classify-mode")
if mode and mode != MODES[0]:
    live_ui(info, shown, mode)
    st.stop()
uploads = uploads_ui()
if not uploads:
    st.info(f"The model knows: {', '.join(info.class_names)}. Drop a photo of one of them.")
    st.stop()
try:
    results = classify_new(info.run_id, uploads)
except FlowerLensError as exc:
    session.show_error(exc)
    st.stop()
for i, upload in shown_ui(uploads):
    result_ui(info, upload, results[upload.digest], shown, key=f"{i}-{upload.name}")
