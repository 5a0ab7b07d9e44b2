"""Streamlit helpers the pages share: process-wide caches, the chosen dataset, error display."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from flower_model import workspace
from flower_model.data import Dataset, scan_dataset
from flower_model.errors import FlowerLensError
from flower_model.jobs import Job, JobBoard

DATASET_KEY = "dataset_path"


@st.cache_resource
def job_board() -> JobBoard:
    """Return this server's job board: every session sees the same training jobs.

    Made once per server, which is when what killed trainings left behind is removed.
    """
    from flower_model.runs import remove_abandoned

    remove_abandoned()
    workspace.remove_stale_temporaries()
    return JobBoard()


@st.cache_resource(max_entries=3, show_spinner="Loading the model (once per server)…")
def classifier(run_id: str):
    """Return a run's classifier, loaded and compiled once per server process."""
    from flower_model.predict import Classifier

    return Classifier.load(run_id)


@st.cache_resource(max_entries=3, show_spinner=False)
def gradcam(run_id: str):
    """Return the Grad-CAM of a run's classifier, compiled once."""
    from flower_model.explain import GradCam

    return GradCam(classifier(run_id))


def dataset_path() -> Path | None:
    """Return this session's dataset folder, else last time's, else $FLOWER_LENS_DATA."""
    if DATASET_KEY in st.session_state:
        return st.session_state[DATASET_KEY]
    remembered = workspace.last_dataset()
    if remembered is not None and remembered.exists():
        return remembered
    from_env = os.environ.get(workspace.DATA_ENV)
    return Path(from_env) if from_env else None


def choose_dataset(path: Path) -> None:
    """Make a folder this session's dataset and remember it for next time."""
    st.session_state[DATASET_KEY] = path
    workspace.remember_dataset(path)


def current_dataset() -> Dataset | None:
    """Return the chosen dataset scanned, or None if unusable. The first scan of a folder
    checks every photo and shows a progress bar; later ones read the stored scan."""
    path = dataset_path()
    if path is None:
        return None
    try:
        return scan_with_progress(path)
    except FlowerLensError:
        return None


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
    """Return the dataset scanned, with a progress bar while photos are checked the first time."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = st.progress(0.0)
        bar.progress(done / max(total, 1), text=f"Checking photos: {done:,} of {total:,}")

    dataset = scan_dataset(path, progress=progress)
    if bar is not None:
        bar.empty()
    return dataset


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f" · about {minutes} min {secs:02d} s left" if minutes else f" · about {secs} s left"


def job_panel(job: Job) -> None:
    """Draw a job: phase line, progress bar, live curves (training), and a Stop button."""
    from flower_model.ui import figures

    progress = job.progress()
    st.progress(progress.fraction, text=f"{progress.phase}{_eta(progress.eta)}")
    if job.kind == "training":
        if not job.weights.transfer_learning:
            st.caption(
                "Weights: **none (no transfer learning)** — ResNet50 starts from random weights."
            )
        left, right = st.columns(2)
        left.plotly_chart(
            figures.training_curves(progress.history, "loss", progress.fine_tuned_after),
            width="stretch",
            key=f"{job.job_id}-loss",
        )
        right.plotly_chart(
            figures.training_curves(progress.history, "accuracy", progress.fine_tuned_after),
            width="stretch",
            key=f"{job.job_id}-accuracy",
        )
    if job.running:
        st.button(
            "Stop",
            icon=":material/stop_circle:",
            on_click=job.stop,
            key=f"stop-{job.job_id}",
            help="Stops after the current batch; the best completed epoch is kept.",
        )


def watch_job(job: Job) -> None:
    """Redraw a running job every second until it ends, then rerun the page once."""

    @st.fragment(run_every=1.0)
    def live() -> None:
        job_panel(job)
        if not job.running:
            st.rerun()

    live()
