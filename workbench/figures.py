"""Plotly figures shared by the notebooks, the app and the benchmark reports.

Each function takes plain data (rows, tensors) and returns a ``plotly.graph_objects.Figure``;
none computes anything it could get from the package.
"""
from __future__ import annotations

import plotly.graph_objects as go

FAMILY_COLOURS = {"frozen": "#1f77b4", "adapted": "#d62728"}


def strategy_comparison(rows: list[dict], score: str = "twin_acc",
                        score_label: str = "order-twin accuracy (%)") -> go.Figure:
    """Score against trainable parameters (log scale), one marker per strategy, coloured by family."""
    fig = go.Figure()
    for family, colour in FAMILY_COLOURS.items():
        mine = [r for r in rows if r["family"] == family]
        if not mine:
            continue
        fig.add_trace(go.Scatter(
            x=[max(1, r["trainable_params"]) for r in mine], y=[r[score] for r in mine],
            mode="markers+text", text=[r["strategy"] for r in mine], textposition="top center",
            marker=dict(size=11, color=colour), name=f"{family} features",
            hovertemplate="%{text}<br>trainable %{x:,}<br>" + score_label + " %{y}<extra></extra>"))
    fig.update_layout(xaxis=dict(type="log", title="trainable parameters (log)"),
                      yaxis=dict(title=score_label), template="plotly_white",
                      title="Strategies: what they train against what they get")
    if score == "twin_acc":
        fig.add_hline(y=50, line_dash="dot", annotation_text="chance (order-blind)")
    return fig


def similarity_matrix(sim, row_labels: list[str], col_labels: list[str], title: str = "similarity") -> go.Figure:
    """Heatmap of a [rows, cols] similarity matrix (e.g. captions x videos)."""
    values = sim.tolist() if hasattr(sim, "tolist") else sim
    fig = go.Figure(go.Heatmap(z=values, x=col_labels, y=row_labels, colorscale="Viridis"))
    fig.update_layout(title=title, template="plotly_white", yaxis=dict(autorange="reversed"))
    return fig


def grounding_timeline(curve, times, pred_windows=None, gt_windows=None, query: str = "",
                       curve_label: str = "query similarity", second_curve=None,
                       second_label: str = "query activity") -> go.Figure:
    """A query's score over time (one value per sampled frame at ``times`` seconds), with the
    predicted windows (orange, the first one darkest) and the true ones (green) shaded behind it;
    ``second_curve`` (same times, e.g. the zero-shot query activity) on a right-hand axis."""
    fig = go.Figure(go.Scatter(x=list(times), y=[float(v) for v in curve], mode="lines+markers",
                               name=curve_label, line=dict(color="#1f77b4")))
    if second_curve is not None:
        fig.add_trace(go.Scatter(x=list(times), y=[float(v) for v in second_curve], mode="lines",
                                 name=second_label, yaxis="y2", line=dict(color="#9467bd", dash="dot")))
        fig.update_layout(yaxis2=dict(title=second_label, overlaying="y", side="right", showgrid=False),
                          legend=dict(orientation="h", y=-0.25))
    for k, window in enumerate(pred_windows or []):
        # only the first window is labelled (plotly writes "new text" on an annotation without text)
        label = dict(annotation_text="predicted", annotation_position="top left") if k == 0 else {}
        fig.add_vrect(x0=window[0], x1=window[1], fillcolor="#ff7f0e", line_width=0,
                      opacity=0.35 if k == 0 else 0.12, layer="below", **label)
    for window in gt_windows or []:
        fig.add_vrect(x0=window[0], x1=window[1], fillcolor="#2ca02c", line_width=2, line_color="#2ca02c",
                      opacity=0.2, layer="below", annotation_text="true", annotation_position="bottom left")
    fig.update_layout(title=query or curve_label, template="plotly_white",
                      xaxis=dict(title="time (s)"), yaxis=dict(title=curve_label))
    return fig


# Inferno whose low end is see-through: an overlay that leaves the frame visible where the map is low.
OVERLAY_COLOURS = [[0.0, "rgba(0,0,4,0)"], [0.15, "rgba(40,11,84,0.25)"], [0.4, "rgba(136,34,106,0.6)"],
                   [0.7, "rgba(228,90,49,0.85)"], [1.0, "rgba(252,255,164,0.95)"]]


