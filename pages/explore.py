"""Explore: choose the photos, look at them, and see how ResNet50 places them on a map."""

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from flower_model.backbone import weights_status
from flower_model.data import DEFAULT_HANDLE, Dataset, download_dataset, find_class_root
from flower_model.embedding import METHODS, project
from flower_model.errors import FlowerLensError
from flower_model.features import FeatureCache, cache_infos
from flower_model.jobs import JobConflict
from flower_model.ui import figures, session

PER_PAGE = 18

st.title("Explore the dataset")

# -- Where the photos come from ---------------------------------------------------------------
with st.container(border=True):
    source = st.radio(
        "Photos from", ["A folder on this computer", "Download from Kaggle"], horizontal=True
    )
    if source == "A folder on this computer":
        current = session.dataset_path()
        folder = st.text_input(
            "Folder with one sub-folder per class",
            value=str(current) if current else "",
            placeholder="/path/to/flowers",
            help="The class folders may sit one or two levels down, as a Kaggle download has them.",
        )
        if st.button("Use this folder", type="primary") and folder.strip():
            try:
                session.choose_dataset(find_class_root(Path(folder.strip())))
                st.rerun()
            except FlowerLensError as exc:
                session.show_error(exc)
    else:
        handle = st.text_input("Kaggle dataset", value=DEFAULT_HANDLE)
        if st.button("Download", type="primary"):
            bar = st.progress(0.0, text="Contacting Kaggle…")

            def report(done: int, total: int) -> None:
                if total:
                    bar.progress(
                        min(done / total, 1.0), text=f"{done / 2**20:.0f} of {total / 2**20:.0f} MB"
                    )

            try:
                folder = download_dataset(handle.strip(), progress=report)
                session.choose_dataset(find_class_root(folder))
                st.rerun()
            except FlowerLensError as exc:
                bar.empty()
                session.show_error(exc)

path = session.dataset_path()
if path is None:
    st.info("Choose a folder above, or download the Kaggle flowers, to see the photos.")
    st.stop()
try:
    dataset: Dataset = session.scan_with_progress(path)
except FlowerLensError as exc:
    session.show_error(exc)
    st.stop()

counts = dataset.counts()
cols = st.columns(4)
cols[0].metric("photos", f"{len(dataset.records):,}")
cols[1].metric("classes", len(dataset.class_names))
cols[2].metric("smallest class", f"{min(counts.values()):,}")
cols[3].metric("skipped files", len(dataset.skipped))
st.caption(f"`{dataset.root}` · dataset id `{dataset.fingerprint}`")

photos_tab, classes_tab, skipped_tab, map_tab = st.tabs(
    ["Photos", "Classes and sizes", f"Skipped files ({len(dataset.skipped)})", "Feature map"]
)

# -- A grid of photos ----------------------------------------------------------------------------
with photos_tab:
    left, middle, right = st.columns([2, 1, 1])
    chosen = left.selectbox("Class", ["all classes", *dataset.class_names])
    if right.button("Reshuffle", icon=":material/shuffle:"):
        st.session_state["shuffle"] = st.session_state.get("shuffle", 0) + 1
    records = [
        r
        for r in dataset.records
        if chosen == "all classes" or dataset.class_names[r.label] == chosen
    ]
    order = np.random.default_rng(st.session_state.get("shuffle", 0)).permutation(len(records))
    pages = max(1, -(-len(records) // PER_PAGE))
    page = middle.number_input("Page", min_value=1, max_value=pages, value=1, step=1)
    shown = [records[i] for i in order[(page - 1) * PER_PAGE : page * PER_PAGE]]
    grid = st.columns(6)
    for i, record in enumerate(shown):
        with grid[i % 6]:
            st.image(
                str(dataset.path_of(record)),
                caption=f"{dataset.class_names[record.label]} · {Path(record.path).name}",
                width="stretch",
            )
    st.caption(f"{len(records):,} photos, page {page} of {pages}")

# -- Class balance and photo sizes ---------------------------------------------------------------
with classes_tab:
    left, right = st.columns(2)
    left.plotly_chart(figures.class_counts(counts), width="stretch")
    right.plotly_chart(
        figures.image_sizes(
            [r.width for r in dataset.records],
            [r.height for r in dataset.records],
            [dataset.class_names[r.label] for r in dataset.records],
        ),
        width="stretch",
    )

# -- What was left out, and why ------------------------------------------------------------------
with skipped_tab:
    if dataset.skipped:
        st.dataframe(
            pd.DataFrame([{"file": s.path, "reason": s.reason} for s in dataset.skipped]),
            hide_index=True,
            width="stretch",
        )
    else:
        st.success("Every file in the class folders is a usable photo.")


# -- The feature map -----------------------------------------------------------------------------
@st.cache_data(max_entries=8, show_spinner="Reading cached features…")
def cached_features(fingerprint: str, key: str, count: int, hashes: tuple[str, ...]):
    """Return (features, found) of the dataset's photos from one cache namespace."""
    return FeatureCache(key).get_many(hashes)


@st.cache_data(max_entries=8, show_spinner="Projecting…")
def projection(fingerprint: str, key: str, count: int, method: str, _features: np.ndarray):
    """Return the 2-D map of the features."""
    return project(_features, method)


with map_tab:
    st.markdown(
        "Each dot is a photo, placed by the 2,048 numbers ResNet50 turns it into. Photos of one "
        "kind that land together are what makes the head's job easy. Click a dot to see its photo."
    )
    hashes = tuple(r.sha256 for r in dataset.records)
    options = []
    for info in cache_infos():
        if info.count:
            features, found = cached_features(dataset.fingerprint, info.key, info.count, hashes)
            if found.any():
                options.append((info, features, found))
    job = session.job_board().running_on(dataset.fingerprint)
    if job is not None and job.kind == "features":
        session.watch_job(job)
    elif not options:
        weights = "imagenet" if weights_status().available else "none"
        st.info(
            "No features for these photos yet. They are computed once (the first training run "
            "does it too) and cached, so the map is instant afterwards."
        )
        label = "ImageNet" if weights == "imagenet" else "random weights (no transfer learning)"
        if st.button(f"Compute features ({label})", type="primary"):
            try:
                session.job_board().start_features(dataset, weights)
                st.rerun()
            except JobConflict as exc:
                session.show_error(exc)
    else:
        left, right = st.columns(2)
        index = left.selectbox(
            "Features from",
            range(len(options)),
            format_func=lambda i: (
                f"{options[i][0].weights_label} weights, {options[i][0].precision} "
                f"({int(options[i][2].sum()):,} of {len(hashes):,} photos)"
            ),
        )
        method = right.radio("Projection", METHODS, horizontal=True)
        info, features, found = options[index]
        rows = np.flatnonzero(found)
        if len(rows) < 3:
            st.info("Too few photos have features for a map.")
        else:
            points = projection(
                dataset.fingerprint, info.key, int(found.sum()), method, features[rows]
            )
            labels = [dataset.class_names[dataset.records[i].label] for i in rows]
            names = [dataset.records[i].path for i in rows]
            title = f"{method} of ResNet50 features · {info.weights_label} weights"
            event = st.plotly_chart(
                figures.embedding_scatter(points, labels, names, title),
                on_select="rerun",
                selection_mode="points",
                key="feature_map",
                width="stretch",
            )
            picked = [p for p in event.selection.points if p.get("customdata")]
            if picked:
                record = dataset.records[rows[int(picked[0]["customdata"][0])]]
                st.image(str(dataset.path_of(record)), caption=record.path, width=240)
