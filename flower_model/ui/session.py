"""Streamlit helpers the pages share: process-wide caches, the chosen dataset, error display."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from flower_model.core import workspace
from flower_model.core.cluster import cluster_address
from flower_model.core.errors import FlowerLensError, ImageError
from flower_model.core.events import TrainingProgress
from flower_model.data import owners, roots
from flower_model.data.dataset import Dataset, find_class_root, scan_dataset
from flower_model.data.images import IMAGE_SUFFIXES, MAX_FILE_BYTES, load_preview, read_bytes
from flower_model.data.roots import DataRoots
from flower_model.service import runtime
from flower_model.service.jobs import Job, JobBoard
from flower_model.service.shelf import Shelf

if TYPE_CHECKING:
    from flower_model.inference.predict import Classifier
    from flower_model.service.cluster_jobs import ClusterJobBoard

DATASET_KEY = "dataset_path"
# A host may turn off the Explore page's default of computing a chosen dataset's features.
BACKGROUND_FEATURES_ENV = "FLOWER_LENS_BACKGROUND_FEATURES"
# The longest side of a photo in a grid (decoded at reduced scale, cached per server).
THUMBNAIL_SIDE = 320
# How often a watched training is redrawn, its progress line and curves together, in seconds:
# each redraw is a fragment run on the server and a page update in every watching browser,
# and redrawing the curves costs a browser more than anything else on the page.
CURVES_SECONDS = 2.0
# How often a watched job without curves (features, an audit, an export) redraws its progress.
PROGRESS_SECONDS = 1.0
# When a job is expected to end before the next redraw, the redraw waits for its end (at most
# its estimated time left and END_WAIT_MARGIN): a training on cached features ends in
# seconds, and its final curves then follow at once, where checking more often would take
# the training's CPU (`make bench`: click to final curves).
END_WAIT_MARGIN = 0.5
# What the pages import, and what a loaded model brings: each set is imported, then frozen out
# of the garbage collector's sight, once per server (`settle_server`).
PAGE_MODULES = ("numpy", "pandas", "plotly.express", "flower_model.ui.figures")
MODEL_MODULES = (
    "tensorflow",
    "keras",
    "flower_model.inference.predict",
    "flower_model.inference.explain",
)
# Set once a session's pages are known to run inside app.py's navigation.
NAVIGATION_CHECKED = "navigation_checked"
# The query parameter that carries a visitor's dataset in the page's link.
DATASET_PARAM = "data"
# A share link's token of an uploaded dataset, and the session's tokens given so far.
SHARE_PARAM = "share"
SHARES_KEY = "share-tokens"


def through_app_navigation() -> None:
    """Make sure a page runs inside app.py's navigation, then return.

    On a fresh server, Streamlit serves the first request the old way when a `pages/` folder
    exists: a link straight to a page (say a shared `/explore?data=…`) would run that page
    alone, without app.py's navigation and page settings, until some visitor opened the home
    page. Each page calls this first: on a session's first run, it switches the server to
    app.py's navigation and reruns, which lands on the same page. (Only then: a rerun later
    would lose the click that caused the run; AppTest, which starts every run the old way,
    relies on that.)
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and not st.session_state.get(NAVIGATION_CHECKED):
        st.session_state[NAVIGATION_CHECKED] = True
        PagesManager.uses_pages_directory = False
        st.rerun()


# This server's job board, made on first use. Kept here rather than in st.cache_resource:
# Streamlit clears that cache for every visitor when any browser sends "clear cache", which
# would drop the board that knows the running jobs (they would go on, unseen).
_boards: list[JobBoard | ClusterJobBoard] = []
_boards_lock = threading.Lock()


def job_board() -> JobBoard | ClusterJobBoard:
    """Return this server's job board: every session sees the same training jobs. With
    $FLOWER_LENS_CLUSTER set, the cluster's board, which every replica on it shares.

    Made once per server, which is when what killed trainings left behind is removed.
    """
    with _boards_lock:
        if not _boards:
            _boards.append(_new_board())
        return _boards[0]


def _new_board() -> JobBoard | ClusterJobBoard:
    from flower_model.data.uploads import expire_uploads
    from flower_model.runs.store import remove_abandoned

    remove_abandoned()
    workspace.remove_stale_temporaries()
    with contextlib.suppress(FlowerLensError, OSError):  # a bad setting is said on upload
        expire_uploads()
    if cluster_address() is not None:
        from flower_model.service.cluster_jobs import ClusterJobBoard

        return ClusterJobBoard()
    return JobBoard()