def frame_grid(frames, heatmaps=None, boxes=None, true_boxes=None, titles=None, columns: int = 4,
               opacity: float = 0.5, colorscale="Inferno") -> go.Figure:
    """Frames side by side (uint8 ``[T,3,H,W]`` or ``[T,H,W,3]``), each optionally overlaid with a
    heatmap (``[T,h,w]`` on any grid, e.g. :class:`workbench.explain.Explanation` maps), a
    predicted box (orange) and a true box (green), ``[x1,y1,x2,y2]`` pixels or None per frame.
    ``colorscale=OVERLAY_COLOURS`` (with ``opacity=1``) keeps low-scoring regions transparent."""
    import numpy as np
    from plotly.subplots import make_subplots

    pixels = np.asarray(frames.numpy() if hasattr(frames, "numpy") else frames)
    if pixels.ndim != 4:
        raise ValueError(f"frames must be [T,3,H,W] or [T,H,W,3], got shape {pixels.shape}")
    if pixels.shape[1] == 3 and pixels.shape[-1] != 3:
        pixels = pixels.transpose(0, 2, 3, 1)
    count, height, width = pixels.shape[:3]
    rows = -(-count // columns)
    fig = make_subplots(rows=rows, cols=min(columns, count), subplot_titles=list(titles) if titles else None,
                        horizontal_spacing=0.02, vertical_spacing=0.08)
    maps = None if heatmaps is None else np.asarray(heatmaps.numpy() if hasattr(heatmaps, "numpy") else heatmaps)
    for i in range(count):
        row, col = i // columns + 1, i % columns + 1
        fig.add_trace(go.Image(z=pixels[i]), row=row, col=col)
        if maps is not None:
            h, w = maps[i].shape
            fig.add_trace(go.Heatmap(z=maps[i], x=(np.arange(w) + 0.5) * width / w, y=(np.arange(h) + 0.5) * height / h,
                                     colorscale=colorscale, opacity=opacity, showscale=i == 0,
                                     zmin=float(maps.min()), zmax=float(maps.max())), row=row, col=col)
        for given, colour in ((boxes, "#ff7f0e"), (true_boxes, "#2ca02c")):
            box = given[i] if given is not None and i < len(given) else None
            if box is not None:
                fig.add_shape(type="rect", x0=box[0], y0=box[1], x1=box[2], y1=box[3],
                              line=dict(color=colour, width=2), row=row, col=col)
        fig.update_xaxes(visible=False, range=[0, width], row=row, col=col)
        fig.update_yaxes(visible=False, range=[height, 0], scaleanchor=f"x{i + 1 if i else ''}", row=row, col=col)
    fig.update_layout(template="plotly_white", height=220 * rows + 60, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def score_bars(labels: list[str], scores, title: str = "", highlight: list[bool] | None = None,
               x_title: str = "cosine similarity") -> go.Figure:
    """Horizontal bars, one per label, the first label at the top; ``highlight`` marks some in
    green (e.g. the true caption). Labels are escaped: user text is shown as text."""
    import html

    scores = [float(s) for s in scores]
    colours = ["#2ca02c" if h else "#1f77b4" for h in (highlight or [False] * len(labels))]
    fig = go.Figure(go.Bar(x=scores[::-1], y=[html.escape(t, quote=False) for t in labels][::-1],
                           orientation="h", marker_color=colours[::-1],
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(title=title, template="plotly_white", height=max(240, 32 * len(labels) + 100),
                      margin=dict(l=10, r=10, t=50, b=30), xaxis_title=x_title)
    return fig


def grouped_bars(categories: list[str], series: dict[str, list], title: str = "", y_title: str = "",
                 y_range: tuple[float, float] | None = None) -> go.Figure:
    """One group per category, one bar per series (e.g. accuracy beside chance, per attribute);
    a None value leaves its bar out."""
    fig = go.Figure([go.Bar(name=name, x=list(categories), y=list(values)) for name, values in series.items()])
    fig.update_layout(barmode="group", template="plotly_white", title=title,
                      yaxis=dict(title=y_title, range=list(y_range) if y_range else None), height=380)
    return fig


def line_curves(series: dict[str, list], title: str = "", x_title: str = "step", y_title: str = "loss") -> go.Figure:
    """One line per named series over its index (e.g. training losses per strategy)."""
    fig = go.Figure([go.Scatter(y=list(values), mode="lines", name=name) for name, values in series.items()])
    fig.update_layout(template="plotly_white", title=title, xaxis_title=x_title, yaxis_title=y_title, height=360)
    return fig
