"""Explore: choose the photos, look at them, and see how ResNet50 places them on a map."""

from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import streamlit as st

from flower_model.core.errors import FlowerLensError
from flower_model.data import owners, uploads
from flower_model.data.dataset import Dataset, find_class_root
from flower_model.data.download import DEFAULT_HANDLE, download_dataset
from flower_model.data.images import MAX_FILE_BYTES
from flower_model.data.roots import ROOTS_ENV, DataRoots
from flower_model.data.uploads import Photo, UploadReport
from flower_model.features.cache import FeatureSet, cache_infos, feature_sets
from flower_model.features.embedding import (
    MAP_POINTS,
    METHODS,
    TSNE_POINTS,
    FeatureMap,
    feature_map,
)
from flower_model.model.backbone import default_weights
from flower_model.service.jobs import JobConflict
from flower_model.ui import figures, session

PER_PAGE = 18
# The open tab's label, in the session's state (tests open a tab by setting it).
VIEW_KEY = "explore-view"


def folder_label(folder: Path, data_roots: DataRoots) -> str:
    """Return a dataset folder as a visitor should see it: relative to its root."""
    for root in data_roots.folders:
        if folder.is_relative_to(root):
            inside = folder.relative_to(root).as_posix()
            return f"{root.name}/{inside}" if inside != "." else root.name
    return str(folder)


def folder_ui(current: Path | None) -> Path | None:
    """Draw the choice among the dataset folders on this server; return the one just chosen."""
    data_roots = session.data_roots()
    choices = session.dataset_choices()
    if choices:
        picked = st.selectbox(
            "Dataset folder",
            choices,
            index=choices.index(current) if current in choices else None,
            format_func=lambda folder: folder_label(folder, data_roots),
            placeholder="Choose a dataset",
            help="The folders with one sub-folder per class that this server shares.",
        )
        if picked is not None and picked != current:
            return picked
    else:
        st.info("This server shares no dataset folder yet: upload photos or download them.")
    if data_roots.listed:
        typed = st.text_input(
            "Or type a folder under the shared folders",
            placeholder=str(data_roots.shared[0]) if data_roots.shared else "/path/to/flowers",
        )
        if st.button("Use the typed folder") and typed.strip():
            return data_roots.check(find_class_root(data_roots.check(Path(typed.strip()))))
    shared = ", ".join(f"`{root}`" for root in data_roots.shared) or "none"
    st.caption(
        f"Shared folders: {shared}, and this app's own downloads and uploads. Whoever runs the "
        f"server sets them with `${ROOTS_ENV}`."
    )
    return None


def download_ui() -> Path | None:
    """Draw the Kaggle download; return the class root of what was just downloaded."""
    # The flowers only: what a visitor may make the server download is not theirs to choose
    # (the command line downloads any handle).
    handle = st.text_input("Kaggle dataset", value=DEFAULT_HANDLE, disabled=True)
    if not st.button("Download", type="primary"):
        return None
    bar = st.progress(0.0, text="Contacting Kaggle…")

    def report(done: int, total: int) -> None:
        if total:
            megabytes = f"{done / 2**20:.0f} of {total / 2**20:.0f} MB"
            bar.progress(min(done / total, 1.0), text=megabytes)
        elif done:  # kagglehub does not tell the total: the bytes so far
            bar.progress(0.0, text=f"Downloading from Kaggle: {done / 2**20:.0f} MB so far")

    try:
        return find_class_root(download_dataset(handle.strip(), progress=report))
    finally:
        bar.empty()
        session.forget_dataset_choices()


def report_ui(report: UploadReport) -> None:
    """Draw what an upload added, and each refused file with its reason."""
    added = ", ".join(f"{name} {count}" for name, count in report.added.items())
    if report.total_added:
        st.success(f"Added {report.total_added} photo(s): {added}.")
    if report.refused:
        st.warning(f"{len(report.refused)} file(s) not added:")
        st.dataframe(
            pd.DataFrame([{"file": r.path, "reason": r.reason} for r in report.refused]),
            hide_index=True,
            width="stretch",
        )


def photos_to_add_ui() -> tuple[str | None, list[Photo], bytes | None]:
    """Draw the ways to add photos; return (class, photos) for one class, or a zip's bytes."""
    limit = f"up to {MAX_FILE_BYTES // 2**20} MB a file"
    how = st.radio(
        "Add", ["Photos of one class", "A .zip of class folders"], horizontal=True, key="how"
    )
    if how == "A .zip of class folders":
        upload = st.file_uploader(
            f"A .zip laid out <class>/<photo> ({limit})", type=["zip"], key="zip"
        )
        limits_caption()
        return None, [], upload.getvalue() if upload is not None else None
    class_name = st.text_input("Class", placeholder="daisy", key="class_name")
    photos = session.photos_ui("Photos of this class", key="class_photos")
    limits_caption()
    return class_name, photos, None


def limits_caption() -> None:
    """Say how much a dataset may hold on this server (the host's settings)."""
    try:
        limits = uploads.upload_limits()
    except FlowerLensError as exc:
        session.show_error(exc)
        return
    st.caption(
        f"A dataset holds up to {limits.photos:,} photos and {limits.dataset_bytes / 2**20:,.0f} "
        f"MB; all uploaded datasets together up to {limits.all_bytes / 2**30:,.1f} GB "
        "(this server's settings)."
    )