def forget_job_board() -> None:
    """Close this process's job board and forget it, as a server's restart does (for tests
    and tools): the next `job_board()` makes a new one."""
    with _boards_lock:
        boards, _boards[:] = list(_boards), []
    for board in boards:
        board.close()


def settle_server() -> None:
    """Put what the server's imports leave out of the garbage collector's sight, once: the
    pages' modules at a server's first page run, TensorFlow's at the first page run after
    some page loaded it (a model to classify with). For `app.py`, before the page runs.

    Streamlit collects every generation after each script run, every fragment's included
    (`runner.postScriptGC`). Each collection walked all the objects the imports leave
    (measured: 120,000 and 25 ms after the pages' imports; 283,000 and 67 ms once TensorFlow
    is loaded), several times a second for each page watching a training. Frozen, they are
    no longer walked; objects made later, a loaded model's included, still are.

    Freezing takes everything alive, the one session whose run it is included: that
    session's state is never collected if it ends in a reference cycle, once per freeze
    (twice per server). Before its page runs, no page module or photo of this run is alive.
    """
    runtime.load_before_tensorflow()  # before any page, or a model loading in the background
    settle_imports(PAGE_MODULES)
    if "keras" in sys.modules:
        runtime.keep_keras_session()
    if "tensorflow" in sys.modules:
        settle_imports(MODEL_MODULES)


@st.cache_resource(show_spinner=False)
def settle_imports(modules: tuple[str, ...]) -> tuple[str, ...]:
    """Import `modules`, then freeze every object alive (see `settle_server`); once per
    server for each set. Return the modules."""
    for name in modules:
        importlib.import_module(name)
    runtime.settle_objects()
    return modules


# Classifiers a server keeps loaded (each holds a ResNet50: about 0.2 GB).
CLASSIFIERS_KEPT = 3


@st.cache_resource(show_spinner=False)
def classifiers() -> Shelf[Classifier]:
    """Return this server's shelf of loaded classifiers, by run id."""
    return Shelf(_load_classifier, size=CLASSIFIERS_KEPT)


def _load_classifier(run_id: str) -> Classifier:
    from flower_model.inference.predict import Classifier
    from flower_model.model.backbone import INPUT_SHAPE

    # First, before a model is built: a script run ending meanwhile would clear Keras' session.
    runtime.keep_keras_session()
    loaded = Classifier.load(run_id)
    loaded.probabilities(np.zeros((1, *INPUT_SHAPE), np.uint8))  # its first call prepares it
    return loaded


def prepare_classifier(run_id: str) -> None:
    """Start loading a run's classifier in the background if the server has not loaded it, so
    that it is ready when the visitor's first photo comes; return at once."""
    classifiers().prepare(run_id)


def classifier(run_id: str) -> Classifier:
    """Return a run's classifier, loaded and compiled once per server process; raise the
    load's error (a run that cannot be read) if it fails."""
    shelf = classifiers()
    if shelf.ready(run_id):
        return shelf.get(run_id)
    with st.spinner("Loading the model (once per server)…"):
        return shelf.get(run_id)


@st.cache_resource(max_entries=3, show_spinner=False)
def gradcam(run_id: str):
    """Return the Grad-CAM of a run's classifier, compiled once."""
    from flower_model.inference.explain import GradCam

    return GradCam(classifier(run_id))


def data_roots() -> DataRoots:
    """Return the folders this server reads photos from."""
    return roots.data_roots()


@st.cache_data(ttl=60, show_spinner=False)
def _datasets_under(data_roots: DataRoots) -> tuple[Path, ...]:
    return data_roots.datasets()


def dataset_choices() -> tuple[Path, ...]:
    """Return the dataset folders under the data roots this visitor may open (looked for at
    most once a minute): another visitor's upload only with its share link."""
    me, shares = visitor(), shared_with_me()
    return tuple(f for f in _datasets_under(data_roots()) if owners.may_open(f, me, shares))


def shared_with_me() -> set[str]:
    """Return the share tokens this visitor was given (a link's `?share=`), for this session."""
    tokens: set[str] = st.session_state.setdefault(SHARES_KEY, set())
    given = st.query_params.get(SHARE_PARAM)
    if given:
        tokens.add(given)
    return tokens


def forget_dataset_choices() -> None:
    """Look for dataset folders again on the next request (one was just added or removed)."""
    _datasets_under.clear()


