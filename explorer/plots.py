"""Plotly figures from analysis tables and scores: one function per picture, each returning a `go.Figure`.

Every figure gives each task the same colour (a colour-blind-safe palette, in task order), uses large fonts
for projectors, shows exact values on hover, and draws only heatmaps, bars and scatter lines (the dashboard
renders with an older plotly.js).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from .analysis.calibration import pearson  # the r in the entropy-error title is the analysis' own

# Okabe & Ito (2008) with Paul Tol's wine in place of black (black marks aggregates: "mean", "all") and
# yellow last (weak on white), then Tol's muted set for more than eight tasks.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#882255", "#F0E442",
           "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#AA4499")
DIVERGING = "RdBu_r"  # blue = negative / agreeing, white = centre, red = positive / conflicting
SEQUENTIAL = "Blues"
SERIES = {"base": "#BBBBBB", "expert": "#444444"}  # zero-shot and fine-tuned reference bars
METHOD_COLORS = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377")
USAGE_COLORS = {"catastrophic": "#D55E00", "selfish": "#E69F00", "shared": "#0072B2"}
FONT = 16


def task_colors(tasks: Sequence[str]) -> dict[str, str]:
    """The colour of each task, by its position in `tasks` (keep the zoo's order for the same colours everywhere)."""
    return {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(tasks)}


def _styled(fig: go.Figure, title: str, x: str | None, y: str | None, **layout) -> go.Figure:
    """The shared look: white template, large fonts, title top left; axis titles unless None."""
    fig.update_layout(template="plotly_white", title={"text": title, "x": 0.02}, font={"size": FONT},
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


def cosine_map(matrix: pd.DataFrame, title: str = "Cosine similarity of task vectors", zoom: bool = False) -> go.Figure:
    """T x T cosine map (from `analysis.cosine(tv)`): red = aligned, blue = opposed, white = orthogonal, on the
    fixed range -1..1 (zoom=True: symmetric around 0 to fit the off-diagonal values). The diagonal (always 1) is
    blank; the subtitle says what the cosines are computed over and the colour range."""
    lo, hi = _zrange(_off_diagonal(matrix), (-1.0, 1.0), 0.0, zoom)
    over = matrix.attrs.get("over", "the whole flattened task vectors")
    note = f"over {over} · red: same direction · blue: opposed · {_range_note(lo, hi, zoom)}"
    return _pair_map(matrix, _subtitled(title, note), "cosine", center=0.0, blank_diagonal=True, zrange=(lo, hi))


def sign_conflict_map(matrix: pd.DataFrame, title: str = "Sign conflicts between task vectors",
                      zoom: bool = False) -> go.Figure:
    """T x T sign-conflict map (from `analysis.sign_conflicts`): the fraction of shared entries with opposite
    signs on 0..1 centred at 0.5 (what independent random signs give; zoom=True: symmetric around 0.5 to fit the
    values): red = more conflict, blue = more agreement."""
    lo, hi = _zrange(_off_diagonal(matrix), (0.0, 1.0), 0.5, zoom)
    over = matrix.attrs.get("over", "the entries non-zero in both tasks")
    note = (f"fraction with opposite signs, over {over} · 0.5 = as if the signs were random · "
            f"{_range_note(lo, hi, zoom)}")
    return _pair_map(matrix, _subtitled(title, note), "conflict", center=0.5, blank_diagonal=True, zrange=(lo, hi))


def mask_overlap_map(matrix: pd.DataFrame, metric: str = "jaccard", title: str | None = None) -> go.Figure:
    """T x T mask overlap (from `analysis.mask_overlap`): Jaccard (0..1) or the count of entries kept by both."""
    title = title or ("Mask overlap (Jaccard: kept by both / kept by either)" if metric == "jaccard"
                      else "Mask overlap (entries kept by both tasks)")
    natural = (0.0, 1.0) if metric == "jaccard" else (0.0, float(np.nanmax(matrix.to_numpy(dtype=float))) or 1.0)
    return _pair_map(matrix, title, metric, center=None, blank_diagonal=False, colorscale=SEQUENTIAL,
                     digits=3 if metric == "jaccard" else 0, zrange=natural)


def pair_profile(profile: pd.DataFrame, title: str | None = None, zoom: bool = False) -> go.Figure:
    """How each pair of tasks relates across depth (from `analysis.conflict_profile`): pairs down, layers across,
    on the natural range (cosine -1..1, conflict 0..1 centred at 0.5; zoom=True fits the values)."""
    value = "cosine" if "cosine" in profile.columns else "conflict"
    grid = profile.pivot(index="pair", columns="layer", values=value)
    grid = grid.loc[list(dict.fromkeys(profile.pair)), list(dict.fromkeys(profile.layer))]
    z = grid.to_numpy(dtype=float)
    center, natural = (0.0, (-1.0, 1.0)) if value == "cosine" else (0.5, (0.0, 1.0))
    lo, hi = _zrange(z, natural, center, zoom)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(grid.columns), y=list(grid.index), colorscale=DIVERGING, zmid=center, zmin=lo,
        zmax=hi, colorbar={"title": {"text": value}}, xgap=1, ygap=1,
        hovertemplate=f"%{{y}}<br>layer %{{x}}<br>{value}: %{{z:.4f}}<extra></extra>"))
    rng = _range_note(lo, hi, zoom)
    default = (_subtitled("Cosine similarity per layer", f"over each layer's entries · red: same direction · "
                          f"blue: opposed · {rng}")
               if value == "cosine" else
               _subtitled("Sign conflicts per layer", f"over each layer's entries non-zero in both tasks · red: more "
                          f"conflict than random signs (0.5) · blue: less · {rng}"))
    return _styled(fig, title or default, "layer (input → output)", "task pair", xaxis={"showgrid": False},
                   yaxis={"autorange": "reversed", "showgrid": False}, height=220 + 40 * len(grid))


