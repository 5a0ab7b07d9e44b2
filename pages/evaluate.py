"""Evaluate: how a run does on photos it never trained on; compare runs side by side."""

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from flower_model.core.errors import RunError
from flower_model.model.head import DROPOUT_RATE
from flower_model.runs.store import BrokenRun, RunInfo, scan_runs
from flower_model.ui import figures, session
from flower_model.workflows.cleanup import remove_run

# Photos of a confusion-matrix cell drawn at most.
CELL_PHOTOS = 12
# The session key of the open tab.
VIEW_KEY = "evaluate-view"


def metrics_ui(info: RunInfo) -> None:
    """Draw a run's headline numbers and what they were measured on."""
    meta, evaluation = info.metadata, info.metadata.evaluation
    if not info.transfer_learning:
        st.warning(
            "This run used **no transfer learning** (random ResNet50 weights).",
            icon=":material/casino:",
        )
    scores = meta.cross_validation
    cols = st.columns(5 if scores is not None else 4)
    cols[0].metric("accuracy", f"{evaluation.accuracy:.1%}")
    if scores is not None:
        cols[-1].metric(
            "cross-validated",
            f"{scores.mean:.1%}",
            f"± {scores.spread:.1%} over {len(scores.accuracy)} folds",
            delta_color="off",
            help="The head's accuracy by k-fold cross-validation on the training photos (each "
            "fold held out in turn): beside the held-out accuracy, how much one split's "
            "figure may vary.",
        )
    cols[1].metric("loss", f"{evaluation.loss:.3f}")
    cols[2].metric("held-out photos", evaluation.count)
    cols[3].metric("epochs", f"{meta.epochs_completed} (best {meta.best_epoch})")
    st.caption(
        f"Measured on the run's own validation split of `{meta.dataset.root}` "
        f"(seed {meta.split.seed}, {meta.split.val_fraction:.0%} held out): none of these photos "
        f"was trained on. Stopped by: {meta.stopped}."
        + (
            f" Dropout {meta.config.dropout:g}: not the seed's model (0.2)."
            if meta.config.dropout != DROPOUT_RATE
            else ""
        )
    )


def per_class_ui(info: RunInfo) -> None:
    """Draw precision, recall and F1 per class, and the clickable confusion matrix."""
    evaluation = info.metadata.evaluation
    left, right = st.columns(2)
    table = pd.DataFrame(
        [
            {
                "class": m.name,
                "precision": m.precision,
                "recall": m.recall,
                "F1": m.f1,
                "photos": m.support,
            }
            for m in evaluation.per_class
        ]
    )
    left.dataframe(
        table.style.format({"precision": "{:.2f}", "recall": "{:.2f}", "F1": "{:.2f}"}),
        hide_index=True,
        width="stretch",
    )
    with right:
        cell_ui(info)


def curves_ui(info: RunInfo) -> None:
    """Draw the loss and accuracy curves of the run's epochs."""
    left, right = st.columns(2)
    after = info.metadata.fine_tuned_after
    left.plotly_chart(figures.training_curves(info.history, "loss", after), width="stretch")
    right.plotly_chart(figures.training_curves(info.history, "accuracy", after), width="stretch")


def cell_ui(info: RunInfo) -> None:
    """Draw the clickable confusion matrix; a clicked cell's photos follow, with their bars."""
    evaluation = info.metadata.evaluation
    names = evaluation.class_names
    event = st.plotly_chart(
        figures.confusion_heatmap(evaluation.confusion, names),
        on_select="rerun",
        selection_mode="points",
        key=f"confusion-{info.run_id}",
        width="stretch",
    )
    picked = [p["customdata"] for p in event.selection.points if p.get("customdata")]
    if picked:
        st.session_state[f"cell-{info.run_id}"] = (int(picked[0][0]), int(picked[0][1]))