def dataset_path() -> Path | None:
    """Return this visitor's dataset folder: chosen in this session, else named in the link
    (`?data=`), else the server's default ($FLOWER_LENS_DATA). Nothing is shared with other
    visitors."""
    if DATASET_KEY in st.session_state:
        return st.session_state[DATASET_KEY]
    linked = st.query_params.get(DATASET_PARAM)
    if linked:
        return Path(linked)
    from_env = os.environ.get(workspace.DATA_ENV)
    return Path(from_env) if from_env else None


def choose_dataset(path: Path) -> None:
    """Make a folder this visitor's dataset, and put it in the page's link so it can be shared."""
    st.session_state[DATASET_KEY] = path
    st.query_params[DATASET_PARAM] = str(path)


def background_features_default() -> bool:
    """Return whether a chosen dataset's features are computed in the background unless the
    visitor turns it off: yes, unless the server's $FLOWER_LENS_BACKGROUND_FEATURES is 0."""
    return os.environ.get(BACKGROUND_FEATURES_ENV, "").strip().lower() not in ("0", "off", "no")


def current_dataset() -> Dataset | None:
    """Return the chosen dataset scanned, or None if unusable. The first scan of a folder
    checks every photo and shows a progress bar; later ones read the stored scan."""
    path = dataset_path()
    if path is None:
        return None
    try:
        return scan_with_progress(path)
    except FlowerLensError as exc:
        show_error(exc)
        return None


@st.cache_data(max_entries=512, show_spinner=False)
def _thumbnail(path: Path, version: tuple[int, int], side: int) -> np.ndarray:
    return load_preview(read_bytes(path), path.name, max_side=side)


def photo_ui(path: Path, caption: str | None = None, side: int = THUMBNAIL_SIDE) -> None:
    """Draw a photo from disk, decoded by the project's own loader (any mode, any size), if
    it is under the data roots; a file that cannot be shown gets one line instead."""
    if not data_roots().allows(path):
        st.caption(f"{path.name}: outside the folders this server shares, not shown")
        return
    if not owners.may_open(path, visitor(), shared_with_me()):  # a run on someone's upload
        st.caption(f"{path.name}: in another visitor's private upload, not shown")
        return
    try:
        stat = path.stat()
        st.image(
            _thumbnail(path, (stat.st_size, stat.st_mtime_ns), side),
            caption=caption,
            width="stretch",
        )
    except OSError as exc:
        st.caption(f"{path.name}: cannot be read ({exc.strerror or exc})")
    except ImageError as exc:
        st.caption(str(exc))


def photos_ui(label: str, key: str, help: str | None = None) -> list[tuple[str, bytes]]:
    """Draw a box for many photos (its size limit in the label) and a camera switch; return
    each photo given as (name, bytes)."""
    suffixes = [s.lstrip(".") for s in IMAGE_SUFFIXES]
    files = st.file_uploader(
        f"{label} ({', '.join(suffixes)}; up to {MAX_FILE_BYTES // 2**20} MB each)",
        type=suffixes,
        accept_multiple_files=True,
        key=key,
        help=help,
    )
    photos = [(f.name, f.getvalue()) for f in files]
    if st.toggle("Use the camera", key=f"{key}-camera"):
        shot = st.camera_input("Take a photo", key=f"{key}-shot")
        if shot is not None:
            photos.append((shot.name, shot.getvalue()))
    return photos


# The session key of a visitor's identity when they are not signed in.
VISITOR_KEY = "visitor"


def visitor() -> str:
    """Return who is using this page: their account where the host set up sign-in and they
    signed in (`st.user`), else this browser session: what a visitor owns (decisions) is then
    theirs for as long as the session lasts."""
    import secrets

    user = st.user
    if user.get("is_logged_in"):
        return f"account:{user.get('email') or user.get('sub')}"
    return st.session_state.setdefault(VISITOR_KEY, f"session:{secrets.token_hex(8)}")


def sign_in_offered() -> bool:
    """Return whether the host set up sign-in (an `[auth]` section in the server's secrets)."""
    return st.secrets.load_if_toml_exists() and "auth" in st.secrets


def account_ui() -> None:
    """Offer sign-in in the sidebar where the host set it up: a visitor's uploads and
    decisions then follow their account, in any browser; show who is signed in."""
    if not sign_in_offered():
        return
    with st.sidebar:
        if st.user.get("is_logged_in"):
            st.caption(f"Signed in as **{st.user.get('email') or st.user.get('name')}**")
            st.button("Sign out", on_click=st.logout, icon=":material/logout:")
        else:
            st.caption("Sign in to keep your uploads and decisions in any browser.")
            st.button("Sign in", on_click=st.login, icon=":material/login:")


