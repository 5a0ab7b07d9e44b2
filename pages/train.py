"""Train: pick the settings, click Train, watch the curves; the run goes on if you leave."""

import streamlit as st

from flower_model.backbone import NO_TRANSFER_LABEL, WEIGHTS_FILE, WEIGHTS_URL, weights_status
from flower_model.errors import RunError
from flower_model.inference import MIN_BF16_COSINE, PRECISIONS
from flower_model.jobs import JobConflict
from flower_model.runs import get_run
from flower_model.train import DEFAULT_LEARNING_RATE, TrainConfig
from flower_model.ui import session

st.title("Train")

dataset = session.current_dataset()
if dataset is None:
    session.no_dataset_hint()
    st.stop()

board = session.job_board()
running = board.running_on(dataset.fingerprint)
weights = weights_status()

st.caption(
    f"Dataset: `{dataset.root}` · {len(dataset.records):,} photos · "
    f"{', '.join(dataset.class_names)}"
)
if not weights.available:
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

# -- Settings -------------------------------------------------------------------------------------
with st.form("settings", border=True):
    left, middle, right = st.columns(3)
    weight_choices = ["imagenet", "none"]
    weights_choice = left.radio(
        "ResNet50 weights",
        weight_choices,
        index=0 if weights.available else 1,
        format_func=lambda w: (
            "ImageNet (transfer learning)" if w == "imagenet" else NO_TRANSFER_LABEL
        ),
        help="ImageNet weights carry what ResNet50 learned from 1.2 million photos; 'none' "
        "starts from random weights, to show what transfer learning adds.",
    )
    mode = left.radio(
        "Mode",
        ["features", "finetune"],
        format_func=lambda m: (
            "Feature extraction (fast)"
            if m == "features"
            else "Fine-tune conv5 + augmentation (slow)"
        ),
        help="Feature extraction runs ResNet50 once per photo and trains the head on cached "
        "features. Fine-tuning also trains ResNet50's last stage on flipped, rotated and zoomed "
        "photos: every epoch runs the whole network.",
    )
    epochs = middle.number_input(
        "Epochs", 1, 500, 20, help="At most this many passes over the training photos."
    )
    batch_size = middle.select_slider(
        "Batch size",
        [8, 16, 32, 64, 128],
        value=TrainConfig().batch_size,
        help="Photos per training step. Larger steps make an epoch faster on a CPU.",
    )
    learning_rate = middle.select_slider(
        "Learning rate",
        ["auto", 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
        value="auto",
        format_func=lambda v: v if v == "auto" else f"{v:g}",
        help=f"auto: {DEFAULT_LEARNING_RATE['features']:g} for the head on ImageNet features, "
        f"{DEFAULT_LEARNING_RATE['features-random']:g} on random features, "
        f"{DEFAULT_LEARNING_RATE['finetune']:g} for fine-tuning (so as not to wreck what "
        "ResNet50 knows).",
    )
    val_fraction = right.slider(
        "Validation share",
        0.1,
        0.5,
        0.2,
        0.05,
        help="Photos held out to measure the model; never trained on.",
    )
    patience = right.number_input(
        "Early stopping patience",
        0,
        100,
        5,
        help="Stop after this many epochs without a better validation "
        "loss, keeping the best epoch. 0 turns it off.",
    )
    seed = right.number_input("Seed", 0, 2**31 - 1, 42, help="Same seed, same split, same start.")
    precision = right.selectbox(
        "ResNet50 arithmetic",
        PRECISIONS,
        help="How ResNet50 computes the features. auto: bfloat16 on a CPU that computes it "
        "natively (Intel AVX512-BF16 or AMX: several times faster) once its features agree "
        f"with float32 ones (cosine ≥ {MIN_BF16_COSINE}), else float32.",
    )
    submitted = st.form_submit_button(
        "Train",
        icon=":material/play_arrow:",
        type="primary",
        disabled=running is not None,
        width="stretch",
    )

if submitted:
    try:
        config = TrainConfig(
            epochs=int(epochs),
            batch_size=int(batch_size),
            learning_rate=None if learning_rate == "auto" else float(learning_rate),
            val_fraction=float(val_fraction),
            seed=int(seed),
            patience=int(patience),
            mode=mode,
            weights=weights_choice,
            precision=precision,
        )
        running = board.start_training(dataset, config)
    except (JobConflict, ValueError) as exc:
        session.show_error(exc)

# -- The run: live while it trains, its outcome once it ends -------------------------------------
job = running or next(
    (j for j in board.jobs() if j.kind == "training" and j.fingerprint == dataset.fingerprint), None
)
if job is None:
    st.info("Pick the settings and click **Train**. The curves appear here as it learns.")
    st.stop()

if job.running:
    if not submitted:
        st.info(
            "A run is training on this dataset (it goes on if you leave this page).",
            icon=":material/hourglass_top:",
        )
    session.watch_job(job)
    st.stop()

session.job_panel(job)
if job.status == "done":
    try:
        info = get_run(job.run_id)
    except RunError as exc:  # deleted since, or the store moved
        session.show_error(exc)
        st.stop()
    evaluation = info.metadata["evaluation"]
    st.success(
        f"Saved run **{info.run_id}** — validation accuracy **{evaluation['accuracy']:.1%}** on "
        f"{evaluation['count']} held-out photos after {info.metadata['epochs_completed']} epochs "
        f"({info.metadata['stopped']}), weights {info.weights_label}."
    )
    features = info.metadata.get("features")
    if features:
        st.caption(
            f"Features: {features['cached']:,} from the cache, {features['computed']:,} computed "
            f"in {features['seconds']:.1f} s ({features.get('precision', 'float32')})."
        )
    left, right = st.columns(2)
    left.page_link("pages/evaluate.py", label="Evaluate this run", icon=":material/analytics:")
    right.page_link(
        "pages/classify.py", label="Classify photos with it", icon=":material/image_search:"
    )
elif job.status == "cancelled":
    st.info(f"Stopped: {job.error}")
else:
    st.error(f"Training failed: {job.error}", icon=":material/error:")