def sign_disagreement(frames: pd.DataFrame | Mapping[str, pd.DataFrame],
                      title: str = "Entries where the tasks disagree in sign") -> go.Figure:
    """Per layer, the fraction of shared entries whose tasks do not all agree in sign (from
    `analysis.sign_disagreement`); pass {label: table} to compare, e.g. all entries vs each task's top 20 %."""
    frames = {"all entries": frames} if isinstance(frames, pd.DataFrame) else dict(frames)
    fig = go.Figure()
    for i, (label, frame) in enumerate(frames.items()):
        group = frame.columns[0]
        fig.add_bar(x=frame[group], y=frame.disagreement, name=label, marker_color=METHOD_COLORS[i % 6],
                    customdata=frame[["shared"]].to_numpy(),
                    hovertemplate=f"{label}<br>%{{x}}<br>disagreement: %{{y:.4f}}<br>"
                                  "entries active in ≥ 2 tasks: %{customdata[0]:.4f}<extra></extra>")
    group = frame.columns[0]
    note = "among the entries that two or more tasks use: the share where not all of them agree in sign"
    return _styled(fig, _subtitled(title, note), "layer (input → output)" if group == "layer" else group,
                   "fraction with mixed signs", barmode="group", yaxis={"range": [0, 1]})


def _task_lines(frame: pd.DataFrame, x: str, y: str, hover: str, colors: Mapping[str, str]) -> go.Figure:
    """One line per task (task colours), in the order the tasks appear in `frame`."""
    fig = go.Figure()
    for task, rows in frame.groupby("task", sort=False):
        fig.add_scatter(x=rows[x], y=rows[y], name=str(task), mode="lines+markers",
                        line={"color": colors.get(task, "#000000"), "width": 3}, marker={"size": 9},
                        hovertemplate=f"{task}<br>{x} %{{x}}<br>{hover}: %{{y:.4f}}<extra></extra>")
    return fig


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


