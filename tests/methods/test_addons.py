"""Results with add-ons: save -> load_result -> evaluate gives the same scores; the record says how to rebuild."""
from __future__ import annotations

import pytest

import explorer as ex
from explorer.runs import load_result, load_run, save


@pytest.mark.parametrize("method, params", [("surgery", {"steps": 20, "lr": 1e-2}), ("twin", {"epochs": 3}),
                                            ("wemoe", {"steps": 2, "lr": 1e-2})])
def test_save_load_evaluate_gives_the_same_scores(zoo, tv, tmp_path, method, params):
    res = ex.merge(tv, method, **params)
    before = ex.evaluate(zoo, res)
    record = save(res, tmp_path / "m.safetensors", zoo=zoo, scores=before)
    assert record.addon["kind"] == res.addon.kind and (tmp_path / record.addon["file"]).is_file()
    assert load_run(tmp_path / "m.json").addon["inference"] == res.inference
    again = load_result(tmp_path / "m.safetensors", tv)
    assert again.addon.kind == res.addon.kind and again.method == method
    assert ex.evaluate(zoo, again).table["merged"].tolist() == before.table["merged"].tolist()


def test_a_result_without_addon_needs_nothing_at_inference(tv):
    res = ex.merge(tv, "task_arithmetic")
    assert res.addon is None and not res.needs_task and not res.routes and res.inference == ""
