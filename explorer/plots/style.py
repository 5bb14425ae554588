"""The shared look of every figure: the task palette and colour scales, fonts, layout and number formats."""
from __future__ import annotations

import functools
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

# Okabe & Ito (2008) with Paul Tol's wine in place of black (black marks aggregates: "mean", "all") and
# yellow last (weak on white), then Tol's muted set for more than eight tasks.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#882255", "#F0E442",
           "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#AA4499")
DIVERGING = "RdBu_r"  # blue = negative / agreeing, white = centre, red = positive / conflicting
SEQUENTIAL = "Blues"
SERIES = {"base": "#BBBBBB", "expert": "#444444"}  # zero-shot and fine-tuned reference bars
METHOD_COLORS = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377")


FONT = 16
TRACES = ("bar", "heatmap", "scatter")  # the trace types the figures draw: the only ones the template styles


@functools.cache
def template() -> go.layout.Template:
    """Plotly's "plotly_white" look for the trace types drawn here, built once: assigning the full template deep
    copies its 24 trace types into every figure (half of a dashboard run's drawing time) and ships them to the
    browser."""
    white = pio.templates["plotly_white"].to_plotly_json()
    return go.layout.Template(layout=white["layout"], data={k: white["data"][k] for k in TRACES})


def task_colors(tasks: Sequence[str]) -> dict[str, str]:
    """The colour of each task, by its position in `tasks` (keep the zoo's order for the same colours everywhere)."""
    return {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(tasks)}


def _styled(fig: go.Figure, title: str, x: str | None, y: str | None, **layout) -> go.Figure:
    """The shared look: white template, large fonts, title top left; axis titles unless None."""
    fig.update_layout(template=template(), title={"text": title, "x": 0.02}, font={"size": FONT},
                      margin={"l": 90, "r": 30, "t": 80, "b": 80}, hoverlabel={"font_size": FONT},
                      legend={"title_text": ""})
    fig.update_layout(**layout)
    if x is not None:
        fig.update_xaxes(title_text=x)
    if y is not None:
        fig.update_yaxes(title_text=y)
    return fig


def _fmt(values: np.ndarray, digits: int) -> np.ndarray:
    # `+ 0.0` turns a rounded -0.000 into 0.000, which would otherwise read as a (tiny) conflict
    return np.vectorize(lambda v: "n/a" if np.isnan(v) else f"{round(v, digits) + 0.0:.{digits}f}",
                        otypes=[object])(values)


def _subtitled(title: str, note: str) -> str:
    return f"{title}<br><sup>{note}</sup>"


def _zrange(z: np.ndarray, natural: tuple[float, float], center: float | None, zoom: bool) -> tuple[float, float]:
    """The colour range: the quantity's natural range, or with `zoom` the values' own range (symmetric around
    `center` when there is one)."""
    finite = z[np.isfinite(z)]
    if not zoom or not finite.size:
        return natural
    if center is None:
        return float(finite.min()), float(finite.max()) if finite.max() > finite.min() else natural[1]
    half = float(np.abs(finite - center).max()) or 1e-12
    return center - half, center + half


def _range_note(lo: float, hi: float, zoom: bool) -> str:
    return f"colour range {lo:+.3g} … {hi:+.3g}" + (" (zoomed to the values)" if zoom else "")


def _pair_map(matrix: pd.DataFrame, title: str, name: str, *, center: float | None, blank_diagonal: bool,
              zrange: tuple[float, float], digits: int = 3, colorscale: str = DIVERGING) -> go.Figure:
    """A T x T heatmap of a square task DataFrame: task_a down the rows, task_b across, values printed,
    coloured over `zrange` (centred on `center` when given)."""
    z = matrix.to_numpy(dtype=float).copy()
    text = _fmt(z, digits)
    if blank_diagonal:
        np.fill_diagonal(z, np.nan)
        np.fill_diagonal(text, "")
    scale = {"zmin": zrange[0], "zmax": zrange[1], **({} if center is None else {"zmid": center})}
    tasks_a, tasks_b = [str(t) for t in matrix.index], [str(t) for t in matrix.columns]
    fig = go.Figure(go.Heatmap(
        z=z, x=tasks_b, y=tasks_a, text=text, texttemplate="%{text}", colorscale=colorscale, **scale,
        colorbar={"title": {"text": name}}, xgap=2, ygap=2,
        hovertemplate=f"%{{y}} vs %{{x}}<br>{name}: %{{z:.4f}}<extra></extra>"))
    return _styled(fig, title, "task", "task", yaxis={"autorange": "reversed", "showgrid": False},
                   xaxis={"showgrid": False}, height=190 + 70 * len(tasks_a), width=300 + 80 * len(tasks_b))


def _off_diagonal(matrix: pd.DataFrame) -> np.ndarray:
    z = matrix.to_numpy(dtype=float).copy()
    np.fill_diagonal(z, np.nan)
    return z


def _task_lines(frame: pd.DataFrame, x: str, y: str, hover: str, colors: Mapping[str, str]) -> go.Figure:
    """One line per task (task colours), in the order the tasks appear in `frame`."""
    fig = go.Figure()
    for task, rows in frame.groupby("task", sort=False):
        fig.add_scatter(x=rows[x], y=rows[y], name=str(task), mode="lines+markers",
                        line={"color": colors.get(task, "#000000"), "width": 3}, marker={"size": 9},
                        hovertemplate=f"{task}<br>{x} %{{x}}<br>{hover}: %{{y:.4f}}<extra></extra>")
    return fig


def _short(param: str) -> str:
    """A parameter name short enough for an axis: `transformer.resblocks.3.mlp.c_fc.weight` -> `3.mlp.c_fc` (a
    decoder's `model.layers.3.` and GPT-2's `transformer.h.3.` likewise)."""
    for prefix in ("model.visual.", "visual.", "transformer.resblocks.", "model.layers.", "transformer.h."):
        param = param.replace(prefix, "")
    return param.removesuffix(".weight").removesuffix("_weight")