def upload_ui() -> Path | None:
    """Draw the uploaded datasets: start one, add photos to it, delete it; return the one the
    visitor should now look at."""
    me = session.visitor()
    # Only this visitor's own datasets can be added to, shared or deleted; others' are theirs.
    existing = owners.owned_by(me, uploads.uploaded_datasets())
    left, right = st.columns([3, 2])
    picked = left.selectbox(
        "Uploaded dataset",
        [None, *existing],
        format_func=lambda f: "A new dataset" if f is None else f.name,
        key="uploaded_dataset",
    )
    name = None
    if picked is None:
        name = right.text_input("Its name", placeholder="my flowers", key="new_dataset_name")
    else:
        if right.button("Delete this dataset", icon=":material/delete:"):
            uploads.delete_dataset(picked, owner=me)
            session.forget_dataset_choices()
            st.rerun()
        share_ui(picked)
    class_name, photos, zip_bytes = photos_to_add_ui()
    if not st.button("Add", type="primary", disabled=not (photos or zip_bytes)):
        return None

    def fill(folder: Path) -> UploadReport:
        if zip_bytes is not None:
            return uploads.add_zip(folder, zip_bytes, owner=me)
        return uploads.add_photos(folder, class_name or "", photos, owner=me)

    report = (
        uploads.create_dataset_with(name or "", fill, owner=me) if picked is None else fill(picked)
    )
    if not report.total_added:
        report_ui(report)
        return None
    st.session_state["upload_report"] = report
    session.forget_dataset_choices()
    return report.dataset


def share_ui(folder: Path) -> None:
    """Show the link that opens one of this visitor's uploads for someone else: it carries
    the dataset's secret token (the dataset is private without it)."""
    query = urlencode({"data": str(folder), "share": owners.ownership_of(folder).token})
    page = (st.context.url or "").split("?")[0]  # None outside a browser (a test)
    link = f"{page}?{query}"
    st.caption("Private to you. Anyone with this link can open it, to look and to train:")
    st.code(link, language=None)


def source_ui(current: Path | None) -> Path | None:
    """Draw where the photos come from; return a dataset folder the visitor just chose."""
    with st.container(border=True):
        source = st.radio(
            "Photos from",
            ["A folder on this server", "Upload photos", "Download from Kaggle"],
            horizontal=True,
        )
        if source == "A folder on this server":
            return folder_ui(current)
        if source == "Upload photos":
            return upload_ui()
        return download_ui()


def summary_ui(dataset: Dataset) -> None:
    """Draw the dataset's numbers: photos, classes, smallest class, skipped files."""
    counts = dataset.counts()
    cols = st.columns(4)
    cols[0].metric("photos", f"{len(dataset.records):,}")
    cols[1].metric("classes", len(dataset.class_names))
    cols[2].metric("smallest class", f"{min(counts.values()):,}")
    cols[3].metric("skipped files", len(dataset.skipped))
    st.caption(f"`{dataset.root}` · dataset id `{dataset.fingerprint}`")


def photo_grid_ui(dataset: Dataset) -> None:
    """Draw a paged, shuffled grid of the photos of one class or all."""
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
            session.photo_ui(
                dataset.path_of(record),
                f"{dataset.class_names[record.label]} · {Path(record.path).name}",
            )
    st.caption(f"{len(records):,} photos, page {page} of {pages}")


def classes_ui(dataset: Dataset) -> None:
    """Draw photos per class and the photos' sizes."""
    left, right = st.columns(2)
    left.plotly_chart(figures.class_counts(dataset.counts()), width="stretch")
    right.plotly_chart(
        figures.image_sizes(
            [r.width for r in dataset.records],
            [r.height for r in dataset.records],
            [dataset.class_names[r.label] for r in dataset.records],
        ),
        width="stretch",
    )


def skipped_ui(dataset: Dataset) -> None:
    """Draw what was left out of the dataset, and why."""
    if not dataset.skipped:
        st.success("Every file in the class folders is a usable photo.")
        return
    st.dataframe(
        pd.DataFrame([{"file": s.path, "reason": s.reason} for s in dataset.skipped]),
        hide_index=True,
        width="stretch",
    )


@st.cache_data(max_entries=8, show_spinner="Looking up cached features…")
def cached_feature_sets(
    fingerprint: str, namespaces: tuple[tuple[str, int], ...], _hashes: tuple[str, ...]
) -> list[FeatureSet]:
    """Return which namespaces hold the dataset's features; looked up again when one grows."""
    return feature_sets(_hashes)


@st.cache_data(max_entries=8, show_spinner="Placing the photos on the map…")
def cached_map(
    fingerprint: str, namespace: str, count: int, method: str, _chosen: FeatureSet,
    _hashes: tuple[str, ...],
) -> FeatureMap:  # fmt: skip
    """Return the map of the `count` photos of one namespace (a sample beyond MAP_POINTS)."""
    return feature_map(_chosen.cache, _hashes, method)


