"""Train: pick the settings, click Train, watch the curves; the run goes on if you leave."""

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from flower_model.core.errors import DatasetError, RunError, WeightsError
from flower_model.data.dataset import Dataset
from flower_model.data.decisions import decided
from flower_model.model.backbone import NO_TRANSFER_LABEL, WEIGHTS_FILE, WEIGHTS_URL, weights_status
from flower_model.model.config import MODES, TrainConfig, default_of, help_of
from flower_model.model.precision import PRECISIONS
from flower_model.runs.store import get_run
from flower_model.service.jobs import Job, JobConflict
from flower_model.ui import session

MODE_LABELS = {
    "features": "Feature extraction (fast)",
    "finetune": "Head, then fine-tune conv5 on augmented photos (slow)",
}
LEARNING_RATES = [1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]


def weights_notice_ui() -> bool:
    """Say plainly when transfer learning is not possible here; return whether it is."""
    weights = weights_status()
    if weights.available:
        return True
    st.warning(
        "ImageNet weights are not on this machine: **transfer learning** needs them, and Keras "
        "downloads them only when online. Offline, train with **none (no transfer learning)**: "
        "ResNet50 starts from random weights, so expect far lower accuracy.",
        icon=":material/cloud_off:",
    )
    with st.expander("How to get the ImageNet weights"):
        st.markdown(f"Download `{WEIGHTS_FILE}` (94.7 MB) from")
        st.code(WEIGHTS_URL, language=None)
        st.markdown("and put it here (or point `$FLOWER_LENS_WEIGHTS` at it):")
        st.code(str(weights.expected_path), language=None)
    return False


def rate_slider(column: DeltaGenerator, label: str, name: str) -> float:
    """Draw a learning-rate slider for one TrainConfig setting; return the rate chosen."""
    return column.select_slider(
        label,
        LEARNING_RATES,
        value=default_of(name),
        format_func=lambda v: f"{v:g}",
        help=help_of(name),
    )


def settings_ui(imagenet_available: bool, busy: bool) -> TrainConfig | None:
    """Draw the settings form; return the config when Train was clicked, else None.

    Every default and help text is TrainConfig's own. While a job runs on the dataset, the
    settings fold away, so that its progress and curves are in view without scrolling.
    """
    frame = st.expander("Settings", icon=":material/tune:") if busy else st.container()
    with frame, st.form("settings", border=True):
        left, middle, right = st.columns(3)
        weights = left.radio(
            "ResNet50 weights",
            ["imagenet", "none"],
            index=0 if imagenet_available else 1,
            format_func=lambda w: (
                "ImageNet (transfer learning)" if w == "imagenet" else NO_TRANSFER_LABEL
            ),
            help=help_of("weights"),
        )
        mode = left.radio("Mode", MODES, format_func=MODE_LABELS.__getitem__, help=help_of("mode"))
        epochs = middle.number_input("Epochs", 1, 500, default_of("epochs"), help=help_of("epochs"))
        batch_size = middle.select_slider(
            "Batch size",
            [8, 16, 32, 64, 128],
            value=default_of("batch_size"),
            help=help_of("batch_size"),
        )
        learning_rate = rate_slider(middle, "Learning rate", "learning_rate")
        fine_tune_learning_rate = rate_slider(
            middle, "Fine-tuning learning rate", "fine_tune_learning_rate"
        )
        val_fraction = right.slider(
            "Validation share",
            0.1,
            0.5,
            default_of("val_fraction"),
            0.05,
            help=help_of("val_fraction"),
        )
        patience = right.number_input(
            "Early stopping patience", 0, 100, default_of("patience"), help=help_of("patience")
        )
        seed = right.number_input("Seed", 0, 2**31 - 1, default_of("seed"), help=help_of("seed"))
        precision = right.selectbox(
            "ResNet50 arithmetic",
            PRECISIONS,
            index=PRECISIONS.index(default_of("precision")),
            help=help_of("precision"),
        )
        submitted = st.form_submit_button(
            "Train", icon=":material/play_arrow:", type="primary", disabled=busy, width="stretch"
        )
    if not submitted:
        return None
    return TrainConfig(
        epochs=int(epochs),
        batch_size=int(batch_size),
        learning_rate=float(learning_rate),
        fine_tune_learning_rate=float(fine_tune_learning_rate),
        val_fraction=float(val_fraction),
        seed=int(seed),
        patience=int(patience),
        mode=mode,
        weights=weights,
        precision=precision,
    )