def accuracy_bars(scores: pd.DataFrame, normalized: bool = False,
                  title: str = "Accuracy per task") -> go.Figure:
    """Grouped bars per task (plus the mean): zero-shot, fine-tuned expert and each merge; `scores` is
    `analysis.compare(...)` or a `Scores.table`. normalized=True plots merged / expert (experts = 1)."""
    scores = scores if "method" in scores.columns else scores.assign(method="merged")
    tasks = list(dict.fromkeys(scores.task))
    x = tasks + ["mean"]
    value = "normalized" if normalized else "merged"

    def with_mean(values: pd.Series) -> list[float]:  # in %
        return [100 * v for v in [*values.tolist(), float(values.mean())]]

    fig = go.Figure()
    first = scores[scores.method == scores.method.iloc[0]].set_index("task").loc[tasks]
    refs = [("base", "zero-shot (θ0)"), ("expert", "fine-tuned expert")]
    for column, label in refs:
        ys = with_mean(first[column] / first.expert if normalized else first[column])
        fig.add_bar(x=x, y=ys, name=label, marker_color=SERIES[column],
                    hovertemplate=f"{label}<br>%{{x}}: %{{y:.1f}} %<extra></extra>")
    for i, (method, rows) in enumerate(scores.groupby("method", sort=False)):
        ys = with_mean(rows.set_index("task").loc[tasks, value])
        fig.add_bar(x=x, y=ys, name=str(method), marker_color=METHOD_COLORS[i % 6],
                    hovertemplate=f"{method}<br>%{{x}}: %{{y:.1f}} %<extra></extra>")
    label = "normalized accuracy (merged / expert, %)" if normalized else "accuracy (%)"
    return _styled(fig, title, "task", label, barmode="group", yaxis={"rangemode": "tozero"})


def lambda_sweep(sweep: pd.DataFrame, normalized: bool = False, title: str | None = None) -> go.Figure:
    """Accuracy per task against the swept parameter (from `analysis.lambda_sweep`), plus the mean (dashed)."""
    value = "normalized" if normalized else "merged"
    param = sweep.attrs.get("param", "λ")
    sweep = sweep.assign(**{value: 100 * sweep[value]})  # in %
    fig = _task_lines(sweep, "value", value, f"{value} %", task_colors(list(dict.fromkeys(sweep.task))))
    mean = sweep.groupby("value", sort=True)[value].mean()
    fig.add_scatter(x=mean.index, y=mean.to_numpy(), name="mean", mode="lines+markers",
                    line={"color": "#000000", "width": 4, "dash": "dash"}, marker={"size": 9},
                    hovertemplate=f"mean<br>{param} %{{x}}<br>{value} %: %{{y:.1f}}<extra></extra>")
    method = sweep.attrs.get("method", "merge")
    label = "normalized accuracy" if normalized else "accuracy"
    return _styled(fig, title or f"{method}: {label} per task as {param} varies", param, f"{label} (%)")


def sweep_grid(summary: pd.DataFrame, params: Sequence[str], best: Mapping | None = None, normalized: bool = True,
               title: str | None = None) -> go.Figure:
    """Mean accuracy over tasks across a sweep's grid (from `Sweep.summary()`): against the first swept parameter,
    one line per setting of the others, the best point starred."""
    value = "normalized" if normalized else "merged"
    first, rest = params[0], list(params[1:])
    groups = summary.groupby(rest, sort=False) if rest else [((), summary)]
    fig = go.Figure()
    for i, (key, rows) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        name = ", ".join(f"{p}={v}" for p, v in zip(rest, key)) or "mean over tasks"
        fig.add_scatter(x=rows[first], y=100 * rows[value], name=name, mode="lines+markers",
                        line={"color": METHOD_COLORS[i % 6], "width": 3}, marker={"size": 9},
                        hovertemplate=f"{name}<br>{first} %{{x}}<br>{value}: %{{y:.2f}} %<extra></extra>")
    if best is not None:
        row = summary.loc[(summary[list(params)] == pd.Series(best)[list(params)]).all(axis=1)].iloc[0]
        fig.add_scatter(x=[row[first]], y=[100 * row[value]], name="best", mode="markers",
                        marker={"symbol": "star", "size": 20, "color": "#000000"},
                        hovertemplate=f"best: {', '.join(f'{p}={best[p]}' for p in params)}<br>{value}: "
                                      "%{y:.2f} %<extra></extra>")
    label = "mean normalized accuracy (merged / expert, %)" if normalized else "mean accuracy (%)"
    return _styled(fig, title or f"Sweep: {label} over the grid", first, label)


