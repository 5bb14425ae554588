"""Run history (table, pin, compare) and exports (weights + record, figures)."""
from __future__ import annotations

import json
import shutil
import zipfile

import pytest
from safetensors.torch import load_file

from explorer.app import export, handlers, history

from .conftest import ZOO


@pytest.fixture
def two_runs(zoo):
    state, _ = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "task_arithmetic", {"scale": 0.3}, limit=8)
    state, _ = handlers.run(state, ZOO, zoo.tasks, "ties", {"density": 0.2}, limit=8)
    return state


def test_history_table_newest_first_with_pins(two_runs):
    state = history.toggle_pin(two_runs, two_runs["runs"][0]["id"])
    table = history.history_table(state)
    assert list(table.run) == history.run_labels(state) == [r["label"] for r in reversed(state["runs"])]
    assert list(table.pinned) == ["", "📌"]
    assert table["mean acc %"].iloc[1] == round(100 * state["runs"][0]["mean_merged"], 1)
    assert history.toggle_pin(state, state["runs"][0]["label"])["runs"][0]["pinned"] is False


def test_compare_two_runs_by_hand(two_runs):
    a, b = two_runs["runs"]
    figure, table = history.compare(two_runs, a["label"], b["id"])
    left = [r["merged"] for r in a["scores"]]
    right = [r["merged"] for r in b["scores"]]
    assert list(table.task) == [r["task"] for r in a["scores"]] + ["mean"]
    diffs = [round(100 * (y - x), 1) for x, y in zip(left, right)]
    mean_diff = round(100 * (sum(right) / len(right) - sum(left) / len(left)), 1)
    assert [float(v) for v in table["B − A"]] == pytest.approx(diffs + [mean_diff])
    assert table["A %"].iloc[0] == f"{100 * left[0]:.1f}" and table["B − A"].iloc[0].startswith(("+", "-"))
    assert {t.name for t in figure.data} >= {"#1 task_arithmetic", "#2 ties"}
    assert history.short_labels(a, {**a, "n": 7, "params": {"scale": 0.5}}) == ("#1 task_arithmetic(scale=0.3)",
                                                                               "#7 task_arithmetic(scale=0.5)")
    with pytest.raises(ValueError, match="two different runs"):
        history.compare(two_runs, a["id"], a["label"])


def test_no_runs_yet_is_a_readable_error():
    with pytest.raises(ValueError, match="No runs yet"):
        export.export_weights(handlers.new_state(), None, "/tmp")


def test_export_weights_and_record(two_runs, tmp_path, zoo):
    weights, record = export.export_weights(two_runs, None, tmp_path)
    result = handlers.result_of(handlers.find(two_runs, two_runs["current"]))
    saved = load_file(str(weights))
    expected = result.state_dict()
    assert set(saved) == set(expected)
    assert all((saved[k] == expected[k]).all() for k in expected)
    data = json.loads(record.read_text())
    assert data["method"] == "ties" and data["params"]["density"] == 0.2
    assert data["scores"] == two_runs["runs"][-1]["scores"] and data["zoo"] == ZOO
    assert len(data["inputs"]["zoo"]) == 16


def test_export_figures_html_is_one_offline_page(two_runs, tmp_path):
    path = export.export_figures(two_runs, None, "html", tmp_path)
    html = path.read_text()
    figures = export.run_and_zoo_figures(handlers.find(two_runs, two_runs["current"]))
    assert html.count('class="plotly-graph-div"') == len(figures) == 13  # TIES has masks: nothing left out
    assert "<script src=" not in html  # plotly.js is embedded once, nothing is fetched
    with pytest.raises(ValueError, match="not supported"):
        export.export_figures(two_runs, None, "svg", tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="PNG export renders with kaleido and Chromium")
def test_export_figures_png_zip(two_runs, tmp_path):
    path = export.export_figures(two_runs, two_runs["runs"][0]["id"], "png", tmp_path)  # task arithmetic
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert "overlap.png" not in names and "cosine.png" in names and len(names) == 11
        assert all(archive.read(n)[:8] == b"\x89PNG\r\n\x1a\n" for n in names)


def test_pins_are_capped_so_the_history_stays_bounded(zoo, monkeypatch):
    monkeypatch.setattr(history, "MAX_PINNED", 2)
    state = handlers.new_state()
    for scale in (0.1, 0.2, 0.3):
        state, _ = handlers.run(state, ZOO, zoo.tasks, "task_arithmetic", {"scale": scale}, limit=4)
    state = history.toggle_pin(history.toggle_pin(state, "#1 task_arithmetic(scale=0.1)"),
                               "#2 task_arithmetic(scale=0.2)")
    with pytest.raises(ValueError, match="At most 2 runs can be pinned"):
        history.toggle_pin(state, "#3 task_arithmetic(scale=0.3)")
    state = history.toggle_pin(state, "#1 task_arithmetic(scale=0.1)")  # unpinning is always allowed
    assert [r["pinned"] for r in state["runs"]] == [False, True, False]
    assert "last 20 runs are kept, plus up to 10 pinned" in handlers.HISTORY_NOTE
