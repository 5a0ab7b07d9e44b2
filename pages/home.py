"""Home: what the app does, and where things stand. Imports no TensorFlow."""

import streamlit as st

from flower_model.model.backbone import weights_status
from flower_model.runs.store import scan_runs
from flower_model.ui import session

session.through_app_navigation()
session.job_board()  # starts the worker process now: the first training finds TensorFlow loaded
st.title(":material/local_florist: Flower Lens")
st.markdown(
    "Teach a **ResNet50** that has already seen ImageNet to tell **daisies, dandelions, roses, "
    "sunflowers and tulips** apart — by *transfer learning*: the pretrained network turns each "
    "photo into 2,048 numbers once, and a small head learns the flowers from those numbers in "
    "seconds. Browse the photos, click Train and watch the loss fall, then drop in your own photo."
)

dataset = session.current_dataset()
weights = weights_status()
runs, broken = scan_runs()

data_col, weights_col, runs_col = st.columns(3, border=True)
with data_col:
    st.subheader("1 · Dataset")
    if dataset is None:
        st.write("No dataset chosen yet.")
        st.page_link(
            "pages/explore.py", label="Choose or download one", icon=":material/photo_library:"
        )
    else:
        st.metric("photos", f"{len(dataset.records):,}", help=str(dataset.root))
        st.caption(f"{len(dataset.class_names)} classes: {', '.join(dataset.class_names)}")
        if dataset.skipped:
            st.caption(f"{len(dataset.skipped)} file(s) skipped")
        st.page_link(
            "pages/explore.py", label="Explore the photos", icon=":material/photo_library:"
        )
with weights_col:
    st.subheader("2 · ImageNet weights")
    if weights.available:
        st.success("Available: transfer learning is on.")
    else:
        st.warning(
            "Not on this machine. Keras downloads them on first use when online. Offline, "
            "you can still train with **no transfer learning** (random start)."
        )
        with st.expander("Where the weights file goes"):
            st.code(str(weights.expected_path), language=None)
            st.caption(weights.message)
    st.page_link("pages/train.py", label="Train a model", icon=":material/model_training:")
with runs_col:
    st.subheader("3 · Trained models")
    if not runs:
        st.write("None yet.")
    else:
        latest = runs[0]
        st.metric("runs · latest accuracy", f"{len(runs)} · {latest.accuracy:.1%}")
        st.caption(f"latest: {latest.run_id} · weights {latest.weights_label}")
        st.page_link("pages/evaluate.py", label="Evaluate", icon=":material/analytics:")
    if broken:
        st.caption(f"{len(broken)} run folder(s) could not be read: see Evaluate.")
    st.page_link("pages/classify.py", label="Classify your photos", icon=":material/image_search:")

with st.expander("How it works"):
    st.markdown(
        "1. **Data** — a folder with one sub-folder per class (the Kaggle *Flowers Recognition* "
        "set, or your own). Unusable files are skipped and listed.\n"
        "2. **Cached features** — each photo is made upright, resized to 224×224, preprocessed "
        "as ResNet50 expects, and passed once through the frozen ResNet50; the 2,048 pooled "
        "numbers are cached on disk, keyed by the photo's content.\n"
        "3. **Head** — Dense 256 → 128 → 64 (ReLU, dropout 0.2) → softmax trains on the cached "
        "features: every epoch takes a fraction of a second.\n"
        "4. **Run** — the model, its split, curves and metrics are saved together.\n"
        "5. **Classify** — a photo goes through the whole model: ResNet50 + head → probabilities."
    )
