"""Figure builders: data in, the right plotly traces out."""

from __future__ import annotations

import numpy as np
import pytest

from flower_model.ui import figures


def ys(trace) -> list:
    return np.asarray(trace.y).tolist()


def test_probability_bars_are_sorted_with_the_top_class_highlighted() -> None:
    fig = figures.probability_bars(("daisy", "rose", "tulip"), (0.2, 0.7, 0.1))
    (bars,) = fig.data
    assert bars.orientation == "h"
    assert ys(bars) == ["tulip", "daisy", "rose"]  # plotly draws the last bar on top
    assert np.asarray(bars.x).tolist() == pytest.approx([0.1, 0.2, 0.7])
    assert bars.marker.color[-1] != bars.marker.color[0]
    assert list(bars.text) == ["10.0%", "20.0%", "70.0%"]


def test_card_bars_are_html_sorted_escaped_and_cut_to_the_top() -> None:
    names = ("daisy", "<b>rose</b>", "tulip", "iris", "lily", "aster", "poppy")
    drawn = figures.probability_rows_html(names, (0.05, 0.6, 0.1, 0.05, 0.1, 0.05, 0.05), top=3)
    assert "<b>rose</b>" not in drawn and "&lt;b&gt;rose&lt;/b&gt;" in drawn
    order = [drawn.index(n) for n in ("&lt;b&gt;rose", "tulip", "lily")]
    assert order == sorted(order) and "daisy" not in drawn and "and 4 more" in drawn
    assert "width:60.0%" in drawn and "60%" in drawn and drawn.count("#2ca02c") == 1


def test_training_curves_have_train_and_validation_per_epoch() -> None:
    history = {"loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.7, 0.6]}
    fig = figures.training_curves(history, "loss")
    assert [t.name for t in fig.data] == ["train", "validation"]
    assert np.asarray(fig.data[1].x).tolist() == [1, 2, 3]
    assert ys(fig.data[1]) == [1.1, 0.7, 0.6]


def test_each_epoch_is_marked_up_to_a_point_then_the_curve_is_a_line() -> None:
    def modes(epochs: int) -> set[str]:
        history = {"loss": [1.0] * epochs, "val_loss": [1.0] * epochs}
        return {trace.mode for trace in figures.training_curves(history, "loss").data}

    assert modes(figures.MARKED_EPOCHS) == {"lines+markers"}
    assert modes(figures.MARKED_EPOCHS + 1) == {"lines"}


def test_curves_fix_every_margin_and_put_the_legend_above_the_plot() -> None:
    fig = figures.training_curves({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}, "loss")
    layout = fig.layout
    assert layout.legend.y >= 1 and layout.legend.yanchor == "bottom"  # beside the title
    assert layout.xaxis.automargin is False and layout.yaxis.automargin is False
    # Set, and room left for the axes' titles and tick labels that no longer push them.
    assert layout.margin.l >= 40 and layout.margin.b >= 40 and layout.margin.t >= 30
    assert layout.margin.r is not None


def test_fine_tuning_is_marked_where_it_began() -> None:
    history = {"loss": [1.0, 0.5, 0.4, 0.3], "val_loss": [1.1, 0.7, 0.6, 0.5]}
    assert not figures.training_curves(history, "loss").layout.shapes
    (line,) = figures.training_curves(history, "loss", fine_tuned_after=2).layout.shapes
    assert line.x0 == line.x1 == 2.5  # between the head's last epoch and the first tuned one


def test_empty_history_still_draws() -> None:
    fig = figures.training_curves({"loss": [], "val_loss": []}, "accuracy")
    assert [len(t.y) for t in fig.data] == [0, 0]


def test_confusion_heatmap_keeps_rows_true_and_columns_predicted() -> None:
    fig = figures.confusion_heatmap([[3, 1], [0, 4]], ["a", "b"])
    assert np.asarray(fig.data[0].z).tolist() == [[3, 1], [0, 4]]
    assert list(fig.data[0].x) == ["a", "b"]


def test_class_counts_one_bar_per_class() -> None:
    fig = figures.class_counts({"daisy": 3, "rose": 5})
    assert sorted((t.x[0], t.y[0]) for t in fig.data) == [("daisy", 3), ("rose", 5)]


def test_embedding_points_carry_their_row_index() -> None:
    points = np.arange(8, dtype=float).reshape(4, 2)
    fig = figures.embedding_scatter(points, ["a", "b", "a", "b"], ["p0", "p1", "p2", "p3"], "map")
    rows = sorted(int(i) for trace in fig.data for i in np.asarray(trace.customdata).ravel())
    assert rows == [0, 1, 2, 3]
    assert {t.name for t in fig.data} == {"a", "b"}


def test_compare_curves_one_trace_per_run() -> None:
    fig = figures.compare_curves(
        {"r1": {"val_loss": [1, 0.5]}, "r2": {"val_loss": [2]}}, "val_loss"
    )
    assert [t.name for t in fig.data] == ["r1", "r2"]


def test_photo_sizes_are_one_dot_per_size_and_class_sized_by_count() -> None:
    widths = [320] * 1000 + [500, 500, 320]
    heights = [240] * 1000 + [375, 375, 240]
    labels = ["rose"] * 1000 + ["tulip", "tulip", "tulip"]
    fig = figures.image_sizes(widths, heights, labels)
    dots = {
        (trace.name, x, y): size
        for trace in fig.data
        for x, y, size in zip(trace.x, trace.y, trace.marker.size, strict=True)
    }
    assert dots == {("rose", 320, 240): 1000, ("tulip", 500, 375): 2, ("tulip", 320, 240): 1}
