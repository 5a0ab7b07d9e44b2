"""Pure figure builders: data in, plotly Figure (or a small HTML drawing) out, so tests can
check them without a browser."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

PALETTE = px.colors.qualitative.Set2
CURVE_COLOURS = {"train": "#1f77b4", "validation": "#ff7f0e"}


def percent(value: float) -> str:
    """Return a share as a whole percentage, with decimals only where rounding would claim
    0 % or 100 % for what is neither (a threshold of 0.9996 is not 100 %)."""
    for decimals in range(4):
        text = f"{value:.{decimals}%}"
        if (text.startswith("100") and value < 1) or (float(text[:-1]) == 0 and value > 0):
            continue
        return text
    return f"{value:.4%}"


TIDY_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def _tidy(fig: go.Figure, height: int = 320, margin: dict[str, int] = TIDY_MARGIN) -> go.Figure:
    fig.update_layout(height=height, margin=margin)
    return fig


def class_counts(counts: Mapping[str, int]) -> go.Figure:
    """Return a bar chart of photos per class."""
    names = list(counts)
    fig = px.bar(
        x=names,
        y=[counts[n] for n in names],
        color=names,
        color_discrete_sequence=PALETTE,
        labels={"x": "class", "y": "photos"},
        title="Photos per class",
        text_auto=True,
    )
    fig.update_layout(showlegend=False)
    return _tidy(fig)


def image_sizes(widths: Sequence[int], heights: Sequence[int], labels: Sequence[str]) -> go.Figure:
    """Return photo width against height, coloured by class: one dot per size and class, its
    area the number of photos (100,000 photos of a few sizes are a few dots, not 100,000)."""
    counts = Counter(zip(widths, heights, labels, strict=True))
    keys = sorted(counts, key=lambda key: (key[2], key[0], key[1]))
    fig = px.scatter(
        {
            "width (px)": [key[0] for key in keys],
            "height (px)": [key[1] for key in keys],
            "class": [key[2] for key in keys],
            "photos": [counts[key] for key in keys],
        },
        x="width (px)",
        y="height (px)",
        color="class",
        size="photos",
        size_max=28,
        color_discrete_sequence=PALETTE,
        title="Photo sizes (every photo is resized to 224×224 for the model)",
        opacity=0.6,
    )
    return _tidy(fig)


# Up to this many epochs a curve marks each one; beyond, a line alone (hundreds of markers are
# clutter, and cost every watching browser more to draw at each redraw).
MARKED_EPOCHS = 50
# Room for the title and legend above a curves figure, and for the axes' labels and titles
# (tick labels of up to five characters: plotly writes 12000 as 12k).
CURVES_MARGIN = {"l": 60, "r": 10, "t": 40, "b": 45}


def training_curves(
    history: Mapping[str, Sequence[float]],
    metric: str = "loss",
    fine_tuned_after: int | None = None,
) -> go.Figure:
    """Return train and validation curves of one metric ('loss' or 'accuracy') per epoch,
    with a line where fine-tuning began, if it did."""
    fig = go.Figure()
    for label, key in (("train", metric), ("validation", f"val_{metric}")):
        values = list(history.get(key, []))
        fig.add_trace(
            go.Scatter(
                x=list(range(1, len(values) + 1)),
                y=values,
                mode="lines+markers" if len(values) <= MARKED_EPOCHS else "lines",
                name=label,
                line={"color": CURVE_COLOURS[label]},
            )
        )
    fig.update_layout(
        title=metric.capitalize(),
        xaxis_title="epoch",
        yaxis_title=metric,
        xaxis={"rangemode": "tozero", "dtick": 1 if len(history.get(metric, [])) <= 20 else None},
        # The legend beside the title, where no curve goes, and every margin fixed: margins
        # that a legend below the plot and the axes' labels push make plotly measure and draw
        # the figure again (the two figures took 20 ms to draw in Chromium instead of 39 ms;
        # a watched training is redrawn every 2 s in every open tab).
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1, "yanchor": "bottom"},
    )
    fig.update_xaxes(automargin=False)
    fig.update_yaxes(automargin=False)
    if metric == "accuracy":
        fig.update_yaxes(range=[0, 1.02])
    if fine_tuned_after is not None:
        fig.add_vline(
            x=fine_tuned_after + 0.5,
            line_dash="dot",
            line_color="grey",
            annotation_text="fine-tuning",
            annotation_position="top left",
        )
    return _tidy(fig, margin=CURVES_MARGIN)


def compare_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], key: str) -> go.Figure:
    """Return one metric's curve for several runs, overlaid."""
    fig = go.Figure()
    for run_id, history in histories.items():
        values = list(history.get(key, []))
        fig.add_trace(
            go.Scatter(
                x=list(range(1, len(values) + 1)), y=values, mode="lines+markers", name=run_id
            )
        )
    fig.update_layout(
        title=key.replace("_", " "), xaxis_title="epoch", legend={"orientation": "h", "y": -0.3}
    )
    return _tidy(fig)


