"""What test-time methods learn from: the loss curve, entropy against error, Surgery's bias, the router's weights."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..analysis.calibration import pearson
from .style import METHOD_COLORS, _styled, _subtitled, task_colors


def loss_curve(losses: Sequence[float], steps: Sequence[int] | None = None,
               title: str = "Loss while learning the coefficients") -> go.Figure:
    """The objective at each optimisation step (every step, 1..n, unless `steps` says which), on integer ticks."""
    steps = list(range(1, len(losses) + 1)) if steps is None else [int(s) for s in steps]
    fig = go.Figure(go.Scatter(x=steps, y=[float(v) for v in losses], mode="lines+markers" if len(steps) <= 60
                               else "lines", line={"color": METHOD_COLORS[0], "width": 3}, marker={"size": 6},
                               hovertemplate="step %{x}<br>loss %{y:.4f}<extra></extra>"))
    dtick = max(1, math.ceil(max(steps, default=1) / 10))  # whole steps, about ten ticks
    return _styled(fig, title, "step", "loss", showlegend=False, height=360,
                   xaxis={"tickmode": "linear", "tick0": 0, "dtick": dtick, "tickformat": "d", "rangemode": "tozero"})


def entropy_error(points: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Mean prediction entropy against error rate, one point per (merge, task), task colours (from
    `analysis.entropy_error`), with the least-squares line and Pearson's r: AdaMerging's premise holds when the
    points rise from left to right."""

    fig, param = go.Figure(), points.attrs.get("param", "value")
    colors = task_colors(list(dict.fromkeys(points.task)))
    for task, rows in points.groupby("task", sort=False):
        fig.add_scatter(x=rows.entropy, y=rows.error, name=str(task), mode="markers", customdata=rows.value,
                        marker={"color": colors[task], "size": 11, "line": {"width": 1, "color": "white"}},
                        hovertemplate=f"{task}<br>{param} = %{{customdata}}<br>entropy: %{{x:.3f}} nats<br>"
                                      "error: %{y:.3f}<extra></extra>")
    r = pearson(points)
    if len(points) >= 2 and np.isfinite(r):
        slope, intercept = np.polyfit(points.entropy, points.error, 1)
        xs = np.array([points.entropy.min(), points.entropy.max()])
        fig.add_scatter(x=xs, y=slope * xs + intercept, name="least squares", mode="lines",
                        line={"color": "#000000", "width": 2, "dash": "dash"}, hoverinfo="skip")
    note = f"one point per task and {param} · Pearson r = {r:.2f}"
    return _styled(fig, _subtitled(title or "Prediction entropy against error rate", note),
                   "mean prediction entropy (nats)", "error rate (1 − accuracy)", yaxis={"tickformat": ".0%"})


def representation_bias(bias: pd.DataFrame, title: str = "Representation bias: L1 gap to the expert's features"
                        ) -> go.Figure:
    """Grouped bars per task (from `analysis.representation_bias`): the merged model's mean L1 distance to the
    expert's features before and after Surgery's feature modules."""
    fig = go.Figure()
    for column, color in (("before", "#9e9e9e"), ("after", "#1f77b4")):
        fig.add_bar(x=list(bias.index), y=bias[column], name=column, marker_color=color,
                    hovertemplate=f"%{{x}}<br>{column}: %{{y:.3f}}<extra></extra>")
    return _styled(fig, title, "task", "mean |f_merged - f_expert|", barmode="group", yaxis={"rangemode": "tozero"})


def routing_map(table: pd.DataFrame, title: str = "Mean routing weight per task (rows) and expert (columns)"
                ) -> go.Figure:
    """Heatmap of `analysis.routing`: rows (task, block), one column per expert; the diagonal is routing to the
    image's own expert."""
    rows = [f"{task} / {block}" for task, block in table.index]
    fig = go.Figure(go.Heatmap(z=table.to_numpy(), x=list(table.columns), y=rows, colorscale="Blues",
                               hovertemplate="%{y} -> %{x}: %{z:.3f}<extra></extra>"))
    return _styled(fig, title, "expert", "task / block", yaxis={"autorange": "reversed"})