def cell_photos_ui(info: RunInfo) -> None:
    """Draw the held-out photos of the confusion-matrix cell clicked last, surest first."""
    evaluation = info.metadata.evaluation
    cell = st.session_state.get(f"cell-{info.run_id}")
    if cell is None:
        return
    true, predicted = cell
    names = evaluation.class_names
    if not evaluation.probabilities:
        st.info(
            "This run was saved before each held-out photo's probabilities were kept: train "
            "it again to see the photos of a cell."
        )
        return
    rows = evaluation.in_cell(true, predicted)
    verdict = "right" if true == predicted else f"taken for **{names[predicted]}**"
    st.subheader(f"{names[true]}, {verdict}: {len(rows)} photo(s)")
    root = Path(info.metadata.dataset.root)
    pages = max(1, -(-len(rows) // CELL_PHOTOS))
    page = 1
    if pages > 1:
        page = st.number_input(
            f"Page (of {pages}, surest first)", 1, pages, 1, key=f"cell-page-{true}-{predicted}"
        )
    shown = rows[(page - 1) * CELL_PHOTOS : page * CELL_PHOTOS]
    grid = st.columns(4)
    for i, row in enumerate(shown):
        with grid[i % 4], st.container(border=True):
            with st.container(width=180):
                session.photo_ui(root / evaluation.paths[row], evaluation.paths[row])
            st.html(figures.probability_rows_html(names, evaluation.probabilities[row]))
    if pages > 1:
        first = (page - 1) * CELL_PHOTOS + 1
        st.caption(f"Photos {first:,}–{first + len(shown) - 1:,} of {len(rows):,}.")


def calibration_ui(info: RunInfo) -> None:
    """Draw how far the run's probabilities can be trusted, and the "not sure" threshold."""
    from flower_model.metrics.calibration import (
        CONFIDENT,
        MIN_SUPPORT,
        TARGET_PRECISION,
        coverage_curve,
    )

    calibration = info.metadata.calibration
    evaluation = info.metadata.evaluation
    st.subheader("Can its probabilities be trusted?")
    if calibration is None or not evaluation.probabilities:
        st.info("This run was saved before calibration was measured: train it again to see it.")
        return
    temperature, threshold = calibration.temperature, calibration.threshold
    cols = st.columns(4)
    cols[0].metric("calibration error (ECE)", f"{calibration.ece:.1%}")
    cols[1].metric("temperature", f"{temperature:.2f}" if temperature is not None else "—")
    scaled_ece = calibration.ece_scaled
    cols[2].metric("ECE with it", f"{scaled_ece:.1%}" if scaled_ece is not None else "—")
    shown = figures.percent(threshold.threshold) if threshold else f"{CONFIDENT:.0%} (default)"
    cols[3].metric("not-sure threshold", shown)
    lines = [
        f"On {calibration.count} held-out photos, a photo's top probability is off from how "
        f"often such photos are right by {calibration.ece:.1%} on average (expected "
        "calibration error)."
    ]
    if temperature is not None:
        lines.append(
            f"Dividing the logits by a temperature of {temperature:.2f} brings that to "
            f"{scaled_ece:.1%} on the same photos (they chose the temperature, and the best "
            "epoch: a fresh set would show a little more). The saved model keeps its own "
            "probabilities; Classify shows calibrated ones when asked."
        )
    else:
        lines.append(
            "No temperature was fitted: the held-out log loss keeps falling as the "
            "probabilities sharpen (every held-out photo right, say)."
        )
    if threshold is not None:
        below = (
            f"Photos below it were right only {threshold.below_accuracy:.0%} of the time."
            if threshold.below_accuracy is not None
            else "No held-out photo fell below it."
        )
        lines.append(
            f"Classify calls a photo **not sure** below {figures.percent(threshold.threshold)}: "
            f"above it, {threshold.precision:.0%} of held-out photos were right "
            f"({threshold.coverage:.0%} of them are above it). {below}"
        )
    else:
        lines.append(
            f"No threshold kept {TARGET_PRECISION:.0%} right with {MIN_SUPPORT} or more "
            f"held-out photos above it, so Classify uses the default {CONFIDENT:.0%}."
        )
    st.caption(" ".join(lines))
    labels = list(evaluation.labels)
    probabilities = np.asarray(evaluation.probabilities)
    _, coverage, accuracy = coverage_curve(labels, probabilities)
    left, right = st.columns(2)
    left.plotly_chart(
        figures.reliability_diagram(calibration.bins), width="stretch", key="reliability"
    )
    chosen = (threshold.coverage, threshold.precision) if threshold is not None else None
    right.plotly_chart(
        figures.coverage_figure(coverage, accuracy, chosen), width="stretch", key="coverage"
    )


def mistakes_ui(info: RunInfo) -> None:
    """Draw the held-out photos the run got most confidently wrong, with their bars."""
    evaluation = info.metadata.evaluation
    st.subheader("Most confidently wrong")
    if not evaluation.mistakes:
        st.success("No held-out photo was misclassified.")
    root = Path(info.metadata.dataset.root)
    grid = st.columns(3)
    for i, mistake in enumerate(evaluation.mistakes):
        with grid[i % 3], st.container(border=True):
            with st.container(width=200):
                session.photo_ui(root / mistake.path)
            st.markdown(
                f"**{mistake.true_class}** taken for **{mistake.predicted_class}** "
                f"({mistake.probability:.0%})  \n`{mistake.path}`"
            )
            st.html(figures.probability_rows_html(evaluation.class_names, mistake.probabilities))


def compare_ui(by_id: dict[str, RunInfo]) -> None:
    """Draw two or more runs side by side: settings, results, validation curves."""
    picked_ids = st.multiselect(
        "Runs", list(by_id), default=list(by_id)[:2], format_func=lambda i: by_id[i].describe()
    )
    picked = [by_id[i] for i in picked_ids]
    if len(picked) < 2:
        st.info("Pick two or more runs to compare them.")
        return
    rows = [
        {
            "run": r.run_id,
            "accuracy": r.accuracy,
            "loss": r.summary.loss,
            "weights": r.weights_label,
            "mode": r.summary.mode,
            "epochs": r.summary.epochs_completed,
            "learning rate": r.summary.learning_rate,
            "batch size": r.summary.batch_size,
            "photos": r.summary.photos,
            "seconds": r.summary.seconds,
        }
        for r in picked
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    histories = {r.run_id: r.history for r in picked}
    left, right = st.columns(2)
    left.plotly_chart(figures.compare_curves(histories, "val_loss"), width="stretch")
    right.plotly_chart(figures.compare_curves(histories, "val_accuracy"), width="stretch")


@st.fragment
def export_ui(info: RunInfo) -> None:
    """Draw a run's export formats; prepare one in the worker and offer it for download."""
    from flower_model.export.exporter import app_export_path, offered_size, packed_summary
    from flower_model.export.formats import FORMATS
    from flower_model.service.jobs import JobConflict, export_fingerprint

    st.markdown(
        "Take the model out of the app. Each export holds the model with ResNet50's "
        "preprocessing inside (it takes plain uint8 photos, 224×224), `labels.txt`, a model "
        "card and a standalone `predict.py` that decodes photos exactly as this app does. "
        "Before it is offered, each export is run through its own runtime and checked "
        "against the app's probabilities."
    )
    lines = ["| Format | For | Needs | Size |", "|---|---|---|---|"]
    for fmt in FORMATS.values():
        size, ready = offered_size(info, fmt.name)
        shown = f"{size / 1e6:.1f} MB .zip, ready" if ready else f"about {size / 1e6:.0f} MB"
        lines.append(f"| {fmt.title} | {fmt.summary} | `{fmt.packages}` | {shown} |")
    st.markdown("\n".join(lines))
    name = st.radio(
        "Format",
        list(FORMATS),
        format_func=lambda n: FORMATS[n].title,
        horizontal=True,
        key=f"export-format-{info.run_id}",
    )
    if name == "tflite-int8" and not info.transfer_learning:
        st.warning(
            "This run has **no transfer learning**: a random ResNet50 amplifies integer "
            "rounding, so the int8 model disagrees with the float one on most photos. The "
            "model card measures by how much; a float format is the one to use.",
            icon=":material/warning:",
        )
    path = app_export_path(info.run_id, name)
    board = session.job_board()
    job = board.latest(export_fingerprint(info.run_id, name), kind="export")
    if path.is_file():
        manifest, card = packed_summary(path)
        parity = manifest.parity
        st.download_button(
            f"Download {path.name} ({path.stat().st_size / 1e6:.1f} MB)",
            data=path.read_bytes,  # read when clicked, not on every rerun
            file_name=path.name,
            mime="application/zip",
            icon=":material/download:",
            type="primary",
            on_click="ignore",
        )
        st.caption(
            f"Checked on {parity.photos} {manifest.checked_on}: largest difference from the "
            f"app's probabilities {parity.max_difference:.1e}, the same top class on "
            f"{parity.top1_agreement:.0%}."
        )
        with st.expander("Model card", icon=":material/description:"):
            st.markdown(card)
        return
    if job is not None and job.running:
        session.watch_job(job)
        return
    if job is not None and job.status == "failed":
        st.error(job.error or "the export failed", icon=":material/error:")
    if job is not None and job.status == "interrupted":
        session.interrupted_ui(job)  # the button below asks for it again
    if st.button("Prepare the export", icon=":material/package_2:", key="export-prepare"):
        try:
            session.watch_job(board.start_export(info, name))
        except JobConflict as exc:
            st.info(str(exc))


def this_run_ui(info: RunInfo) -> None:
    """The "This run" tab: metrics, per class, the confusion cell's photos, curves,
    calibration and the mistakes."""
    metrics_ui(info)
    per_class_ui(info)
    cell_photos_ui(info)
    curves_ui(info)
    calibration_ui(info)
    mistakes_ui(info)
    delete_ui(info)


def delete_ui(info: RunInfo) -> None:
    """Offer the visitor who trained a run to delete it (no one else may)."""
    if not info.owner or info.owner != session.visitor():
        return
    with st.popover("Delete this run", icon=":material/delete:"):
        st.caption("It goes for good, with its exports; other visitors' runs are not touched.")
        if st.button("Delete it", type="primary", key=f"delete-{info.run_id}"):
            try:
                remove_run(info.run_id, owner=session.visitor())
            except RunError as exc:
                session.show_error(exc)
                return
            st.rerun()


def broken_ui(broken: list[BrokenRun]) -> None:
    """List the run folders that cannot be used, with the reason (they are never picked)."""
    if broken:
        with st.expander(f"{len(broken)} run folder(s) could not be read", icon=":material/error:"):
            for item in broken:
                st.markdown(f"`{item.run_id}`: {item.reason}")


session.through_app_navigation()
st.title("Evaluate")
runs, broken = scan_runs()
broken_ui(broken)
if not runs:
    session.no_run_hint()
    st.stop()
by_id = {r.run_id: r for r in runs}
labels = {i: f"{r.describe()} · by {session.trained_by(r.owner)}" for i, r in by_id.items()}
info = by_id[st.selectbox("Run", list(by_id), format_func=labels.__getitem__)]
# Only the open tab is drawn (a plain st.tabs draws every tab's charts on every rerun).
views = {
    "This run": lambda: this_run_ui(info),
    "Export": lambda: export_ui(info),
    "Compare runs": lambda: compare_ui(by_id),
}
for tab, view in zip(
    st.tabs(list(views), key=VIEW_KEY, on_change="rerun"), views.values(), strict=True
):
    if tab.open:
        with tab:
            view()
