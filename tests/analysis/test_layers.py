"""Layer norms, effective and learned coefficients against hand-computed values (vectors in conftest.py)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

import explorer as ex


def test_layer_norms(hand_tv):
    norms = ex.analysis.layer_norms(hand_tv)
    assert list(norms.columns) == ["layer", "depth", "task", "norm", "relative"]
    a = norms[norms.task == "a"]
    assert a.layer.tolist() == ["embed", "block.0", "block.1"] and a.depth.tolist() == [0, 1, 2]
    assert a.norm.tolist() == pytest.approx([1, math.sqrt(2), math.sqrt(2)])
    assert a.relative.tolist() == pytest.approx([1 / 5, math.sqrt(2), math.sqrt(2) / 2])  # base norms 5, 1, 2
    assert norms[norms.task == "c"].norm.tolist() == pytest.approx([math.sqrt(2), 1, 2])


def test_effective_coefficient_of_task_arithmetic_is_lambda(tiny_tv):
    res = ex.merge(tiny_tv, "task_arithmetic", scale=0.3)
    eff = ex.analysis.effective_coefficients(res)
    assert list(eff.columns) == ["layer", "depth", "task", "coefficient"]
    assert eff.layer.tolist() == tiny_tv.layers() and set(eff.task) == {"all"}
    assert eff.coefficient.tolist() == pytest.approx([0.3] * len(eff), rel=1e-5)


def test_effective_coefficient_hand_delta(hand_tv):
    # sum of task vectors per layer: embed [2, 2], block.0 [1, 2], block.1 [2, 0]
    delta = {n: d.sum(0) for n, d in hand_tv.items()}
    names = hand_tv.keys()
    delta[names[0]] = 0 * delta[names[0]]
    delta[names[1]] = 2 * delta[names[1]]
    delta[names[2]] = delta[names[2]].flip(0)  # same norm, other direction
    eff = ex.analysis.effective_coefficients(ex.MergeResult(tv=hand_tv, delta=delta))
    assert eff.coefficient.tolist() == pytest.approx([0, 2, 1])


def test_effective_coefficient_per_task_method(hand_tv):
    delta = {n: d.sum(0) for n, d in hand_tv.items()}
    masks = {t: {n: d[i] != 0 for n, d in hand_tv.items()} for i, t in enumerate(hand_tv.tasks)}
    res = ex.MergeResult(tv=hand_tv, delta=delta, masks=masks, task_scales={t: 1.0 for t in hand_tv.tasks})
    eff = ex.analysis.effective_coefficients(res)
    assert eff.task.unique().tolist() == ["a", "b", "c"]
    # task c keeps entries 0, 1 | 2 | 4 of the sum [2, 2 | 1, 2 | 2, 0]: ratios 1, 1/sqrt(5), 1
    c = eff[eff.task == "c"].coefficient.tolist()
    assert c == pytest.approx([1, 1 / math.sqrt(5), 1])


def test_learned_coefficients_by_key_and_layer(tiny_tv):
    names = tiny_tv.keys()
    depth = {layer: i for i, layer in enumerate(tiny_tv.layers())}
    table = pd.DataFrame([[(i + 1) * depth[tiny_tv.info[n].layer] for n in names] for i in range(3)],
                         index=pd.Index(tiny_tv.tasks, name="task"), columns=names)
    res = ex.MergeResult(tv=tiny_tv, delta=None, coefficients=table)
    by_key = ex.analysis.learned_coefficients(res)
    assert list(by_key.columns) == ["task", "key", "layer", "depth", "coefficient"]
    assert len(by_key) == 3 * len(names)
    by_layer = ex.analysis.learned_coefficients(res, by="layer")
    assert list(by_layer.columns) == ["task", "layer", "depth", "coefficient"]
    task1 = by_layer[by_layer.task == "task1"]
    assert task1.layer.tolist() == tiny_tv.layers()
    assert task1.coefficient.tolist() == pytest.approx([2 * d for d in range(len(depth))])


def test_task_wise_coefficients_broadcast_over_layers(tiny_tv):
    res = ex.merge(tiny_tv, "task_arithmetic", scale=0.4)
    by_layer = ex.analysis.learned_coefficients(res, by="layer")
    assert len(by_layer) == 3 * len(tiny_tv.layers())
    assert by_layer.coefficient.tolist() == pytest.approx([0.4] * len(by_layer))
    assert ex.analysis.learned_coefficients(res).layer.unique().tolist() == ["all"]


def test_lines_coefficients_grow_with_depth(tiny_tv):
    res = ex.merge(tiny_tv, "lines", alpha_mode="fixed", alpha=0.5, beta=1.0)
    blocks = ex.analysis.learned_coefficients(res, by="layer").set_index("layer").coefficient
    assert blocks["block.0"] == pytest.approx(0.5) and blocks["block.1"] == pytest.approx(1.5)
    eff = ex.analysis.effective_coefficients(res).set_index("layer").coefficient
    assert eff["block.1"] == pytest.approx(1.5, rel=1e-5)  # for a plain sum the two views agree


def test_missing_coefficients_and_delta_are_clear_errors(hand_tv):
    res = ex.MergeResult(tv=hand_tv, delta=None, method="twin")
    with pytest.raises(ValueError, match="twin.*no stored delta"):
        ex.analysis.effective_coefficients(res)
    with pytest.raises(ValueError, match="no coefficients.*effective_coefficients"):
        ex.analysis.learned_coefficients(res)
