"""The run report: one self-contained page with the parameters, the accuracy table, every figure and the commands."""
from __future__ import annotations

import re

import pytest

import explorer as ex
from explorer import report as R
from explorer.commands.merge import parse_params
from tests.tinyzoo import TinyZoo

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def evil_zoo() -> TinyZoo:
    """A tiny zoo whose first task's name is a script tag (a label a user could give)."""
    return TinyZoo(names=[EVIL, "b&c", "plain"])


def page_of(zoo, method="ties", scored=True, **params) -> tuple[str, R.Report]:
    result = ex.merge(ex.task_vectors(zoo, device="cpu"), method, **params)
    scores = ex.evaluate(zoo, result, limit=8, device="cpu").table if scored else None
    merge = R.merge_command(EVIL, method, result.params, result.tasks, evaluate=scored, limit=8)
    rep = R.Report(f"run {EVIL}", method, result.params, {"zoo": EVIL, "tasks": result.tasks}, scores,
                   R.figures(result, scores), R.commands(merge), no_scores=f"zoo {EVIL} has no heads")
    return rep.html(), rep


def test_page_holds_every_figure_plotly_once_and_nothing_fetched(evil_zoo):
    page, rep = page_of(evil_zoo, density=0.2)
    assert page.count('class="plotly-graph-div"') == len(rep.figures) == 13  # TIES has masks: none left out
    assert page.count("* plotly.js v") == 1  # inlined once
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert "<td>density</td>" in page and "<td>0.2</td>" in page and "Accuracy per task (%)" in page
    assert "explorer merge --zoo" in page and "-p density=0.2" in page and "--eval --limit 8" in page


def test_every_user_string_is_escaped(evil_zoo):
    page, _ = page_of(evil_zoo, density=0.2)
    assert EVIL not in page  # not in the title, the tables, the command nor the figures' JSON
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "b&amp;c" in page
    without_scores, _ = page_of(evil_zoo, "task_arithmetic", scored=False)
    assert EVIL not in without_scores and "No accuracy table: zoo &lt;script&gt;" in without_scores


def test_no_scores_leaves_the_accuracy_table_and_figures_out(zoo):
    page, rep = page_of(zoo, "task_arithmetic", scored=False, scale=0.3)
    assert "No accuracy table" in page and "Accuracy per task" not in page
    assert "accuracy" not in rep.figures and page.count('class="plotly-graph-div"') == len(rep.figures)


def test_accuracy_table_in_percent_with_the_mean(zoo):
    result = ex.merge(ex.task_vectors(zoo, device="cpu"), "task_arithmetic", scale=0.3)
    scores = ex.evaluate(zoo, result, limit=8, device="cpu").table
    table = R.accuracy_table(scores)
    assert list(table.task) == [*zoo.tasks, "mean"]
    assert table.merged.iloc[-1] == f"{100 * scores.merged.mean():.1f}"


def test_the_merge_command_parses_back_to_the_same_parameters():
    params = {"density": 0.1 + 0.2, "scale": 1.0, "seed": 3, "flag": True}
    command = R.merge_command("my zoo", "ties", params, ["a", "b"])
    assert command.startswith("explorer merge --zoo 'my zoo' --method ties -p density=0.30000000000000004")
    assert "-p flag=true --tasks a,b --out merged.safetensors" in command
    real = {"density": 0.1 + 0.2, "scale": 1.0}
    argv = R.merge_command("demo", "ties", real, ["a"]).split()
    assert parse_params("ties", [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]) == real
