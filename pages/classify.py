"""Classify: drop photos in and see the softmax bars; the model is loaded once per server."""

import numpy as np
import streamlit as st

from flower_model.backbone import INPUT_SIZE
from flower_model.errors import ImageError
from flower_model.explain import overlay
from flower_model.images import IMAGE_SUFFIXES, load_rgb
from flower_model.predict import CONFIDENT
from flower_model.runs import list_runs
from flower_model.ui import figures, session

st.title("Classify")

runs = list_runs()
if not runs:
    session.no_run_hint()
    st.stop()

labels = {
    r.run_id: f"{r.run_id} · accuracy {r.accuracy:.1%} · {r.weights_label}"
    + (" · latest" if r is runs[0] else "")
    for r in runs
}
left, right = st.columns([3, 1])
run_id = left.selectbox("Model", list(labels), format_func=labels.__getitem__)
info = next(r for r in runs if r.run_id == run_id)
explain = right.toggle("Show where it looked (Grad-CAM)")
if not info.metadata["weights"]["transfer_learning"]:
    st.warning(
        "This model was trained with **no transfer learning** (random ResNet50 weights): "
        "expect guesses near chance.",
        icon=":material/casino:",
    )

uploads = st.file_uploader(
    f"Drop flower photos here ({', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)})",
    type=[s.lstrip(".") for s in IMAGE_SUFFIXES],
    accept_multiple_files=True,
)
if st.toggle("Use the camera"):
    shot = st.camera_input("Take a photo")
    if shot is not None:
        uploads = [*uploads, shot]

if not uploads:
    st.info(f"The model knows: {', '.join(info.class_names)}. Drop a photo of one of them.")
    st.stop()

classifier = session.classifier(info.run_id)
for upload in uploads:
    name, data = upload.name, upload.getvalue()
    with st.container(border=True):
        try:
            image = load_rgb(data, name=name)
            prediction = classifier.classify_one((name, data))
        except ImageError as exc:
            st.error(f"{exc}", icon=":material/broken_image:")
            continue
        photo_col, bars_col = st.columns([1, 2])
        if explain:
            model_input = load_rgb(data, size=INPUT_SIZE, name=name)
            index = info.class_names.index(prediction.top_class)
            heat = session.gradcam(info.run_id)(model_input, index)
            photo_col.image(
                overlay(model_input, heat),
                caption=f"{name} · where it looked for {prediction.top_class}",
                width="stretch",
            )
        else:
            photo_col.image(image, caption=name, width="stretch")
        with bars_col:
            if prediction.confident:
                st.markdown(f"### {prediction.top_class} · {prediction.top_probability:.0%}")
            else:
                st.markdown(f"### {prediction.top_class}? · {prediction.top_probability:.0%}")
                st.warning(
                    f"No class reaches {CONFIDENT:.0%}: this may not be one of these flowers.",
                    icon=":material/help:",
                )
            st.plotly_chart(
                figures.probability_bars(info.class_names, np.asarray(prediction.probabilities)),
                width="stretch",
                key=f"bars-{name}-{upload.file_id}",
            )
