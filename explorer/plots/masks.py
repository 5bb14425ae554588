"""What the masks keep: overlap, density, usage (how many tasks keep an entry), selfish weights, Concrete's mask."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from .style import SEQUENTIAL, _pair_map, _short, _styled, _task_lines, task_colors

USAGE_COLORS = {"catastrophic": "#D55E00", "selfish": "#E69F00", "shared": "#0072B2"}


def mask_overlap_map(matrix: pd.DataFrame, metric: str = "jaccard", title: str | None = None) -> go.Figure:
    """T x T mask overlap (from `analysis.mask_overlap`): Jaccard (0..1) or the count of entries kept by both."""
    title = title or ("Mask overlap (Jaccard: kept by both / kept by either)" if metric == "jaccard"
                      else "Mask overlap (entries kept by both tasks)")
    natural = (0.0, 1.0) if metric == "jaccard" else (0.0, float(np.nanmax(matrix.to_numpy(dtype=float))) or 1.0)
    return _pair_map(matrix, title, metric, center=None, blank_diagonal=False, colorscale=SEQUENTIAL,
                     digits=3 if metric == "jaccard" else 0, zrange=natural)


def mask_density(density: pd.DataFrame, title: str = "Fraction of each task vector the masks keep") -> go.Figure:
    """Per-task mask density (from `analysis.mask_density`): bars, or one line per task across layers."""
    colors = task_colors(list(dict.fromkeys(density.task)))
    if "layer" in density.columns:
        fig = _task_lines(density, "layer", "density", "kept fraction", colors)
        return _styled(fig, title, "layer (input → output)", "kept fraction", yaxis={"rangemode": "tozero"})
    fig = go.Figure(go.Bar(x=density.task, y=density.density, marker_color=[colors[t] for t in density.task],
                           customdata=density[["kept", "total"]].to_numpy(),
                           hovertemplate="%{x}<br>kept fraction: %{y:.4f}<br>%{customdata[0]:,} of "
                                         "%{customdata[1]:,} entries<extra></extra>"))
    return _styled(fig, title, "task", "kept fraction", yaxis={"rangemode": "tozero"}, showlegend=False)


def mask_usage(usage: pd.DataFrame, title: str = "How many tasks keep each parameter") -> go.Figure:
    """Histogram of the number of tasks whose mask keeps each entry (from `analysis.mask_usage`), coloured
    catastrophic (0) / selfish (1) / shared (>= 2); with a `layer` column, stacked bars per layer."""
    def hover(k: int, category: str) -> str:
        return (f"kept by {k} task(s) ({category})<br>%{{x}}<br>fraction: %{{y:.4f}}<br>"
                "entries: %{customdata:,}<extra></extra>")

    fig = go.Figure()
    if "layer" not in usage.columns:
        fig.add_bar(x=usage.n_tasks.astype(str), y=usage.fraction, customdata=usage["count"], showlegend=False,
                    texttemplate="%{y:.1%}", textposition="outside", cliponaxis=False,
                    marker_color=[USAGE_COLORS[c] for c in usage.category],
                    hovertemplate="kept by %{x} task(s)<br>fraction: %{y:.4f}<br>entries: %{customdata:,}"
                                  "<extra></extra>")
        for category, color in USAGE_COLORS.items():  # legend entries for the three categories
            fig.add_scatter(x=[None], y=[None], mode="markers", name=category,
                            marker={"color": color, "symbol": "square", "size": 14})
        return _styled(fig, title, "number of tasks keeping the entry", "fraction of entries",
                       yaxis={"tickformat": ".0%", "range": [0, 1.12 * float(usage.fraction.max() or 1)]})
    shared = sorted(k for k in usage.n_tasks.unique() if k >= 2)
    blues = sample_colorscale(SEQUENTIAL, [0.4 + 0.6 * (i + 1) / len(shared) for i in range(len(shared))])
    for k, rows in usage.groupby("n_tasks", sort=True):
        category = rows.category.iloc[0]
        color = USAGE_COLORS[category] if k < 2 else blues[shared.index(k)]
        fig.add_bar(x=rows.layer, y=rows.fraction, customdata=rows["count"], name=f"{k} ({category})",
                    marker_color=color, hovertemplate=hover(k, category))
    return _styled(fig, title, "layer (input → output)", "fraction of entries", barmode="stack",
                   legend={"title_text": "tasks keeping it"}, yaxis={"tickformat": ".0%"})


def selfish_weights(selfish: pd.DataFrame, title: str = "Selfish weights: kept by this task's mask only") -> go.Figure:
    """Per task, the share of its mask that no other task keeps (from `analysis.selfish_weights`); bars in task
    colours, counts on hover."""
    colors = task_colors(list(selfish.task))
    fig = go.Figure(go.Bar(x=selfish.task, y=selfish.selfish_fraction, marker_color=[colors[t] for t in selfish.task],
                           customdata=selfish[["selfish", "kept"]].to_numpy(), texttemplate="%{y:.1%}",
                           textposition="outside", cliponaxis=False,
                           hovertemplate="%{x}<br>selfish: %{customdata[0]:,} of %{customdata[1]:,} kept entries"
                                         "<br>fraction: %{y:.4f}<extra></extra>"))
    top = float(selfish.selfish_fraction.max()) if len(selfish) else 1.0
    return _styled(fig, title, "task", "fraction of the task's mask", showlegend=False,
                   yaxis={"tickformat": ".0%", "range": [0, 1.15 * (top or 1.0)]})


def learned_mask_density(density: pd.Series, title: str = "Concrete: share of each tensor the learned mask keeps"
                         ) -> go.Figure:
    """Bars per parameter tensor, input to output (from `analysis.concrete_mask_density`)."""
    fig = go.Figure(go.Bar(x=[_short(n) for n in density.index], y=density.values, marker_color="#1f77b4",
                           customdata=list(density.index), hovertemplate="%{customdata}<br>kept: %{y:.3f}"
                                                                         "<extra></extra>"))
    return _styled(fig, title, "parameter tensor", "kept fraction", yaxis={"range": [0, 1]}, showlegend=False)
