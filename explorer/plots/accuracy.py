"""Accuracy: bars per task and merge, sweeps of a parameter or a grid, the λ_A x λ_B interpolation heatmaps."""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import FONT, METHOD_COLORS, SERIES, _styled, _subtitled, _task_lines, task_colors


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
