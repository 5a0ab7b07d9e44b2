"""Data issues: the chosen dataset's audit (mislabelled photos, duplicates, outliers), and
the decisions a person takes on what it found (leave out, relabel, undo)."""

import pandas as pd
import streamlit as st

from flower_model.audit.findings import (
    Audit,
    PhotoFinding,
    exclusion,
    group_decisions,
    kept_audits,
    relabelling,
    suggested_decisions,
)
from flower_model.core.errors import DatasetError, FlowerLensError
from flower_model.core.workspace import describe_failure
from flower_model.data.dataset import Dataset
from flower_model.data.decisions import (
    Decision,
    Decisions,
    decide_all,
    in_force,
    load_decisions,
    undo,
    undo_all,
)
from flower_model.data.groups import DuplicateGroup
from flower_model.model.backbone import default_weights
from flower_model.service.jobs import JobConflict
from flower_model.ui import figures, session

# The decisions that apply to the dataset shown, by photo (decisions.in_force).
Current = dict[str, Decision]
# Findings drawn per page.
FINDINGS_PER_PAGE = 9


def audit_start_ui(dataset: Dataset) -> None:
    """Say what an audit finds, and offer to run one with the weights this machine has."""
    weights = default_weights()
    st.markdown(
        "An audit looks for photos **filed under the wrong flower**, **duplicates** (the same "
        "picture twice, even resized or saved again: one copy in training and one in "
        "validation inflates the accuracy), and photos that are **none of these flowers**. "
        "Each photo is judged by a head that never trained on it (5 heads, each trained on "
        "the other four fifths of the cached features), then by cleanlab."
    )
    label = "ImageNet" if weights == "imagenet" else "random weights (no transfer learning)"
    if st.button(f"Audit this dataset ({label})", type="primary", icon=":material/fact_check:"):
        try:
            session.watch_job(session.job_board().start_audit(dataset, weights))
        except JobConflict as exc:
            session.show_error(exc)


def acting(action, *args) -> None:
    """Run a decision's action from a button; keep an error for the page to show in one line
    (a photo may have gone since the page was drawn)."""
    try:
        action(*args, owner=session.visitor())  # a visitor's decisions are their own
    except (FlowerLensError, OSError) as exc:
        st.session_state["decision-error"] = describe_failure(exc)


def decision_note(current: Current, path: str) -> str | None:
    """Return what was decided about a photo, in words, or None (also when the photo changed
    since: the decision no longer applies)."""
    decision = current.get(path)
    if decision is None:
        return None
    return "left out" if decision.action == "exclude" else f"counted as {decision.label}"


def finding_ui(dataset: Dataset, finding: PhotoFinding, current: Current) -> None:
    """Draw one photo finding: the photo, what it is filed as and looks like, its bars, and
    the buttons that act on it (or undo what was decided)."""
    with st.container(border=True):
        with st.container(width=200):
            session.photo_ui(dataset.root / finding.path, finding.path)
        st.markdown(
            f"filed under **{finding.given}** · looks like **{finding.suggested}** · "
            f"score {finding.score:.2f}"
        )
        st.html(figures.probability_rows_html(dataset.class_names, finding.probabilities))
        note = decision_note(current, finding.path)
        if note is not None:
            st.caption(f"Decided: {note}.")
            st.button(
                "Undo",
                key=f"undo-{finding.kind}-{finding.path}",
                on_click=acting,
                args=(undo, dataset, finding.path),
                icon=":material/undo:",
            )
            return
        if finding.suggested != finding.given:
            st.button(
                f"Count as {finding.suggested}",
                key=f"relabel-{finding.kind}-{finding.path}",
                on_click=acting,
                args=(decide_all, dataset, [relabelling(finding)]),
                width="stretch",
            )
        st.button(
            "Leave out",
            key=f"exclude-{finding.kind}-{finding.path}",
            on_click=acting,
            args=(decide_all, dataset, [exclusion(finding)]),
            width="stretch",
        )


def group_ui(dataset: Dataset, index: int, group: DuplicateGroup, current: Current) -> None:
    """Draw one duplicate group side by side, with what it risks and a button to keep one."""
    with st.container(border=True):
        kind = "The same bytes" if group.exact else "Near-duplicates (resized or saved again)"
        notes = [kind]
        if group.conflicting:
            notes.append("**filed under different classes**")
        if group.leak:
            notes.append("**a plain split puts them on both sides** (a leak)")
        st.markdown(" · ".join(notes))
        columns = st.columns(min(len(group.paths), 4))
        for i, (path, label) in enumerate(zip(group.paths, group.labels, strict=True)):
            with columns[i % len(columns)]:
                note = decision_note(current, path)
                session.photo_ui(
                    dataset.root / path, f"{label} · {path}" + (f" · {note}" if note else "")
                )
        decided_here = [p for p in group.paths if decision_note(current, p)]
        if decided_here:
            st.button(
                "Undo",
                key=f"undo-group-{index}",
                icon=":material/undo:",
                on_click=acting,
                args=(undo, dataset, *decided_here),
            )
            return
        label = "Leave them all out" if group.conflicting else "Keep the first, leave out the rest"
        st.button(
            label,
            key=f"keep-{index}",
            on_click=acting,
            args=(decide_all, dataset, group_decisions(group)),
        )


