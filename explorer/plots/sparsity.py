"""How TIES and Model Breadcrumbs sparsify task vectors: TIES' steps on real entries, Breadcrumbs' magnitude bands."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import DIVERGING, FONT, _fmt, _styled, _subtitled

STEP_TITLES = {"task vectors": "1. task vectors τ_t",
               "trim": "2. trim: each task keeps its top-k entries (· = trimmed)",
               "elect": "3. elect γ = sign(Σ_t τ̂_t); keep the entries that agree",
               "merge": "4. disjoint merge: mean of the agreeing entries"}


def ties_steps(steps: pd.DataFrame, title: str | None = None) -> go.Figure:
    """TIES' trim, elect and disjoint merge on a few real entries (from `analysis.ties_steps`): one heatmap panel per
    step, entries across, tasks down; white = 0 (trimmed or dropped), red = positive, blue = negative."""
    order = [s for s in STEP_TITLES if s in set(steps.step)]
    rows = {s: list(dict.fromkeys(steps[steps.step == s].row)) for s in order}
    scale = float(steps.loc[steps.row != "elected sign", "value"].abs().max()) or 1.0
    fig = make_subplots(rows=len(order), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[len(rows[s]) for s in order], subplot_titles=[STEP_TITLES[s] for s in order])
    for i, step in enumerate(order, start=1):
        grid = steps[steps.step == step].pivot(index="row", columns="entry", values="value").loc[rows[step]]
        z, is_sign = grid.to_numpy(dtype=float), np.array([r == "elected sign" for r in grid.index])
        text = np.where(z == 0, "·", _fmt(1e3 * z, 1))  # a dot: trimmed or dropped
        text[is_sign] = np.where(z[is_sign] > 0, "+", "−")
        colour = np.where(is_sign[:, None], z * scale, z)  # the sign row is drawn at full strength
        fig.add_trace(go.Heatmap(
            z=colour, x=[str(e) for e in grid.columns], y=list(grid.index), text=text, texttemplate="%{text}",
            customdata=z, coloraxis="coloraxis", xgap=1, ygap=1,
            hovertemplate="%{y}<br>entry %{x}<br>value: %{customdata:.5f}<extra></extra>"), row=i, col=1)
        fig.update_yaxes(autorange="reversed", showgrid=False, row=i, col=1)
    fig.update_xaxes(showgrid=False, type="category")
    fig.update_xaxes(title_text=f"entry of {steps.attrs.get('name', 'the parameter')} (flattened index)",
                     row=len(order), col=1)
    fig.update_layout(coloraxis={"colorscale": DIVERGING, "cmin": -scale, "cmax": scale, "cmid": 0.0,
                                 "colorbar": {"title": {"text": "τ"}}})
    fig.update_annotations(font_size=FONT, x=0.0, xanchor="left")
    note = f"values × 1000 · density {steps.attrs.get('density', '')} · hover for exact values"
    return _styled(fig, _subtitled(title or "TIES-Merging, step by step, on real task-vector entries", note),
                   None, None, height=180 + 34 * sum(len(r) for r in rows.values()) + 60 * len(order), width=1100,
                   margin={"l": 130, "r": 30, "t": 110, "b": 80})


BAND_COLORS = {"small (dropped)": "#BBBBBB", "middle band (kept)": "#0072B2", "outliers (dropped)": "#D55E00"}


def breadcrumb_bands(bands: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Histogram of log10 |τ| split into what Model Breadcrumbs drops (small entries, outliers) and keeps (the middle
    band of each row), from `analysis.breadcrumb_bands`; stacked bars, fraction of all entries."""
    fig = go.Figure()
    for band, rows in bands.groupby("band", sort=False):
        centre, width = (rows.bin_left + rows.bin_right) / 2, rows.bin_right - rows.bin_left
        fig.add_bar(x=centre, y=rows.fraction, width=width, name=str(band), customdata=rows["count"],
                    marker_color=BAND_COLORS.get(band, "#000000"), marker_line_width=0,
                    hovertemplate=f"{band}<br>log10 |τ| ≈ %{{x:.2f}}<br>fraction: %{{y:.4f}}<br>"
                                  "entries: %{customdata:,}<extra></extra>")
    a = bands.attrs
    note = (f"per row: the top {a.get('remove', 0):.1%} of |τ| dropped as outliers, the next {a.get('keep', 0):.0%} "
            f"kept, the rest dropped · {a.get('task', 'all tasks')}")
    return _styled(fig, _subtitled(title or "Model Breadcrumbs keeps a middle band of magnitudes", note),
                   "log10 |τ| (magnitude of a task-vector entry)", "fraction of entries", barmode="stack",
                   bargap=0, yaxis={"tickformat": ".1%"}, legend={"title_text": "", "traceorder": "normal"})