def trained_by(owner: str) -> str:
    """Return who trained a run, as this visitor reads it: you, an account's name, another
    visitor, or the command line."""
    if owner == visitor():
        return "you"
    if owner.startswith("account:"):
        return owner.removeprefix("account:")
    return "another visitor" if owner else "the command line"


def unwritten_caches_ui(slot) -> None:
    """Say in one line, in `slot`, when this server's caches cannot be written (a full disk):
    the pages keep working, computing again what they would have kept."""
    why = workspace.unwritten_caches()
    if why is not None:
        slot.warning(
            f"Caches are not being saved: {why}. The pages keep working, a little slower.",
            icon=":material/hard_drive:",
        )


def show_error(exc: Exception) -> None:
    """Show a user-caused error as one line."""
    st.error(str(exc), icon=":material/error:")


def no_dataset_hint() -> None:
    """Say there is no dataset yet and where to get one."""
    st.info("No dataset yet: choose a folder or download the Kaggle flowers on **Explore**.")
    st.page_link("pages/explore.py", label="Go to Explore", icon=":material/photo_library:")


def no_run_hint() -> None:
    """Say there is no trained model yet and where to train one."""
    st.info("No trained model yet: train one on **Train** (a few seconds on cached features).")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")


def scan_with_progress(path: Path) -> Dataset:
    """Return the dataset scanned, if the data roots allow it, with a progress bar while
    photos are checked the first time."""
    allowed = data_roots()
    root = allowed.check(find_class_root(allowed.check(path)))
    owners.check_may_open(root, visitor(), shared_with_me())
    if owners.is_upload(root):
        owners.touch(root)  # opened: it does not expire
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = st.progress(0.0)
        bar.progress(done / max(total, 1), text=f"Checking photos: {done:,} of {total:,}")

    dataset = scan_dataset(root, progress=progress, allowed=allowed.allows)
    if bar is not None:
        bar.empty()
    return dataset


# What Stop does, per kind of job.
STOP_HELP = {
    "training": "Stops after the current batch; the best completed epoch is kept.",
    "features": "Stops after the current batch; the features computed so far stay cached.",
    "audit": "Stops after the current batch; features stay cached, no audit is kept.",
    "tune": "Stops after the current batch; the trials done are kept.",
    "export": "Stops at the next step (a conversion under way is ended within 30 s); "
    "nothing half-written is kept.",
}


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f" · about {minutes} min {secs:02d} s left" if minutes else f" · about {secs} s left"


def job_progress(job: Job) -> TrainingProgress:
    """Draw a job's phase line and progress bar, and a Stop button while it runs; return the
    progress drawn."""
    progress = job.progress()
    st.progress(progress.fraction, text=f"{progress.phase}{_eta(progress.eta)}")
    if job.running:
        st.button(
            "Stop",
            icon=":material/stop_circle:",
            on_click=job.stop,
            key=f"stop-{job.job_id}",
            help=STOP_HELP.get(job.kind, STOP_HELP["training"]),
        )
    return progress


def job_curves(job: Job, progress: TrainingProgress) -> None:
    """Draw a training job's loss and accuracy curves, epoch by epoch, as `progress` has them."""
    from flower_model.ui import figures

    if job.kind != "training":
        return
    if not job.weights.transfer_learning:
        st.caption(
            "Weights: **none (no transfer learning)** — ResNet50 starts from random weights."
        )
    left, right = st.columns(2)
    for column, metric in ((left, "loss"), (right, "accuracy")):
        column.plotly_chart(
            figures.training_curves(progress.history, metric, progress.fine_tuned_after),
            width="stretch",
            key=f"{job.job_id}-{metric}",
        )


def job_panel(job: Job) -> TrainingProgress:
    """Draw a job as it stands: progress, Stop while it runs, and a training's curves; return
    the progress drawn."""
    progress = job_progress(job)
    job_curves(job, progress)
    return progress


def watch_job(job: Job, draw: Callable[[Job], None] | None = None) -> None:
    """Redraw a running job until it ends, then rerun the page once: its progress line and a
    training's curves every CURVES_SECONDS (PROGRESS_SECONDS for a job without curves), in
    one fragment, so that each redraw is one run on the server and one update in a browser.
    A redraw that expects the job to end before the next one waits for its end instead, so
    that the final curves follow at once. The job runs in the worker process, so watching it
    costs the training nothing but this drawing."""
    seconds = CURVES_SECONDS if job.kind == "training" else PROGRESS_SECONDS

    @st.fragment(run_every=seconds)
    def live() -> None:
        eta = job_panel(job).eta
        if draw is not None:
            draw(job)
        if job.running and eta is not None and eta < seconds:
            job.wait(eta + END_WAIT_MARGIN)  # a wait, not a check: it costs no CPU
        if not job.running:
            st.rerun()

    live()


