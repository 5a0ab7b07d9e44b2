"""Train: pick the settings, click Train, watch the curves; the run goes on if you leave."""

from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from flower_model.core.errors import DatasetError, RunError, WeightsError
from flower_model.data.dataset import Dataset
from flower_model.data.decisions import decided, published_decisions
from flower_model.model.backbone import NO_TRANSFER_LABEL, WEIGHTS_FILE, WEIGHTS_URL, weights_status
from flower_model.model.config import MODES, TrainConfig, default_of, help_of
from flower_model.model.head import DROPOUT_RATE
from flower_model.model.lr_range import RangeTest
from flower_model.model.precision import PRECISIONS
from flower_model.model.search import FOLDS, Trial, best_trial
from flower_model.runs.store import get_run
from flower_model.service.jobs import Job, JobConflict
from flower_model.ui import figures, session
from flower_model.workflows.tune import TRIALS, found_so_far, read_tuning

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


# The form's widgets, by TrainConfig setting: their values live in the session, so that Tune's
# "Train with these settings" can fill them in.
KEYS = {
    name: f"setting-{name}"
    for name in (
        "weights", "mode", "epochs", "batch_size", "learning_rate", "fine_tune_learning_rate",
        "dropout", "cross_validation", "val_fraction", "patience", "seed", "precision",
    )
}  # fmt: skip
BATCH_SIZES = [8, 16, 32, 64, 128, 256]
DROPOUTS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


@dataclass(frozen=True)
class Submitted:
    """What the settings form asked for: a training, or a search from these settings."""

    action: str  # "train" or "tune"
    config: TrainConfig
    trials: int = TRIALS
    minutes: float | None = None
    search_dropout: bool = False


def _with_defaults(imagenet_available: bool) -> None:
    for name, key in KEYS.items():
        st.session_state.setdefault(key, default_of(name))
    if not imagenet_available and st.session_state[KEYS["weights"]] == "imagenet":
        st.session_state[KEYS["weights"]] = "none"


def rate_slider(column: DeltaGenerator, label: str, name: str) -> float:
    """Draw a learning-rate slider for one TrainConfig setting; return the rate chosen (a
    rate Tune found is offered beside the usual ones)."""
    chosen = float(st.session_state[KEYS[name]])
    return column.select_slider(
        label,
        sorted({*LEARNING_RATES, chosen}),
        format_func=lambda v: f"{v:.2g}",
        help=help_of(name),
        key=KEYS[name],
    )


def fill_settings(config: TrainConfig, folds: int) -> None:
    """Put a search's best settings in the form (a button's callback, before the form is
    drawn again), with cross-validation on so that the run records its score."""
    st.session_state[KEYS["learning_rate"]] = float(f"{config.learning_rate:.2g}")
    st.session_state[KEYS["batch_size"]] = config.batch_size
    st.session_state[KEYS["epochs"]] = config.epochs
    st.session_state[KEYS["dropout"]] = config.dropout
    st.session_state[KEYS["patience"]] = config.patience
    st.session_state[KEYS["cross_validation"]] = folds
    st.toast("The search's best settings are in the form: click **Train**.", icon=":material/tune:")