def confusion_heatmap(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> go.Figure:
    """Return the confusion matrix as a heatmap: rows true class, columns predicted class.

    Each cell also holds an invisible marker carrying (true, predicted, photos), so that a
    click on a cell selects it (Streamlit selects points, not heatmap cells)."""
    names = list(class_names)
    fig = px.imshow(
        np.asarray(confusion),
        x=names,
        y=names,
        text_auto=True,
        color_continuous_scale="Blues",
        labels={"x": "predicted", "y": "true", "color": "photos"},
        title="Confusion matrix · click a cell to see its photos",
    )
    cells = [(t, p) for t in range(len(names)) for p in range(len(names))]
    fig.add_trace(
        go.Scatter(
            x=[names[p] for _, p in cells],
            y=[names[t] for t, _ in cells],
            customdata=[(t, p, int(confusion[t][p])) for t, p in cells],
            mode="markers",
            marker={"size": 40, "symbol": "square", "opacity": 0.01},
            hovertemplate="true %{y}, predicted %{x}<extra></extra>",
            showlegend=False,
        )
    )
    return _tidy(fig, height=420)


def reliability_diagram(bins: Sequence, title: str = "Reliability") -> go.Figure:
    """Return each probability bin's accuracy against its mean confidence, with the diagonal
    a calibrated model would follow; bins hold ReliabilityBin values."""
    used = [b for b in bins if b.count]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="calibrated",
            line={"dash": "dot", "color": "grey"},
        )
    )
    fig.add_trace(
        go.Bar(
            x=[(b.lower + b.upper) / 2 for b in used],
            y=[b.accuracy for b in used],
            width=[(b.upper - b.lower) * 0.9 for b in used],
            name="accuracy",
            marker_color="#1f77b4",
            customdata=[[b.count, b.confidence] for b in used],
            hovertemplate="%{customdata[0]} photos, mean top probability %{customdata[1]:.0%}, "
            "right %{y:.0%}<extra></extra>",
        )
    )
    # Each bin's mean top probability over its bar: the gap to the bar is the miscalibration.
    fig.add_trace(
        go.Scatter(
            x=[(b.lower + b.upper) / 2 for b in used],
            y=[b.confidence for b in used],
            mode="markers",
            name="mean top probability",
            marker={"color": "#ff7f0e", "size": 9, "symbol": "line-ew-open", "line": {"width": 3}},
        )
    )
    fig.update_layout(
        title=title,
        xaxis={"range": [0, 1], "tickformat": ".0%", "title": "top-class probability"},
        yaxis={"range": [0, 1], "tickformat": ".0%", "title": "share right"},
        legend={"orientation": "h", "y": -0.3},
    )
    return _tidy(fig, height=360)


def coverage_figure(
    coverage: Sequence[float], accuracy: Sequence[float], chosen: tuple[float, float] | None
) -> go.Figure:
    """Return accuracy against the share of photos answered, as a "not sure" threshold rises;
    `chosen` marks the threshold in use (coverage, accuracy)."""
    fig = go.Figure(
        go.Scatter(
            x=list(coverage), y=list(accuracy), mode="lines", name="answered", line_shape="hv"
        )
    )
    if chosen is not None:
        fig.add_trace(
            go.Scatter(
                x=[chosen[0]],
                y=[chosen[1]],
                mode="markers",
                name="the Classify page's threshold",
                marker={"size": 12, "color": "#d62728"},
            )
        )
    fig.update_layout(
        title="Accuracy of the photos answered",
        xaxis={"range": [0, 1.02], "tickformat": ".0%", "title": "share of photos answered"},
        yaxis={"tickformat": ".0%", "title": "accuracy of those"},
        legend={"orientation": "h", "y": -0.3},
    )
    return _tidy(fig, height=360)


def probability_bars(
    class_names: Sequence[str], probabilities: Sequence[float], height: int = 260
) -> go.Figure:
    """Return a horizontal bar chart of softmax probabilities, most probable on top."""
    order = sorted(range(len(class_names)), key=lambda i: probabilities[i])
    names = [class_names[i] for i in order]
    values = [float(probabilities[i]) for i in order]
    colours = ["#2ca02c" if i == order[-1] else "#9ecae1" for i in order]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=names,
            orientation="h",
            marker_color=colours,
            text=[f"{v:.1%}" for v in values],
            textposition="auto",
        )
    )
    fig.update_traces(cliponaxis=False)  # the label of a bar near 100 % stays whole
    fig.update_layout(xaxis={"range": [0, 1.15], "tickformat": ".0%", "title": "probability"})
    return _tidy(fig, height=height)


# The bars of a card in a grid of photos: plain HTML, drawn with the page. A plotly chart a
# card made a page of nine to twelve photos take 2.6 to 5.2 s to draw in Chromium (measured,
# 20,000 photos); one chart, as Classify draws for each photo dropped, is quick.
CARD_BARS = 5
_BAR_ROW = (
    '<div style="display:flex;align-items:center;gap:6px;font-size:0.8rem;line-height:1.5">'
    '<span style="flex:0 0 38%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap">'
    "{name}</span>"
    '<span style="flex:1;background:rgba(128,128,128,0.15);height:0.7rem;border-radius:2px">'
    '<span style="display:block;height:100%;width:{width:.1f}%;background:{colour};'
    'border-radius:2px"></span></span>'
    '<span style="flex:0 0 3.2rem;text-align:right">{value}</span></div>'
)


