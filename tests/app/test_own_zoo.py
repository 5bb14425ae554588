"""The dashboard on a zoo of your own: a folder of checkpoints without model definition, heads or data merges, draws
every weight-space view and exports, and the accuracy view says what is missing instead of failing the run."""
from __future__ import annotations

import pytest

from explorer.app import cache, export, handlers, history, views
from tests.conftest import write_zoo_folder


@pytest.fixture
def folder(tmp_path, zoo):  # `zoo` clears the shared caches afterwards
    path, _, _ = write_zoo_folder(tmp_path)
    return str(path)


def test_a_folder_zoo_merges_and_explains_the_missing_accuracy(folder, tmp_path):
    state, view = handlers.run(handlers.new_state(), folder, ["task0", "task1", "task2"], "ties", {"density": 0.3})
    record = view.record
    assert record["scores"] is None and record["zoo"] == folder
    assert "Accuracy not measured" in view.status
    note = view.accuracy_note
    assert "a model definition" in note  # tiny towers match no known architecture
    assert all(f"class names for task 'task{i}'" in note for i in range(3))
    assert view.figures["usage"] is not None and view.figures["overlap"] is not None
    assert view.figures["accuracy"] is None and view.table.empty
    figures = views.zoo_figures(folder, record["tasks"])
    assert all(figures[name] is not None for name in ("cosine", "signs", "norms", "subspace_overlap"))
    assert history.history_table(state).loc[0, "mean acc %"] == "-"
    with pytest.raises(ValueError, match="cannot be scored"):
        handlers.evaluate_full(state)
    weights, run_record = export.export_weights(state, None, tmp_path / "out")
    assert weights.is_file() and run_record.is_file()
    assert export.run_and_zoo_figures(record)  # the figure export has the weight-space views


def test_methods_that_read_data_say_so_on_a_zoo_without_data(folder):
    tasks = ["task0", "task1"]
    note = handlers.data_note(folder, tasks, "adamerging")
    assert "adamerging** reads the zoo's images" in note and "Pick a data-free method" in note
    assert handlers.data_note(folder, tasks, "ties") == ""
    with pytest.raises(ValueError, match="reads the zoo's images"):
        handlers.run(handlers.new_state(), folder, tasks, "adamerging", {})


def test_paths_without_a_zoo_get_a_clear_message(tmp_path, zoo):
    with pytest.raises(ValueError, match="no such file or folder"):
        cache.zoo(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no zoo: it has no checkpoint files"):
        cache.zoo(str(tmp_path / "empty"))


def test_opening_reports_each_expert_and_the_peak_memory(folder):
    from explorer.app import ui

    steps = list(ui.open_zoo(folder, lambda *a, **k: None))
    lines = [status for status, _ in steps]
    assert [line.split(": read ")[1].split(" experts")[0] for line in lines[:-1]] == ["1 / 3", "2 / 3", "3 / 3"]
    assert all("peak memory" in line for line in lines)
    assert lines[-1].startswith(f"Zoo `{folder}`: 3 experts") and "Accuracy: not available" in lines[-1]
    assert steps[-1][1]["value"] == ["task0", "task1", "task2"]  # every expert ticked


def test_a_large_zoo_is_announced_before_views_and_merges(folder, monkeypatch):
    tasks = ["task0", "task1", "task2"]
    assert handlers.merge_note(folder, tasks, "ties") == ""  # not loaded yet: nothing to size
    cache.vectors(folder, tasks)
    assert handlers.merge_note(folder, tasks, "ties") == "" and views.size_note(folder, tasks) == ""  # tiny
    monkeypatch.setattr(views, "LARGE", 1000)  # 3 tasks x 7,808 parameters count as large now
    assert handlers.merge_note(folder, tasks, "ties").startswith("Merging 3 experts × 0.0 M parameters with **ties**")
    assert "Cancel stops between views" in views.size_note(folder, tasks)
    seen = []
    with pytest.raises(views.Cancelled, match="cancelled after 2 of"):
        views.zoo_figures(folder, tasks, progress=lambda i, n, name: seen.append(name), cancel=lambda: len(seen) == 2)
    assert seen == ["cosine", "cosine_layers"] and not views.ready(folder, tasks)
