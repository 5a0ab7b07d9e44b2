"""Classify: drop photos in and see the softmax bars; the model is loaded once per server."""

import hashlib

import numpy as np
import streamlit as st

from flower_model.backbone import INPUT_SIZE
from flower_model.errors import FlowerLensError
from flower_model.explain import overlay
from flower_model.images import IMAGE_SUFFIXES, load_preview, load_rgb
from flower_model.predict import CONFIDENT, Prediction
from flower_model.runs import RunInfo, list_runs
from flower_model.ui import figures, session

Upload = tuple[str, bytes]  # (file name, its bytes)


@st.cache_data(max_entries=32, show_spinner=False)
def classify_upload(
    run_id: str, digest: str, name: str, _data: bytes
) -> tuple[np.ndarray, np.ndarray, Prediction]:
    """Return a photo's preview, model input and prediction: each upload is decoded at the
    model's size once and classified once (the cache key is the run and the bytes' hash)."""
    model_input = load_rgb(_data, size=INPUT_SIZE, name=name)
    prediction = session.classifier(run_id).classify_image(name, model_input)
    return load_preview(_data, name), model_input, prediction


@st.cache_data(max_entries=32, show_spinner=False)
def gradcam_overlay(run_id: str, digest: str, class_index: int, _image: np.ndarray) -> np.ndarray:
    """Return the photo at the model's size with Grad-CAM's heatmap for one class over it."""
    return overlay(_image, session.gradcam(run_id)(_image, class_index))


def model_ui(runs: list[RunInfo]) -> tuple[RunInfo, bool]:
    """Draw the model picker and the Grad-CAM switch; return the run and whether to explain."""
    labels = {r.run_id: r.describe() + (" · latest" if r is runs[0] else "") for r in runs}
    left, right = st.columns([3, 1])
    run_id = left.selectbox("Model", list(labels), format_func=labels.__getitem__)
    explain = right.toggle("Show where it looked (Grad-CAM)")
    info = next(r for r in runs if r.run_id == run_id)
    if not info.transfer_learning:
        st.warning(
            "This model was trained with **no transfer learning** (random ResNet50 weights): "
            "expect many wrong guesses.",
            icon=":material/casino:",
        )
    return info, explain


def uploads_ui() -> list[Upload]:
    """Draw the upload box and the camera switch; return the photos given."""
    suffixes = [s.lstrip(".") for s in IMAGE_SUFFIXES]
    uploads = st.file_uploader(
        f"Drop flower photos here ({', '.join(suffixes)})",
        type=suffixes,
        accept_multiple_files=True,
    )
    photos = [(u.name, u.getvalue()) for u in uploads]
    if st.toggle("Use the camera"):
        shot = st.camera_input("Take a photo")
        if shot is not None:
            photos.append((shot.name, shot.getvalue()))
    return photos


def result_ui(info: RunInfo, upload: Upload, explain: bool, key: str) -> None:
    """Draw one photo with its softmax bars (and where the model looked, if asked)."""
    name, data = upload
    digest = hashlib.sha256(data).hexdigest()
    with st.container(border=True):
        try:
            preview, model_input, prediction = classify_upload(info.run_id, digest, name, data)
        except FlowerLensError as exc:
            st.error(f"{exc}", icon=":material/broken_image:")
            return
        photo_col, bars_col = st.columns([1, 2])
        if explain:
            index = info.class_names.index(prediction.top_class)
            photo_col.image(
                gradcam_overlay(info.run_id, digest, index, model_input),
                caption=f"{name} · where it looked for {prediction.top_class}",
                width="stretch",
            )
        else:
            photo_col.image(preview, caption=name, width="stretch")
        with bars_col:
            doubt = "" if prediction.confident else "?"
            st.markdown(f"### {prediction.top_class}{doubt} · {prediction.top_probability:.0%}")
            if not prediction.confident:
                st.warning(
                    f"No class reaches {CONFIDENT:.0%}: this may not be one of these flowers.",
                    icon=":material/help:",
                )
            st.plotly_chart(
                figures.probability_bars(info.class_names, np.asarray(prediction.probabilities)),
                width="stretch",
                key=f"bars-{key}",
            )


st.title("Classify")
runs = list_runs()
if not runs:
    session.no_run_hint()
    st.stop()
info, explain = model_ui(runs)
uploads = uploads_ui()
if not uploads:
    st.info(f"The model knows: {', '.join(info.class_names)}. Drop a photo of one of them.")
    st.stop()
for i, upload in enumerate(uploads):
    result_ui(info, upload, explain, key=f"{i}-{upload[0]}")