def paged(items: list, key: str) -> list:
    """Return one page of the items, with a page picker when there are several."""
    pages = max(1, -(-len(items) // FINDINGS_PER_PAGE))
    page = 1
    if pages > 1:
        page = st.number_input(f"Page (of {pages})", 1, pages, 1, key=f"page-{key}")
    return items[(page - 1) * FINDINGS_PER_PAGE : page * FINDINGS_PER_PAGE]


def findings_ui(dataset: Dataset, audit: Audit, kind: str, current: Current) -> None:
    """Draw one kind of finding, worst first, a page at a time, with a button for all."""
    if kind == "duplicate":
        items = list(enumerate(audit.duplicates))
        explain = "Photos that are one picture. Training always keeps each group on one side."
    else:
        items = list(audit.label_issues if kind == "label" else audit.outliers)
        explain = (
            "Photos whose folder disagrees with what a head that never saw them says, surest first."
            if kind == "label"
            else "Photos far from every other photo: maybe none of these flowers."
        )
    st.caption(explain)
    if not items:
        st.success("None found.")
        return
    wanted = [w for w in suggested_decisions(audit, [kind]) if not decision_note(current, w.path)]
    if wanted:
        st.button(
            f"Apply all {len(wanted)} suggestions of this list",
            key=f"apply-{kind}",
            on_click=acting,
            args=(decide_all, dataset, wanted),
            help="Label issues: count each as the class suggested; outliers: leave them out; "
            "duplicates: keep the first photo of each group. Undo any of them below.",
        )
    grid = st.columns(3)
    for i, item in enumerate(paged(items, kind)):
        with grid[i % 3]:
            if kind == "duplicate":
                group_ui(dataset, *item, current)
            else:
                finding_ui(dataset, item, current)


def decisions_ui(dataset: Dataset, decisions: Decisions) -> None:
    """Draw every decision about the dataset, each undoable, and what training will use."""
    if not decisions.items:
        st.info("No photo left out or relabelled: training uses the folder as it is.")
        return
    st.caption(
        "Training uses these (the photo folder itself is not touched), and each run records "
        "the photos and classes it was trained with."
    )
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "photo": d.path,
                    "decision": "leave out" if d.action == "exclude" else f"count as {d.label}",
                    "why": d.reason,
                }
                for d in decisions.items
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    left, right = st.columns([3, 1])
    path = left.selectbox("Undo the decision about", [d.path for d in decisions.items])
    left.button("Undo", on_click=acting, args=(undo, dataset, path), icon=":material/undo:")
    right.button(
        "Undo all", on_click=acting, args=(undo_all, dataset), icon=":material/restart_alt:"
    )


def audit_ui(dataset: Dataset) -> None:
    """Draw the dataset's audit: start one, watch it, or show what it found and act on it."""
    if session.dataset_job_ui(dataset.fingerprint, "audit", "The audit failed", dataset):
        return
    audits = kept_audits(dataset.fingerprint)
    if not audits:
        audit_start_ui(dataset)
        return
    audit = audits[0]
    if len(audits) > 1:
        audit = st.selectbox(
            "Audit", audits, format_func=lambda a: f"{a.weights_label} weights, {a.created}"
        )
    if not audit.transfer_learning:
        st.warning(
            "This audit used features of **random weights (no transfer learning)**: they do not "
            "know what a flower looks like, so its findings are not meaningful. Audit with the "
            "ImageNet weights to trust them.",
            icon=":material/casino:",
        )
    if "decision-error" in st.session_state:
        st.error(st.session_state.pop("decision-error"), icon=":material/error:")
    try:
        decisions = load_decisions(dataset.root, session.visitor())
    except DatasetError as exc:
        session.show_error(exc)
        return
    cols = st.columns(5)
    cols[0].metric("label issues", len(audit.label_issues))
    cols[1].metric("outliers", len(audit.outliers))
    cols[2].metric("duplicate groups", len(audit.duplicates))
    cols[3].metric("leaks in a plain split", len(audit.leaks))
    current = in_force(dataset, decisions)
    cols[4].metric("decided", len(current))
    small = ", ".join(audit.small_classes)
    st.caption(
        f"Out-of-sample accuracy {audit.accuracy:.1%} ({audit.folds} folds, "
        f"{audit.seconds:.1f} s, {audit.weights_label} weights)."
        + (f" Much smaller than the others: **{small}**." if small else "")
    )
    names = {
        "label": f"Label issues ({len(audit.label_issues)})",
        "outlier": f"Outliers ({len(audit.outliers)})",
        "duplicate": f"Duplicates ({len(audit.duplicates)})",
        "decisions": f"Decisions ({len(decisions.items)})",
    }
    kind = (
        st.segmented_control(
            "Show", list(names), format_func=names.__getitem__, default="label", key="audit-kind"
        )
        or "label"
    )
    if kind == "decisions":
        decisions_ui(dataset, decisions)
    else:
        findings_ui(dataset, audit, kind, current)


session.through_app_navigation()
st.title("Data issues")
path = session.dataset_path()
if path is None:
    st.info("Choose a dataset on Explore first: its audit shows here.")
    st.page_link("pages/explore.py", label="Explore", icon=":material/photo_library:")
    st.stop()
try:
    dataset = session.scan_with_progress(path)
except FlowerLensError as exc:
    session.show_error(exc)
    st.stop()
st.caption(f"{dataset.root} · {len(dataset.records):,} photos")
audit_ui(dataset)