def settings_ui(imagenet_available: bool, busy: bool) -> Submitted | None:
    """Draw the settings form; return what was asked for when Train or Tune was clicked.

    Every default and help text is TrainConfig's own. While a job runs on the dataset, the
    settings fold away, so that its progress and curves are in view without scrolling.
    """
    _with_defaults(imagenet_available)
    frame = st.expander("Settings", icon=":material/tune:") if busy else st.container()
    with frame, st.form("settings", border=True):
        left, middle, right = st.columns(3)
        weights = left.radio(
            "ResNet50 weights",
            ["imagenet", "none"],
            format_func=lambda w: (
                "ImageNet (transfer learning)" if w == "imagenet" else NO_TRANSFER_LABEL
            ),
            help=help_of("weights"),
            key=KEYS["weights"],
        )
        mode = left.radio(
            "Mode", MODES, format_func=MODE_LABELS.__getitem__, help=help_of("mode"),
            key=KEYS["mode"],
        )  # fmt: skip
        dropout = left.select_slider(
            "Dropout (the seed's model: 0.2)",
            sorted({*DROPOUTS, float(st.session_state[KEYS["dropout"]])}),
            help=help_of("dropout"),
            key=KEYS["dropout"],
        )
        epochs = middle.number_input("Epochs", 1, 5000, help=help_of("epochs"), key=KEYS["epochs"])
        batch_size = middle.select_slider(
            "Batch size", BATCH_SIZES, help=help_of("batch_size"), key=KEYS["batch_size"]
        )
        learning_rate = rate_slider(middle, "Learning rate", "learning_rate")
        fine_tune_learning_rate = rate_slider(
            middle, "Fine-tuning learning rate", "fine_tune_learning_rate"
        )
        val_fraction = right.slider(
            "Validation share", 0.1, 0.5, step=0.05, help=help_of("val_fraction"),
            key=KEYS["val_fraction"],
        )  # fmt: skip
        patience = right.number_input(
            "Early stopping patience", 0, 100, help=help_of("patience"), key=KEYS["patience"]
        )
        seed = right.number_input("Seed", 0, 2**31 - 1, help=help_of("seed"), key=KEYS["seed"])
        precision = right.selectbox(
            "ResNet50 arithmetic", PRECISIONS, help=help_of("precision"), key=KEYS["precision"]
        )
        folds = right.select_slider(
            "Cross-validation folds",
            [0, 2, 3, 4, 5, 10],
            format_func=lambda k: f"{k}" if k else "none",
            help=help_of("cross_validation"),
            key=KEYS["cross_validation"],
        )
        train_clicked = st.form_submit_button(
            "Train", icon=":material/play_arrow:", type="primary", disabled=busy, width="stretch"
        )
        with st.expander(
            "Tune: search these settings by cross-validation", icon=":material/search:"
        ):
            st.caption(
                "Optuna tries learning rates, batch sizes and epochs (the settings above are "
                f"the first trial); each is scored by its {FOLDS}-fold cross-validated "
                "held-out loss (accuracy beside) on the cached features of the photos a run "
                "would train on (its held-out photos are never seen), and a hopeless trial is "
                "cut short at the epoch it falls behind. A learning-rate range test runs "
                "first. Stop keeps the trials done."
            )
            a, b, c = st.columns(3)
            trials = a.number_input("Trials", 1, 500, TRIALS, key="tune-trials")
            minutes = b.number_input(
                "At most, minutes (0: no limit)", 0.0, 600.0, 0.0, 1.0, key="tune-minutes"
            )
            search_dropout = c.toggle(
                "Search the dropout rate too",
                key="tune-dropout",
                help="The seed's model has Dropout 0.2; a run with another rate leaves it.",
            )
            tune_clicked = st.form_submit_button(
                "Tune", icon=":material/search:", disabled=busy, width="stretch"
            )
    if not (train_clicked or tune_clicked):
        return None
    config = TrainConfig(
        epochs=int(epochs),
        batch_size=int(batch_size),
        learning_rate=float(learning_rate),
        fine_tune_learning_rate=float(fine_tune_learning_rate),
        dropout=float(dropout),
        cross_validation=int(folds),
        val_fraction=float(val_fraction),
        seed=int(seed),
        patience=int(patience),
        mode=mode,
        weights=weights,
        precision=precision,
    )
    if train_clicked:
        return Submitted("train", config)
    return Submitted("tune", config, int(trials), float(minutes) or None, bool(search_dropout))


def trials_table(trials: Sequence[Trial]) -> list[dict]:
    """Return a search's trials as the rows of a table, newest first."""
    return [
        {
            "trial": t.number + 1,
            "learning rate": f"{t.learning_rate:.2e}",
            "batch": t.batch_size,
            "epochs (at most)": t.epochs,
            "dropout": t.dropout,
            "loss": t.loss,
            "accuracy": t.accuracy,
            "± (folds)": t.spread,
            "ended": t.ended,
            "seconds": round(t.seconds, 1),
        }
        for t in reversed(trials)
    ]


def search_ui(
    tested: RangeTest | None, trials: Sequence[Trial], dropout: bool, key: str
) -> Trial | None:
    """Draw a search as it stands: the best trial so far, a chart of the score against each
    setting, the range test, and the trials' table; return the best trial."""
    best = best_trial(trials)
    first = trials[0] if trials else None
    a, b, c = st.columns(3)
    a.metric("trials", len(trials), f"{sum(t.state == 'pruned' for t in trials)} cut short",
             delta_color="off")  # fmt: skip
    if best is not None:
        b.metric(
            "best, cross-validated",
            f"{best.accuracy:.1%}",
            f"± {best.spread:.1%} · loss {best.loss:.3g} (trial {best.number + 1})",
            delta_color="off",
            help="The trial of lowest held-out loss over the folds (the search's ranking: it "
            "tells apart settings that reach the same accuracy), and its accuracy.",
        )
    if first is not None:
        c.metric(
            "the settings given (trial 1)",
            f"{first.accuracy:.1%}" if first.accuracy is not None else "—",
            f"loss {first.loss:.3g} · {first.ended}" if first.loss is not None else first.ended,
            delta_color="off",
        )
    left, right = st.columns([2, 1])
    if trials:
        left.plotly_chart(
            figures.trial_scores(trials, best.number if best else None, dropout),
            width="stretch",
            key=f"{key}-scores",
        )
    if tested is not None:
        right.plotly_chart(
            figures.range_test_curve(tested.rates, tested.losses, tested.suggested),
            width="stretch",
            key=f"{key}-range",
        )
    if trials:
        st.dataframe(
            trials_table(trials),
            hide_index=True,
            column_config={
                "loss": st.column_config.NumberColumn(format="%.4f"),
                "accuracy": st.column_config.NumberColumn(format="percent"),
                "± (folds)": st.column_config.NumberColumn(format="percent"),
            },
            height=min(36 * (len(trials) + 1) + 2, 400),
        )
    return best