def dataset_job_ui(
    fingerprint: str, kind: str, failed: str, dataset: Dataset | None = None
) -> bool:
    """Watch a job of a kind running on a dataset, or show how the last one failed or was
    interrupted (with `dataset`, offering to start it again); return whether one is running
    (the caller then draws nothing else)."""
    board = job_board()
    job = board.running_on(fingerprint)
    if job is not None and job.kind == kind:
        watch_job(job)
        return True
    last = board.latest(fingerprint, kind)
    if last is not None and last.status == "failed":
        st.error(f"{failed}: {last.error}", icon=":material/error:")
    if last is not None and last.status == "interrupted":
        interrupted_ui(last, (lambda: board.start_again(last, dataset)) if dataset else None)
    return False


# What each kind of job is called in a sentence.
JOB_NAMES = {
    "training": "A training",
    "tune": "A search of the settings",
    "features": "Computing the features",
    "audit": "An audit",
    "export": "An export",
}


def interrupted_ui(job: Job, start_again: Callable[[], Job] | None = None) -> None:
    """Say that a job was interrupted (the server restarted, or its worker died) and nothing
    half-done was kept; offer to start it again with the same settings."""
    import time

    asked = time.strftime("%H:%M", time.localtime(job.started))
    why = job.error or "interrupted"
    if not why.startswith("interrupted"):
        why = f"interrupted: {why}"
    st.warning(
        f"{JOB_NAMES.get(job.kind, 'A job')}, asked for at {asked}, was {why}.",
        icon=":material/restart_alt:",
    )
    if start_again is not None and st.button(
        "Start it again with the same settings", icon=":material/replay:", key=f"again-{job.job_id}"
    ):
        try:
            start_again()
        except FlowerLensError as exc:
            show_error(exc)
            return
        st.rerun()


def notice_new_job(fingerprint: str, after: Job | None = None) -> None:
    """Rerun the page when a job starts on the dataset (another visitor's, say), checking
    every two seconds: cheap, and the page then shows it live. A training that started and
    ended between two checks (seconds, on cached features) is noticed too: its run shows."""

    @st.fragment(run_every=2.0)
    def check() -> None:
        board = job_board()
        newest = board.running_on(fingerprint) or board.latest(fingerprint)
        if newest is not None and (after is None or newest.job_id != after.job_id):
            st.rerun()

    check()


# The live view's WebRTC connection: STUN/TURN servers as JSON, for a server reached across
# networks (docs/hosting.md); none by default, which localhost and one network need.
ICE_SERVERS_ENV = "FLOWER_LENS_ICE_SERVERS"
VIDEOS_KEPT = 8


def ice_servers() -> list[dict]:
    """Return the ICE servers of $FLOWER_LENS_ICE_SERVERS (a JSON list of RTCIceServer
    objects), or none; raise FlowerLensError in one line when it is not such a list."""
    import json

    from flower_model.core.errors import FlowerLensError

    text = os.environ.get(ICE_SERVERS_ENV, "").strip()
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise FlowerLensError(f"${ICE_SERVERS_ENV} is not JSON: {exc}") from exc
    if not isinstance(value, list) or not all(
        isinstance(item, dict) and "urls" in item for item in value
    ):
        raise FlowerLensError(
            f"${ICE_SERVERS_ENV} must be a JSON list of objects with 'urls', such as "
            '[{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "c"}]'
        )
    return value


def kept_upload(name: str, data: bytes) -> Path:
    """Return a file in the workspace holding an uploaded video (named by its content), kept
    among the VIDEOS_KEPT most recent: a player reads a file, not bytes."""
    import hashlib

    folder = workspace.videos_dir()
    suffix = Path(name).suffix.lower()[:8]
    path = folder / f"{hashlib.sha256(data).hexdigest()[:24]}{suffix}"
    if not path.exists():
        workspace.write_atomic(path, data)
    path.touch()
    videos = [p for p in folder.iterdir() if not p.name.startswith(".")]  # not a write's temp
    kept = sorted(videos, key=lambda p: p.stat().st_mtime, reverse=True)
    for old in kept[VIDEOS_KEPT:]:
        old.unlink(missing_ok=True)
    return path