def interpolation_heatmap(grid: pd.DataFrame, normalized: bool = False, title: str | None = None) -> go.Figure:
    """Accuracy on tasks A and B and their mean over the λ_A x λ_B grid (from `analysis.interpolation_grid`):
    three heatmaps sharing one colour scale."""
    value = "normalized" if normalized else "merged"
    task_a, task_b = list(dict.fromkeys(grid.task))[:2]
    grid = grid.assign(**{value: 100 * grid[value]})  # in %
    panels = {f"accuracy on {task_a}": grid[grid.task == task_a], f"accuracy on {task_b}": grid[grid.task == task_b],
              "mean of the two": grid.groupby(["lambda_a", "lambda_b"], as_index=False)[value].mean()}
    fig = make_subplots(rows=1, cols=3, subplot_titles=list(panels), horizontal_spacing=0.08)
    for col, (name, rows) in enumerate(panels.items(), start=1):
        z = rows.pivot(index="lambda_b", columns="lambda_a", values=value)
        fig.add_trace(go.Heatmap(
            z=z.to_numpy(), x=list(z.columns), y=list(z.index), coloraxis="coloraxis", xgap=1, ygap=1,
            hovertemplate=f"{name}<br>λ {task_a} = %{{x}}<br>λ {task_b} = %{{y}}<br>{value}: %{{z:.1f}} %"
                          "<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text=f"λ {task_a}", tickmode="array", tickvals=list(z.columns), row=1, col=col)
        fig.update_yaxes(title_text=f"λ {task_b}" if col == 1 else "", tickmode="array", tickvals=list(z.index),
                         row=1, col=col)
    label = "normalized accuracy" if normalized else "accuracy"
    fig.update_layout(coloraxis={"colorscale": "Viridis", "colorbar": {"title": {"text": f"{label} (%)"}}})
    fig.update_annotations(font_size=FONT + 2)
    default = _subtitled(f"{label} (%) of θ0 + λ_A·τ_A + λ_B·τ_B", f"A = {task_a}, B = {task_b}; (0, 0) is the "
                         f"base model, (1, 0) the {task_a} expert")
    return _styled(fig, title or default, None, None, width=1300, height=540,
                   margin={"l": 90, "r": 30, "t": 130, "b": 80})


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


def sweep_comparison(sweeps: Mapping[str, pd.DataFrame], normalized: bool = True,
                     title: str = "Mean accuracy over tasks") -> go.Figure:
    """Several sweeps (from `analysis.lambda_sweep` or `analysis.expert_sweep`) as one line each: the mean over tasks
    against the swept parameter, e.g. DARE's drop rate with and without rescaling."""
    value = "normalized" if normalized else "merged"
    fig, param = go.Figure(), "value"
    for i, (label, sweep) in enumerate(sweeps.items()):
        param = sweep.attrs.get("param", param)
        mean = sweep.groupby("value", sort=True)[value].mean()
        fig.add_scatter(x=mean.index, y=mean.to_numpy(), name=str(label), mode="lines+markers",
                        line={"color": METHOD_COLORS[i % 6], "width": 4}, marker={"size": 10},
                        hovertemplate=f"{label}<br>{param} %{{x}}<br>mean {value}: %{{y:.4f}}<extra></extra>")
    label = "mean normalized accuracy (merged / expert)" if normalized else "mean accuracy"
    return _styled(fig, title, param, label, yaxis={"rangemode": "tozero"})


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


def _short(param: str) -> str:
    """A parameter name short enough for an axis: `transformer.resblocks.3.mlp.c_fc.weight` -> `3.mlp.c_fc`."""
    for prefix in ("model.visual.", "visual.", "transformer.resblocks."):
        param = param.replace(prefix, "")
    return param.removesuffix(".weight").removesuffix("_weight")


def spectrum_lines(spectra: pd.DataFrame, title: str = "Singular values of each task's matrix") -> go.Figure:
    """Singular values by component (from `analysis.spectrum`), one line per task in its colour, the merge (a
    "merged" column) dashed black, on a log axis: a steep drop = a low-rank task vector."""
    colors = task_colors([c for c in spectra.columns if c != "merged"])
    fig = go.Figure()
    for column in spectra.columns:
        merged = column == "merged"
        fig.add_scatter(x=spectra.index, y=spectra[column], name=str(column), mode="lines",
                        line={"color": "#000000" if merged else colors[column], "width": 3,
                              "dash": "dash" if merged else "solid"},
                        hovertemplate=f"{column}<br>component %{{x}}<br>σ: %{{y:.4g}}<extra></extra>")
    return _styled(fig, title, "component (largest first)", "singular value σ", yaxis={"type": "log"})


def subspace_overlap_map(matrix: pd.DataFrame, title: str = "Overlap of the tasks' top singular subspaces",
                         zoom: bool = False) -> go.Figure:
    """T x T subspace overlap (from `analysis.subspace_overlap`): the mean squared cosine of the principal angles,
    0 (orthogonal) .. 1 (the same subspace); the subtitle gives the chance level of random subspaces."""
    lo, hi = _zrange(_off_diagonal(matrix), (0.0, 1.0), None, zoom)
    chance = matrix.attrs.get("chance")
    note = (f"over {matrix.attrs.get('over', 'the matrices')} · random subspaces: {chance:.3f} · "
            if chance is not None else "") + _range_note(lo, hi, zoom)
    return _pair_map(matrix, _subtitled(title, note), "overlap", center=None, blank_diagonal=True, zrange=(lo, hi),
                     colorscale=SEQUENTIAL)


def effective_ranks(summary: pd.DataFrame, title: str = "Effective rank of each task's matrices") -> go.Figure:
    """Effective rank per matrix (from `analysis.spectral_summary`), one line per task (the merge in black): how
    many directions each task vector really uses, layer by layer."""
    frame = summary.assign(matrix=summary.param.map(_short))
    colors = {"merged": "#000000", **task_colors([t for t in dict.fromkeys(frame.task) if t != "merged"])}
    fig = _task_lines(frame, "matrix", "effective_rank", "effective rank", colors)
    return _styled(fig, title, "matrix (input → output)", "effective rank exp(H(σ/Σσ))",
                   yaxis={"rangemode": "tozero"}, xaxis={"tickangle": -45})


def singular_interference(sti: pd.DataFrame, title: str = "Singular task interference per matrix") -> go.Figure:
    """TSV's singular task interference (from `analysis.interference`) of the tasks' concatenated top singular
    vectors, as they are and after TSV's orthogonalisation (which brings it to zero)."""
    x = sti.param.map(_short)
    fig = go.Figure()
    fig.add_bar(x=x, y=sti.before, name="tasks' singular vectors as they are", marker_color=METHOD_COLORS[1],
                hovertemplate="%{x}<br>STI: %{y:.4g}<extra></extra>")
    fig.add_bar(x=x, y=sti.after, name="after TSV's orthogonalisation", marker_color=METHOD_COLORS[0],
                hovertemplate="%{x}<br>STI: %{y:.4g}<extra></extra>")
    return _styled(fig, _subtitled(title, "||(UᵀU − I) Σ (VᵀV − I)||₁ over each task's top r/T singular vectors"),
                   "matrix (input → output)", "interference", barmode="group", xaxis={"tickangle": -45})


def backdoor_survival(frame: pd.DataFrame, title: str = "Backdoor through merging: accuracy and attack success"
                      ) -> go.Figure:
    """Grouped bars per merge and backdoored task (`analysis.security.backdoor_survival`): the task's clean accuracy,
    the average accuracy and the attack success rate, in %."""
    x = [f"{m} · {t}" for m, t in zip(frame["merge"], frame["task"])]
    fig = go.Figure()
    for column, label, color in (("accuracy", "accuracy on the task", METHOD_COLORS[0]),
                                 ("average_accuracy", "average accuracy", METHOD_COLORS[1]),
                                 ("attack_success", "attack success rate", "#d62728")):
        fig.add_bar(x=x, y=100 * frame[column], name=label, marker_color=color,
                    hovertemplate=f"{label}<br>%{{x}}: %{{y:.1f}} %<extra></extra>")
    return _styled(fig, title, "merge · backdoored task", "%", barmode="group", yaxis={"range": [0, 100]})


def mergelock_study(frame: pd.DataFrame, title: str = "MergeLock: Task Arithmetic with the protected expert"
                    ) -> go.Figure:
    """Bars per expert variant (`analysis.security.mergelock_study`): the expert alone, Task Arithmetic on its task
    and on the other tasks (%), with the base model's accuracy on the task as a dashed line."""
    fig = go.Figure()
    for column, label, color in (("expert_alone", "expert alone", SERIES["expert"]),
                                 ("merged_task", "Task Arithmetic, this task", METHOD_COLORS[0]),
                                 ("merged_others", "Task Arithmetic, other tasks", METHOD_COLORS[1])):
        fig.add_bar(x=frame["expert"], y=100 * frame[column], name=label, marker_color=color,
                    hovertemplate=f"{label}<br>%{{x}}: %{{y:.1f}} %<extra></extra>")
    fig.add_hline(y=100 * float(frame["base"].iloc[0]), line_dash="dash", annotation_text="base on this task")
    return _styled(fig, title, "expert merged", "accuracy (%)", barmode="group", yaxis={"range": [0, 100]})


def representation_bias(bias: pd.DataFrame, title: str = "Representation bias: L1 gap to the expert's features"
                        ) -> go.Figure:
    """Grouped bars per task (from `analysis.representation_bias`): the merged model's mean L1 distance to the
    expert's features before and after Surgery's feature modules."""
    fig = go.Figure()
    for column, color in (("before", "#9e9e9e"), ("after", "#1f77b4")):
        fig.add_bar(x=list(bias.index), y=bias[column], name=column, marker_color=color,
                    hovertemplate=f"%{{x}}<br>{column}: %{{y:.3f}}<extra></extra>")
    return _styled(fig, title, "task", "mean |f_merged - f_expert|", barmode="group", yaxis={"rangemode": "tozero"})


def learned_mask_density(density: pd.Series, title: str = "Concrete: share of each tensor the learned mask keeps"
                         ) -> go.Figure:
    """Bars per parameter tensor, input to output (from `analysis.concrete_mask_density`)."""
    fig = go.Figure(go.Bar(x=[_short(n) for n in density.index], y=density.values, marker_color="#1f77b4",
                           customdata=list(density.index), hovertemplate="%{customdata}<br>kept: %{y:.3f}"
                                                                         "<extra></extra>"))
    return _styled(fig, title, "parameter tensor", "kept fraction", yaxis={"range": [0, 1]}, showlegend=False)


def routing_map(table: pd.DataFrame, title: str = "Mean routing weight per task (rows) and expert (columns)"
                ) -> go.Figure:
    """Heatmap of `analysis.routing`: rows (task, block), one column per expert; the diagonal is routing to the
    image's own expert."""
    rows = [f"{task} / {block}" for task, block in table.index]
    fig = go.Figure(go.Heatmap(z=table.to_numpy(), x=list(table.columns), y=rows, colorscale="Blues",
                               hovertemplate="%{y} -> %{x}: %{z:.3f}<extra></extra>"))
    return _styled(fig, title, "expert", "task / block", yaxis={"autorange": "reversed"})