def tune_live_ui(job: Job) -> None:
    """Draw a running search's findings from its events (redrawn with its progress)."""
    tested, trials = found_so_far(list(job.events))
    search_ui(tested, trials, any(t.dropout != trials[0].dropout for t in trials), job.job_id)


def tuning_ui(dataset: Dataset) -> None:
    """Draw the latest search kept for the dataset (with the form's weights), and offer to
    train with its best settings."""
    tuning = read_tuning(dataset, st.session_state[KEYS["weights"]])
    if tuning is None:
        return
    found = tuning.search
    with st.container(border=True):
        st.subheader("Tune: the latest search")
        st.caption(
            f"{len(found.trials)} trials ({found.stopped}) in {found.seconds:.0f} s, "
            f"{found.folds}-fold cross-validation on {found.photos:,} training photos, "
            f"{tuning.created}."
        )
        best = search_ui(tuning.range_test, found.trials, tuning.space.dropout, "kept-search")
        chosen = tuning.best_config
        if best is not None and chosen is not None:
            leaves = " (leaves the seed's Dropout 0.2)" if chosen.dropout != DROPOUT_RATE else ""
            st.button(
                f"Train with these settings: learning rate {chosen.learning_rate:.2g}, batch "
                f"{chosen.batch_size}, at most {chosen.epochs} epochs{leaves}",
                icon=":material/input:",
                on_click=fill_settings,
                args=(chosen, found.folds),
                key="fill-from-search",
            )


def outcome_ui(job: Job, dataset: Dataset, trained_on: Dataset) -> None:
    """Draw how an ended job ended: the saved run with links, why it stopped, the error, or
    that it was interrupted (with a button to start it again)."""
    if job.status == "interrupted":
        board = session.job_board()
        session.interrupted_ui(job, lambda: board.start_again(job, dataset, trained_on))
        return
    session.job_panel(job)
    if job.status == "cancelled":
        st.info(f"Stopped: {job.error}")
        return
    if job.status != "done":
        what = "The search" if job.kind == "tune" else "Training"
        st.error(f"{what} failed: {job.error}", icon=":material/error:")
        return
    if job.kind != "training":
        return
    try:
        info = get_run(job.run_id)
    except RunError as exc:  # deleted since, or the store moved
        session.show_error(exc)
        return
    meta = info.metadata
    scores = meta.cross_validation
    cross = (
        f", {scores.mean:.1%} ± {scores.spread:.1%} by {len(scores.accuracy)}-fold "
        "cross-validation on the training photos"
        if scores is not None
        else ""
    )
    st.success(
        f"Saved run **{info.run_id}** — validation accuracy **{info.accuracy:.1%}** on "
        f"{meta.evaluation.count} held-out photos{cross}, after {meta.epochs_completed} epochs "
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
    """Say which photos your decisions about the folder leave out or relabel (and, if you
    choose, the folder's published ones); return the dataset to train on."""
    owner = session.visitor()
    try:
        published = published_decisions(dataset.root, owner).items
    except DatasetError as exc:
        session.show_error(exc)
        return dataset
    with_published = bool(published) and st.toggle(
        f"Also use the decisions published for this folder ({len(published)}: its "
        "uploader's, or the command line's `audit --apply`)",
        value=False,
        key="train-with-published",
        help="Yours replace them photo by photo. Other visitors' decisions are never used.",
    )
    try:
        applied = decided(dataset, owner, published=with_published)
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
        help="Yours, made on Explore › Data issues (no other visitor sees, uses or undoes "
        "them), and the folder's published ones if you chose them above; the photo folder "
        "is not touched, and the run records which photos it used with which classes.",
    )
    return applied if use else dataset


def start_ui(dataset: Dataset, asked: Submitted, trained_on: Dataset) -> Job | None:
    """Start a training or a search; show why it cannot start, if it cannot."""
    board = session.job_board()
    try:
        if asked.action == "tune":
            seconds = asked.minutes * 60 if asked.minutes else None
            return board.start_tune(
                trained_on, asked.config, asked.trials, seconds, asked.search_dropout
            )
        return board.start_training(
            dataset, asked.config, trained_on=trained_on, owner=session.visitor()
        )
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
asked = settings_ui(weights_notice_ui(), busy=running is not None and running.kind != "features")
if asked is not None and start_ui(dataset, asked, trained_on) is not None:
    st.rerun()  # drawn again with the job running: the settings folded away

job = running or board.latest(dataset.fingerprint)
if job is None:
    st.info("Pick the settings and click **Train**. The curves appear here as it learns.")
    session.notice_new_job(dataset.fingerprint)
elif job.running:
    if asked is None:
        doing = {
            "features": "Features are being computed",
            "audit": "An audit is running",
            "tune": "The settings are being searched",
        }
        st.info(
            f"{doing.get(job.kind, 'A run is training')} on this dataset (it goes on if you "
            "leave this page).",
            icon=":material/hourglass_top:",
        )
    session.watch_job(job, tune_live_ui if job.kind == "tune" else None)
else:
    outcome_ui(job, dataset, trained_on)
    session.notice_new_job(dataset.fingerprint, after=job)
if job is None or not job.running:
    tuning_ui(trained_on)
