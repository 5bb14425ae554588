"""The table of figures drives the dashboard's tabs, `explorer analyse` and the exports: every entry is made from
its inputs, applies or says it does not, and the dashboard and the CLI list the same sections."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest

import explorer as ex
from explorer import figure_catalog as F
from explorer.commands.analyse import WHAT


def inputs(tv, method: str, **options) -> F.Inputs:
    """A merge of `tv` for every section, and a made-up accuracy table for it (no zoo needed)."""
    res = ex.merge(tv, method)
    table = pd.DataFrame({"task": tv.tasks, "base": 0.5, "expert": 0.9, "merged": [0.6, 0.7, 0.8][:len(tv.tasks)],
                          "normalized": 0.0})
    return F.Inputs(tv, merge=lambda _: res, scores=lambda _: table, **options)


def test_every_figure_without_a_merge_is_made(tiny_tv):
    made = F.make(F.select(needs_merge=False), F.Inputs(tiny_tv, topk=0.2))
    assert list(made) == [f.name for f in F.FIGURES if not f.needs_merge]
    assert all(isinstance(m.figure, go.Figure) and m.heading for m in made.values())
    assert made["signs"].heading == "Sign conflicts (each task's top 20%)"


def test_merge_figures_apply_or_say_they_do_not(tiny_tv):
    masks = F.make(F.select(sections=("masks",)), inputs(tiny_tv, "ties"))
    assert all(m is not None for m in masks.values())
    none = F.make(F.select(sections=("masks",)), inputs(tiny_tv, "task_arithmetic"))
    assert all(m is None for m in none.values())  # task arithmetic keeps no masks
    layers = F.make(F.select(sections=("layers",), needs_merge=True), inputs(tiny_tv, "lines"))
    assert layers["coefficients"].heading == "lines: its coefficients per layer"
    assert layers["effective_coefficients"].table is not None
    ties = F.make(F.select(sections=("layers",), needs_merge=True), inputs(tiny_tv, "ties"))
    assert ties["coefficients"].heading == "ties: effective coefficient per layer"
    assert ties["effective_coefficients"] is None  # the same plot would be shown twice


def test_accuracy_bars_from_the_table_and_sweeps_only_with_a_zoo(tiny_tv):
    options = {"lambdas": [0.1, 0.2], "pair": ("task0", "task1")}
    made = F.make(F.select(sections=("accuracy",)), inputs(tiny_tv, "ties", **options))
    assert made["accuracy"].heading == "ties: accuracy per task"
    assert list(made["accuracy"].figure.data[2].y) == pytest.approx([60, 70, 80, 70])  # merged in %, and the mean
    assert made["lambda_sweep"] is None and made["interpolation"] is None  # both evaluate merges on a zoo


def test_the_dashboard_and_the_cli_share_the_sections_and_names():
    from explorer.app import views

    assert WHAT == F.SECTIONS and tuple(views.TABS) == F.SECTIONS
    shown = [n for names in views.TABS.values() for n in names]
    assert sorted(shown) == sorted(views.ZOO_FIGURES + views.RUN_FIGURES)
    assert sorted(shown) == sorted(f.name for f in F.FIGURES if f.dashboard)


def test_every_figure_is_styled_by_the_shared_template(tiny_tv):
    """The template keeps plotly_white's look only for the trace types drawn here: a figure with another trace type
    would silently lose it, so every figure of the table uses those types and carries the template."""
    from explorer.plots.style import TRACES, template

    made = {**F.make(F.select(needs_merge=False), F.Inputs(tiny_tv, topk=0.2)),
            **F.make(F.select(needs_merge=True), inputs(tiny_tv, "ties"))}
    figures = [m.figure for m in made.values() if m is not None]
    assert {trace.type for fig in figures for trace in fig.data} <= set(TRACES)
    assert all(fig.layout.template == template() for fig in figures)
    assert template().layout.plot_bgcolor == "white"  # plotly_white's layout, whole