def outcome_ui(job: Job) -> None:
    """Draw how an ended job ended: the saved run with links, why it stopped, or the error."""
    session.job_panel(job)
    if job.status == "cancelled":
        st.info(f"Stopped: {job.error}")
        return
    if job.status != "done":
        st.error(f"Training failed: {job.error}", icon=":material/error:")
        return
    try:
        info = get_run(job.run_id)
    except RunError as exc:  # deleted since, or the store moved
        session.show_error(exc)
        return
    meta = info.metadata
    st.success(
        f"Saved run **{info.run_id}** — validation accuracy **{info.accuracy:.1%}** on "
        f"{meta.evaluation.count} held-out photos after {meta.epochs_completed} epochs "
        f"({meta.stopped}), weights {info.weights_label}, learning rate "
        f"{meta.config.learning_rate:g}."
    )
    if meta.features is not None:
        st.caption(
            f"Features: {meta.features.cached:,} from the cache, {meta.features.computed:,} "
            f"computed in {meta.features.seconds:.1f} s ({meta.features.precision})."
        )
    left, right = st.columns(2)
    left.page_link("pages/evaluate.py", label="Evaluate this run", icon=":material/analytics:")
    right.page_link(
        "pages/classify.py", label="Classify photos with it", icon=":material/image_search:"
    )


def decisions_ui(dataset: Dataset) -> Dataset:
    """Say which photos the decisions about the folder leave out or relabel; return the
    dataset to train on: as decided, or as the folder is."""
    try:
        applied = decided(dataset)
    except DatasetError as exc:
        session.show_error(exc)
        return dataset
    if applied is dataset:
        return dataset
    use = st.toggle(
        f"Train with the decisions about this folder: {len(applied.excluded)} photo(s) left "
        f"out, {len(applied.relabelled)} counted under another class",
        value=True,
        key="train-with-decisions",
        help="Made on Explore › Data issues (by any visitor of this server) or with "
        "`audit --apply`; the photo folder is not touched, and the run records which photos "
        "it used with which classes.",
    )
    return applied if use else dataset


def start_ui(dataset: Dataset, config: TrainConfig, trained_on: Dataset) -> Job | None:
    """Start a training job; show why it cannot start, if it cannot."""
    try:
        return session.job_board().start_training(dataset, config, trained_on=trained_on)
    except (JobConflict, WeightsError, DatasetError) as exc:
        session.show_error(exc)
        return None


session.through_app_navigation()
st.title("Train")
dataset = session.current_dataset()
if dataset is None:
    session.no_dataset_hint()
    st.stop()
st.caption(
    f"Dataset: `{dataset.root}` · {len(dataset.records):,} photos · "
    f"{', '.join(dataset.class_names)}"
)
board = session.job_board()
running = board.running_on(dataset.fingerprint)
trained_on = decisions_ui(dataset)
# A features job leaves the settings open: a training clicked now waits for it.
config = settings_ui(weights_notice_ui(), busy=running is not None and running.kind != "features")
if config is not None and start_ui(dataset, config, trained_on) is not None:
    st.rerun()  # drawn again with the job running: the settings folded away

job = running or board.latest(dataset.fingerprint)
if job is None:
    st.info("Pick the settings and click **Train**. The curves appear here as it learns.")
    session.notice_new_job(dataset.fingerprint)
elif job.running:
    if config is None:
        doing = {"features": "Features are being computed", "audit": "An audit is running"}
        st.info(
            f"{doing.get(job.kind, 'A run is training')} on this dataset (it goes on if you "
            "leave this page).",
            icon=":material/hourglass_top:",
        )
    session.watch_job(job)
else:
    outcome_ui(job)
    session.notice_new_job(dataset.fingerprint, after=job)
