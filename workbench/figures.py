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
