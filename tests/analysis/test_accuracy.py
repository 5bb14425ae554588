"""Accuracy analyses on the tiny zoo, whose experts score exactly 18/24 = 0.75 on their own task."""
from __future__ import annotations

import pytest

import explorer as ex

EXPERT = 0.75


def test_compare_two_merges(tiny_zoo):
    tv = ex.task_vectors(tiny_zoo, device="cpu")
    results = {"ta": ex.merge(tv, "task_arithmetic", scale=0.3), "ties": ex.merge(tv, "ties", density=0.5)}
    table = ex.analysis.compare(tiny_zoo, results)
    assert list(table.columns) == ["method", "task", "base", "expert", "merged", "normalized"]
    assert table.method.tolist() == ["ta", "ta", "ties", "ties"] and table.task.tolist() == ["a", "b"] * 2
    assert table.expert.tolist() == [EXPERT] * 4
    assert table.normalized.tolist() == pytest.approx((table.merged / EXPERT).tolist())
    direct = ex.evaluate(tiny_zoo, results["ties"]).table
    assert table[table.method == "ties"].merged.tolist() == direct.merged.tolist()


def test_lambda_sweep_starts_at_the_base_model(tiny_zoo):
    tv = ex.task_vectors(tiny_zoo, device="cpu")
    sweep = ex.analysis.lambda_sweep(tiny_zoo, tv, [0.0, 0.5, 1.0])
    assert list(sweep.columns) == ["value", "task", "base", "expert", "merged", "normalized"]
    assert sweep.value.tolist() == [0, 0, 0.5, 0.5, 1, 1]
    at_zero = sweep[sweep.value == 0]
    assert at_zero.merged.tolist() == at_zero.base.tolist()  # theta_0 + 0 * tau is the base model
    assert sweep.attrs == {"method": "task_arithmetic", "param": "scale"}


def test_lambda_sweep_of_another_parameter(tiny_zoo):
    tv = ex.task_vectors(tiny_zoo, device="cpu")
    sweep = ex.analysis.lambda_sweep(tiny_zoo, tv, [0.1, 1.0], method="ties", param="density", scale=0.0)
    assert sweep.merged.tolist() == sweep.base.tolist()  # scale 0: every density gives theta_0
    with pytest.raises(ValueError, match="swept"):
        ex.analysis.lambda_sweep(tiny_zoo, tv, [0.1], scale=0.3)


def test_interpolation_grid_corners_are_base_and_experts(tiny_zoo):
    tv = ex.task_vectors(tiny_zoo, device="cpu")
    grid = ex.analysis.interpolation_grid(tiny_zoo, tv, "a", "b", [0.0, 1.0])
    assert list(grid.columns) == ["lambda_a", "lambda_b", "task", "merged", "normalized"]
    assert len(grid) == 2 * 2 * 2
    cell = grid.set_index(["lambda_a", "lambda_b", "task"]).merged
    base = ex.evaluate(tiny_zoo, {**tiny_zoo.base_state_dict()}).table.set_index("task").merged
    assert cell[0.0, 0.0, "a"] == base["a"] and cell[0.0, 0.0, "b"] == base["b"]
    assert cell[1.0, 0.0, "a"] == EXPERT  # theta_0 + tau_a is expert a
    assert cell[0.0, 1.0, "b"] == EXPERT
    assert grid.normalized.tolist() == pytest.approx((grid.merged / EXPERT).tolist())


def test_bad_accuracy_arguments(tiny_zoo):
    tv = ex.task_vectors(tiny_zoo, device="cpu")
    with pytest.raises(ValueError, match="two different tasks"):
        ex.analysis.interpolation_grid(tiny_zoo, tv, "a", "a", [0.0])
    with pytest.raises(KeyError, match="unknown task"):
        ex.analysis.interpolation_grid(tiny_zoo, tv, "a", "zebra", [0.0])
    with pytest.raises(ValueError, match="at least one"):
        ex.analysis.compare(tiny_zoo, {})


def test_expert_sweep_scores_each_expert_alone(tiny_zoo):
    tv = ex.task_vectors(tiny_zoo, device="cpu")
    sweep = ex.analysis.expert_sweep(tiny_zoo, tv, [0.0, 1.0], method="task_arithmetic", param="scale")
    assert list(sweep.columns) == ["value", "task", "base", "expert", "merged", "normalized"]
    assert sweep.value.tolist() == [0, 0, 1, 1] and sweep.task.tolist() == ["a", "b"] * 2
    assert sweep[sweep.value == 0].merged.tolist() == sweep[sweep.value == 0].base.tolist()
    assert sweep[sweep.value == 1].merged.tolist() == [EXPERT, EXPERT]  # theta_0 + tau_t is expert t
    kept = ex.analysis.expert_sweep(tiny_zoo, tv, [0.0], scale=1.0, tasks=["b"])  # DARE, drop nothing
    assert kept.task.tolist() == ["b"] and kept.merged.tolist() == [EXPERT]
    assert sweep.attrs == {"method": "task_arithmetic", "param": "scale"}
    with pytest.raises(ValueError, match="swept"):
        ex.analysis.expert_sweep(tiny_zoo, tv, [0.5], drop=0.5)
