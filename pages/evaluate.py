"""Evaluate: how a run does on photos it never trained on; compare runs side by side."""

from pathlib import Path

import pandas as pd
import streamlit as st

from flower_model.evaluate import Evaluation
from flower_model.runs import list_runs
from flower_model.ui import figures, session

st.title("Evaluate")

runs = list_runs()
if not runs:
    session.no_run_hint()
    st.stop()


by_id = {r.run_id: r for r in runs}


def describe(run_id: str) -> str:
    info = by_id[run_id]
    accuracy = f"{info.accuracy:.1%}" if info.accuracy is not None else "–"
    mode = info.metadata["config"]["mode"]
    return f"{info.run_id} · accuracy {accuracy} · {mode} · {info.weights_label}"


single, compare = st.tabs(["One run", "Compare runs"])

with single:
    info = by_id[st.selectbox("Run", list(by_id), format_func=describe)]
    evaluation = Evaluation.from_json(info.metadata["evaluation"])
    if not info.metadata["weights"]["transfer_learning"]:
        st.warning(
            "This run used **no transfer learning** (random ResNet50 weights).",
            icon=":material/casino:",
        )
    cols = st.columns(4)
    cols[0].metric("accuracy", f"{evaluation.accuracy:.1%}")
    cols[1].metric("loss", f"{evaluation.loss:.3f}")
    cols[2].metric("held-out photos", evaluation.count)
    cols[3].metric(
        "epochs", f"{info.metadata['epochs_completed']} (best {info.metadata['best_epoch']})"
    )
    split = info.metadata["split"]
    st.caption(
        f"Measured on the run's own validation split of `{info.metadata['dataset']['root']}` "
        f"(seed {split['seed']}, {split['val_fraction']:.0%} held out): none of these photos "
        f"was trained on. Stopped by: {info.metadata['stopped']}."
    )
    left, right = st.columns(2)
    left.dataframe(
        pd.DataFrame(
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
        ).style.format({"precision": "{:.2f}", "recall": "{:.2f}", "F1": "{:.2f}"}),
        hide_index=True,
        width="stretch",
    )
    right.plotly_chart(
        figures.confusion_heatmap(evaluation.confusion, evaluation.class_names), width="stretch"
    )
    left, right = st.columns(2)
    left.plotly_chart(figures.training_curves(info.history, "loss"), width="stretch")
    right.plotly_chart(figures.training_curves(info.history, "accuracy"), width="stretch")

    st.subheader("Most confidently wrong")
    if not evaluation.mistakes:
        st.success("No held-out photo was misclassified.")
    root = Path(info.metadata["dataset"]["root"])
    grid = st.columns(3)
    for i, mistake in enumerate(evaluation.mistakes):
        with grid[i % 3], st.container(border=True):
            photo = root / mistake.path
            if photo.is_file():
                st.image(str(photo), width=200)
            st.markdown(
                f"**{mistake.true_class}** taken for **{mistake.predicted_class}** "
                f"({mistake.probability:.0%})  \n`{mistake.path}`"
            )
            st.plotly_chart(
                figures.probability_bars(evaluation.class_names, mistake.probabilities, height=200),
                width="stretch",
                key=f"mistake-{i}",
            )

with compare:
    picked_ids = st.multiselect("Runs", list(by_id), default=list(by_id)[:2], format_func=describe)
    picked = [by_id[i] for i in picked_ids]
    if len(picked) < 2:
        st.info("Pick two or more runs to compare them.")
    else:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "run": r.run_id,
                        "accuracy": r.accuracy,
                        "loss": r.metadata["evaluation"]["loss"],
                        "weights": r.weights_label,
                        "mode": r.metadata["config"]["mode"],
                        "epochs": r.metadata["epochs_completed"],
                        "learning rate": r.metadata["config"]["learning_rate"],
                        "batch size": r.metadata["config"]["batch_size"],
                        "photos": r.metadata["dataset"]["images"],
                        "seconds": r.metadata["seconds"],
                    }
                    for r in picked
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        histories = {r.run_id: r.history for r in picked}
        left, right = st.columns(2)
        left.plotly_chart(figures.compare_curves(histories, "val_loss"), width="stretch")
        right.plotly_chart(figures.compare_curves(histories, "val_accuracy"), width="stretch")