def compute_features_ui(dataset: Dataset) -> None:
    """Offer to fill the feature cache for the dataset, with the weights this machine has."""
    weights = default_weights()
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


def background_features_ui(dataset: Dataset) -> None:
    """Compute the dataset's features in the worker as soon as it is chosen, unless the
    visitor turned that off, so that the first click on Train finds them ready; show a
    features job's progress and Stop (or how the last one failed)."""
    board = session.job_board()
    on = st.toggle(
        "Compute features in the background",
        value=session.background_features_default(),
        key="background-features",
        help="As soon as a dataset is chosen, ResNet50 runs once over the photos that have no "
        "cached features yet (in the worker, one job at a time), so that training, the feature "
        "map and the audit start at once. Off: they are computed when first needed.",
    )
    job = board.running_on(dataset.fingerprint, kind="features")
    weights = default_weights()
    asked: set = st.session_state.setdefault("background-features-asked", set())
    if job is None and on and (dataset.fingerprint, weights) not in asked:
        asked.add((dataset.fingerprint, weights))  # once per visit: a Stop is respected
        job = board.features_in_background(dataset, weights)
    if job is not None:
        session.watch_job(job)
        return
    last = board.latest(dataset.fingerprint, "features")
    if last is not None and last.status == "failed":
        st.error(f"Computing the features failed: {last.error}", icon=":material/error:")
    if last is not None and last.status == "interrupted":
        session.interrupted_ui(last, lambda: board.start_again(last, dataset))


def feature_map_ui(dataset: Dataset) -> None:
    """Draw the map of the cached features; a click on a dot shows its photo."""
    st.markdown(
        "Each dot is a photo, placed by the 2,048 numbers ResNet50 turns it into. Photos of one "
        "kind that land together are what makes the head's job easy. Click a dot to see its photo."
    )
    if session.job_board().running_on(dataset.fingerprint, kind="features") is not None:
        st.info("The features are being computed (progress above the tabs); the map follows.")
        return
    namespaces = tuple((info.key, info.count) for info in cache_infos())
    hashes = tuple(r.sha256 for r in dataset.records)
    sets = cached_feature_sets(dataset.fingerprint, namespaces, hashes)
    if not sets:
        compute_features_ui(dataset)
        return
    left, right = st.columns(2)
    index = left.selectbox("Features from", range(len(sets)), format_func=lambda i: sets[i].label)
    method = right.radio("Projection", METHODS, horizontal=True)
    chosen = sets[index]
    count = int(chosen.found.sum())
    if count < 3:
        st.info("Too few photos have features for a map.")
        return
    drawn = cached_map(dataset.fingerprint, chosen.info.key, count, method, chosen, hashes)
    if drawn.sampled:
        limit = MAP_POINTS if method == "PCA" else TSNE_POINTS
        st.caption(
            f"A random sample of {len(drawn.rows):,} of the {drawn.total:,} photos with features "
            f"({method} maps {limit:,} at most"
            + (", on the axes of every photo)." if method == "PCA" else ").")
        )
    rows = drawn.rows
    title = f"{method} of ResNet50 features · {chosen.info.weights_label} weights"
    event = st.plotly_chart(
        figures.embedding_scatter(
            drawn.points,
            [dataset.class_names[dataset.records[i].label] for i in rows],
            [dataset.records[i].path for i in rows],
            title,
        ),
        on_select="rerun",
        selection_mode="points",
        key="feature_map",
        width="stretch",
    )
    picked = [p for p in event.selection.points if p.get("customdata")]
    if picked:
        record = dataset.records[rows[int(picked[0]["customdata"][0])]]
        with st.container(width=240):
            session.photo_ui(dataset.path_of(record), record.path)


session.through_app_navigation()
st.title("Explore the dataset")
path = session.dataset_path()
dataset, problem = None, None
if path is not None:
    try:
        dataset = session.scan_with_progress(path)
    except FlowerLensError as exc:
        problem = exc
try:
    chosen_root = source_ui(dataset.root if dataset else None)
    if chosen_root is not None:
        session.choose_dataset(chosen_root)
        st.rerun()
except FlowerLensError as exc:
    session.show_error(exc)
if "upload_report" in st.session_state:
    report_ui(st.session_state.pop("upload_report"))
if problem is not None:
    session.show_error(problem)
if dataset is None:
    st.info("Choose a dataset above, or download the Kaggle flowers, to see the photos.")
    st.stop()

summary_ui(dataset)
background_features_ui(dataset)
st.page_link(
    "pages/data_issues.py",
    label="Look for data issues: mislabelled photos, duplicates, outliers",
    icon=":material/fact_check:",
)
# Only the open tab is drawn (a plain st.tabs computes every tab on every rerun).
views = {
    "Photos": photo_grid_ui,
    "Classes and sizes": classes_ui,
    f"Skipped files ({len(dataset.skipped)})": skipped_ui,
    "Feature map": feature_map_ui,
}
for tab, view in zip(
    st.tabs(list(views), key=VIEW_KEY, on_change="rerun"), views.values(), strict=True
):
    if tab.open:
        with tab:
            view(dataset)