def probability_rows_html(
    class_names: Sequence[str], probabilities: Sequence[float], top: int = CARD_BARS
) -> str:
    """Return a card's softmax probabilities as HTML bars, most probable first: the `top`
    classes, and how many more there are (class names are escaped)."""
    order = sorted(range(len(class_names)), key=lambda i: -float(probabilities[i]))
    rows = [
        _BAR_ROW.format(
            name=html.escape(class_names[i]),
            width=100.0 * min(max(float(probabilities[i]), 0.0), 1.0),
            colour="#2ca02c" if rank == 0 else "#9ecae1",
            value=percent(float(probabilities[i])),
        )
        for rank, i in enumerate(order[:top])
    ]
    if len(order) > top:
        rows.append(f'<div style="font-size:0.75rem;opacity:0.7">and {len(order) - top} more</div>')
    return '<div role="img" aria-label="probabilities">' + "".join(rows) + "</div>"


def embedding_scatter(
    points: np.ndarray, labels: Sequence[str], names: Sequence[str], title: str
) -> go.Figure:
    """Return a 2-D map of photos coloured by class; each point carries its row index."""
    fig = px.scatter(
        x=points[:, 0],
        y=points[:, 1],
        color=list(labels),
        hover_name=list(names),
        custom_data=[np.arange(len(points))],
        color_discrete_sequence=PALETTE,
        labels={"x": "component 1", "y": "component 2", "color": "class"},
        title=title,
    )
    fig.update_traces(marker={"size": 7, "opacity": 0.8})
    return _tidy(fig, height=520)


# A search's trials by how they ended.
TRIAL_COLOURS = {"complete": "#1f77b4", "pruned": "#bbbbbb", "diverged": "#d62728"}
TRIAL_SETTINGS = (
    ("learning_rate", "learning rate", "log"),
    ("batch_size", "batch size", "log"),
    ("epochs", "epochs (at most)", "linear"),
    ("dropout", "dropout", "linear"),
)


def trial_scores(trials: Sequence, best: int | None, dropout: bool = False) -> go.Figure:
    """Return each trial's cross-validated held-out loss (what the search ranks by; a trial
    cut short: its last) against each setting searched, one panel a setting, trials coloured
    by how they ended and the best one ringed."""
    from plotly.subplots import make_subplots

    settings = [s for s in TRIAL_SETTINGS if dropout or s[0] != "dropout"]
    fig = make_subplots(
        rows=1, cols=len(settings), shared_yaxes=True, horizontal_spacing=0.03,
        subplot_titles=[title for _, title, _ in settings],
    )  # fmt: skip
    for col, (name, _, scale) in enumerate(settings, start=1):
        for state, colour in TRIAL_COLOURS.items():
            shown = [t for t in trials if t.state == state and t.loss is not None]
            fig.add_trace(
                go.Scatter(
                    x=[getattr(t, name) for t in shown],
                    y=[t.loss for t in shown],
                    mode="markers",
                    name=state,
                    legendgroup=state,
                    showlegend=col == 1 and bool(shown),
                    marker={"color": colour, "size": 8},
                    text=[f"trial {t.number + 1}, {t.ended}" for t in shown],
                    hovertemplate="%{text}: loss %{y:.3g}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        chosen = [t for t in trials if t.number == best]
        fig.add_trace(
            go.Scatter(
                x=[getattr(t, name) for t in chosen],
                y=[t.loss for t in chosen],
                mode="markers",
                name="best",
                showlegend=col == 1 and bool(chosen),
                marker={
                    "color": "rgba(0,0,0,0)",
                    "size": 16,
                    "line": {"color": "#2ca02c", "width": 3},
                },
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(type=scale, row=1, col=col)
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text="held-out loss (lower is better)", row=1, col=1)
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    return _tidy(fig, height=320)


def range_test_curve(
    rates: Sequence[float], losses: Sequence[float], suggested: float | None
) -> go.Figure:
    """Return the learning-rate range test: the smoothed loss against the rate (log scale),
    with the suggested rate marked."""
    fig = go.Figure(
        go.Scatter(
            x=list(rates), y=list(losses), mode="lines", name="loss", line={"color": "#1f77b4"}
        )
    )
    if suggested is not None and len(losses):
        # A trace, not add_vline: a shape's annotation lands elsewhere on a log axis.
        fig.add_trace(
            go.Scatter(
                x=[suggested, suggested],
                y=[min(losses), max(losses)],
                mode="lines",
                name=f"steepest fall: {suggested:.1e}",
                line={"color": "#2ca02c", "dash": "dash"},
            )
        )
    fig.update_layout(
        title="Learning-rate range test",
        xaxis={"type": "log", "title": "learning rate", "exponentformat": "power"},
        yaxis={"title": "loss (smoothed)"},
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1, "yanchor": "bottom"},
    )
    return _tidy(fig, height=320)
