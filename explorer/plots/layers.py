"""Layer by layer: task-vector norms, merge coefficients (per layer and per tensor), Fisher merging's weight shares."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .style import DIVERGING, _styled, _task_lines, task_colors


def layer_norms(norms: pd.DataFrame, relative: bool = False,
                title: str = "Size of each task vector per layer") -> go.Figure:
    """Per-layer task-vector norms (from `analysis.layer_norms`), one line per task; relative=True divides by the
    pretrained layer's norm (how far fine-tuning moved each layer)."""
    column = "relative" if relative else "norm"
    label = "||τ_l|| / ||θ0_l||" if relative else "||τ_l|| (L2)"
    fig = _task_lines(norms, "layer", column, label, task_colors(list(dict.fromkeys(norms.task))))
    return _styled(fig, title, "layer (input → output)", label, yaxis={"rangemode": "tozero"})


def layer_coefficients(coefs: pd.DataFrame, title: str = "Effective coefficient per layer") -> go.Figure:
    """Per-layer merge coefficients, one line per task ("all" in black): from `analysis.effective_coefficients`
    or `analysis.learned_coefficients(result, by="layer")`."""
    colors = {"all": "#000000", **task_colors([t for t in dict.fromkeys(coefs.task) if t != "all"])}
    fig = _task_lines(coefs, "layer", "coefficient", "coefficient", colors)
    return _styled(fig, title, "layer (input → output)", "coefficient", yaxis={"rangemode": "tozero"})


def fisher_share(share: pd.DataFrame, title: str = "Fisher merging: each expert's share of the weight per layer"
                 ) -> go.Figure:
    """Stacked bars per layer (from `analysis.fisher_share`): the mean Fisher weight each expert got there; the
    shares of a layer sum to 1, and a uniform average would give every expert 1 / T."""
    tasks = list(dict.fromkeys(share.task))
    layers = list(dict.fromkeys(share.sort_values("depth").layer))
    colors = task_colors(tasks)
    fig = go.Figure()
    for task in tasks:
        rows = share[share.task == task].set_index("layer").loc[layers]
        fig.add_bar(x=layers, y=rows.share, name=task, marker_color=colors[task],
                    hovertemplate=f"{task}<br>%{{x}}: %{{y:.3f}}<extra></extra>")
    fig.add_scatter(x=layers, y=[1 / len(tasks)] * len(layers), mode="lines", name="uniform 1/T",
                    line={"color": "#000000", "dash": "dash", "width": 2}, hoverinfo="skip")
    return _styled(fig, title, "layer (input → output)", "share of the merge weight", barmode="stack",
                   yaxis={"range": [0, 1]})


def coefficient_map(coefs: pd.DataFrame, title: str = "Learned coefficient per task and parameter tensor") -> go.Figure:
    """Per-(task, parameter tensor) coefficients as a heatmap (from `analysis.learned_coefficients(result)`, by key):
    tasks down, tensors across by layer depth, ticks at the first tensor of each layer; centred at 0."""
    depth = dict(zip(coefs.key, coefs.depth))  # parameter names come alphabetically: put them in model order
    keys = sorted(dict.fromkeys(coefs.key), key=lambda k: depth[k])  # stable: alphabetical within a layer
    tasks = list(dict.fromkeys(coefs.task))
    grid = coefs.pivot(index="task", columns="key", values="coefficient").loc[tasks, keys]
    z = grid.to_numpy(dtype=float)
    half = float(np.nanmax(np.abs(z))) if z.size else 1.0
    layer_of = dict(zip(coefs.key, coefs.layer))
    starts = [k for i, k in enumerate(keys) if i == 0 or layer_of[k] != layer_of[keys[i - 1]]]
    fig = go.Figure(go.Heatmap(
        z=z, x=keys, y=tasks, colorscale=DIVERGING, zmid=0.0, zmin=-(half or 1.0), zmax=half or 1.0,
        colorbar={"title": {"text": "coefficient"}},
        hovertemplate="%{y}<br>%{x}<br>coefficient: %{z:.4f}<extra></extra>"))
    return _styled(fig, title, "parameter tensor (input → output; ticks mark each layer's first tensor)", "task",
                   xaxis={"tickmode": "array", "tickvals": starts, "ticktext": [layer_of[k] for k in starts],
                          "showgrid": False},
                   yaxis={"autorange": "reversed", "showgrid": False}, height=220 + 40 * len(tasks), width=1100)
