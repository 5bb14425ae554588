"""Evaluation harness on the tiny zoo, whose accuracies are known by construction (see conftest.TinyZoo)."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

import explorer as ex
from explorer.evaluate import task_accuracy
from explorer.result import MergeResult


def naive_accuracy(zoo, state_dict, task, split="test", limit=None) -> float:
    """The slow reference: load the weights into a fresh module and loop over the images one by one."""
    model = zoo.build_model()
    model.load_state_dict(state_dict)
    model.eval()
    data = zoo.dataset(task, split)
    n = len(data) if limit is None else limit
    with torch.no_grad():
        hits = [int(zoo.head(task)(model(data[i][0][None])).argmax()) == int(data[i][1]) for i in range(n)]
    return sum(hits) / n


def test_expert_accuracy_is_the_constructed_one(tiny_zoo):
    scores = ex.evaluate(tiny_zoo, tiny_zoo.expert_state_dict("a"), tasks=["a"])
    row = scores.table.iloc[0]
    assert row["expert"] == pytest.approx(18 / 24)
    assert row["merged"] == pytest.approx(18 / 24)
    assert row["normalized"] == pytest.approx(1.0)
    # The first 8 images are all predicted right, the last 6 of 24 all wrong.
    assert task_accuracy(tiny_zoo, tiny_zoo.expert_state_dict("a"), "a", limit=8) == 1.0


def test_base_and_merged_match_a_naive_loop(tiny_zoo):
    tv = ex.task_vectors(tiny_zoo, device="cpu")
    delta = {n: 0.5 * d.sum(0) for n, d in tv.items()}
    merged_sd = tv.state_dict(delta)
    scores = ex.evaluate(tiny_zoo, merged_sd, split="validation", device="cpu")
    for _, row in scores.table.iterrows():
        base = naive_accuracy(tiny_zoo, tiny_zoo.base_state_dict(), row["task"], "validation")
        assert row["base"] == pytest.approx(base)
        assert row["merged"] == pytest.approx(naive_accuracy(tiny_zoo, merged_sd, row["task"], "validation"))
        assert row["normalized"] == pytest.approx(row["merged"] / row["expert"])
    assert list(scores.table.columns) == ["task", "base", "expert", "merged", "normalized"]
    assert isinstance(scores.mean, pd.Series)
    assert scores.mean["merged"] == pytest.approx(scores.table["merged"].mean())


def test_limit_takes_the_first_images(tiny_zoo):
    sd = tiny_zoo.base_state_dict()
    for limit in (5, 20):
        assert task_accuracy(tiny_zoo, sd, "b", "test", limit) == pytest.approx(
            naive_accuracy(tiny_zoo, sd, "b", "test", limit))


def test_per_task_results_use_their_own_model(tiny_zoo):
    tv = ex.task_vectors(tiny_zoo, device="cpu")
    delta = tv.task("a")
    masks = {"a": {n: torch.ones_like(d, dtype=torch.bool) for n, d in delta.items()},
             "b": {n: torch.zeros_like(d, dtype=torch.bool) for n, d in delta.items()}}
    result = MergeResult(tv, delta, method="hand-made", masks=masks, task_scales={"a": 1.0, "b": 1.0})
    table = ex.evaluate(tiny_zoo, result).table.set_index("task")
    assert table.loc["a", "merged"] == pytest.approx(18 / 24)  # task a runs expert a
    assert table.loc["b", "merged"] == pytest.approx(table.loc["b", "base"])  # task b runs the base


def test_reference_accuracies_are_cached(tiny_zoo):
    sd = tiny_zoo.base_state_dict()
    ex.evaluate(tiny_zoo, sd)
    loads = tiny_zoo.expert_loads
    ex.evaluate(tiny_zoo, sd)
    assert tiny_zoo.expert_loads == loads
    ex.evaluate(tiny_zoo, sd, limit=10)  # another limit is another setting
    assert tiny_zoo.expert_loads == loads + 2


def test_bad_inputs_say_what_to_do(tiny_zoo):
    sd = tiny_zoo.base_state_dict()
    with pytest.raises(ValueError, match="missing.*tv.state_dict"):
        task_accuracy(tiny_zoo, {k: v for k, v in sd.items() if k != "proj"}, "a")
    with pytest.raises(ValueError, match="unknown task 'c'"):
        ex.evaluate(tiny_zoo, sd, tasks=["c"])
    with pytest.raises(ValueError, match="unknown split"):
        ex.evaluate(tiny_zoo, sd, split="dev")
    with pytest.raises(ValueError, match="limit"):
        ex.evaluate(tiny_zoo, sd, limit=0)
    with pytest.raises(TypeError, match="MergeResult or a state dict"):
        ex.evaluate(tiny_zoo, [1, 2])


def test_select_picks_the_brute_force_lambda(tiny_zoo):
    tv = ex.task_vectors(tiny_zoo, device="cpu")
    grid = [0.0, 0.5, 1.0, 2.0, 3.0]
    sel = ex.select(tv, "task_arithmetic", {"scale": grid}, split="validation")
    brute = [ex.evaluate(tiny_zoo, ex.merge(tv, "task_arithmetic", scale=s), split="validation").mean["normalized"]
             for s in grid]
    assert len(set(brute)) > 1  # the choice matters on this zoo
    assert sel.params["scale"] == grid[brute.index(max(brute))]
    assert sel.table["normalized"].tolist() == pytest.approx(brute)
    expected = ex.evaluate(tiny_zoo, ex.merge(tv, "task_arithmetic", scale=sel.params["scale"]), split="test")
    pd.testing.assert_frame_equal(sel.scores.table, expected.table)


def test_select_passes_fixed_params_and_checks_the_grid(tiny_zoo):
    tv = ex.task_vectors(tiny_zoo, device="cpu")
    sel = ex.select(tv, "ties", {"scale": [0.5, 1.0]}, density=0.2)
    assert sel.params["density"] == 0.2 and sel.params["scale"] in (0.5, 1.0)
    assert list(sel.table.columns) == ["scale", "merged", "normalized"]
    with pytest.raises(ValueError, match="non-empty list"):
        ex.select(tv, "ties", {"scale": []})
    with pytest.raises(ValueError, match="needs a zoo"):
        ex.select(ex.task_vectors(tiny_zoo.base_state_dict(), {"a": tiny_zoo.expert_state_dict("a")}),
                  "task_arithmetic", {"scale": [1.0]})


def test_concurrent_evaluations_each_borrow_a_module_and_agree_with_one_at_a_time(tiny_zoo):
    """functional_call swaps a module's parameters while it runs: threads evaluating at once must not share one."""
    from concurrent.futures import ThreadPoolExecutor

    from explorer import inference

    tv = ex.task_vectors(tiny_zoo)
    merges = [ex.merge(tv, "task_arithmetic", scale=s) for s in (0.1, 0.4, 0.7, 1.0)] * 3
    alone = [ex.evaluate(tiny_zoo, m).table for m in merges]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda m: ex.evaluate(tiny_zoo, m).table, merges))
    for a, b in zip(alone, together):
        pd.testing.assert_frame_equal(a, b)
    idle = inference._cache(tiny_zoo).models["cpu"]
    assert 1 <= len(idle) <= 4 and len({id(m) for m in idle}) == len(idle)  # all returned, none twice


def test_one_forward_pass_for_all_tasks_gives_each_tasks_accuracy(tiny_zoo):
    """The live subset's images of every task go through the encoder together: each task's accuracy is the one
    its own pass gives."""
    from explorer.inference import task_accuracies

    weights = ex.merge(ex.task_vectors(tiny_zoo), "ties", density=0.3).state_dict()
    for limit in (4, 16, None):
        together = task_accuracies(tiny_zoo, weights, tiny_zoo.tasks, limit=limit)
        assert together == {t: task_accuracy(tiny_zoo, weights, t, limit=limit) for t in tiny_zoo.tasks}
