"""Prediction entropy and error on the tiny zoo, checked against a direct forward pass and ex.evaluate."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import explorer as ex


def _direct(zoo, weights, task):
    """Mean softmax entropy and accuracy computed here, with a plain module (no explorer code)."""
    model = zoo.build_model()
    model.load_state_dict(weights)
    x, y = zoo.dataset(task, "test").tensors
    with torch.no_grad():
        p = zoo.head(task)(model(x)).softmax(-1)
    return float(-(p * p.log()).sum(-1).mean()), float((p.argmax(-1) == y).float().mean())


def test_prediction_entropy_matches_a_direct_forward(tiny_zoo):
    tv = ex.task_vectors(tiny_zoo, device="cpu")
    res = ex.merge(tv, "task_arithmetic", scale=0.4)
    frame = ex.analysis.prediction_entropy(tiny_zoo, res)
    assert list(frame.columns) == ["task", "entropy", "accuracy", "error"] and frame.task.tolist() == ["a", "b"]
    for row in frame.itertuples():
        entropy, accuracy = _direct(tiny_zoo, res.state_dict(), row.task)
        assert row.entropy == pytest.approx(entropy, rel=1e-5) and row.accuracy == pytest.approx(accuracy)
        assert row.error == pytest.approx(1 - accuracy)
        assert 0 < row.entropy <= math.log(tiny_zoo.CLASSES)
    scored = ex.evaluate(tiny_zoo, res).table.merged.tolist()
    assert frame.accuracy.tolist() == scored  # the same count as ex.evaluate, exactly
    expert = ex.analysis.prediction_entropy(tiny_zoo, tiny_zoo.expert_state_dict("a"), tasks=["a"], limit=12)
    assert expert.accuracy.tolist() == [1.0]  # the expert gets its first 18 images right by construction


def test_entropy_error_sweep(tiny_zoo):
    tv = ex.task_vectors(tiny_zoo, device="cpu")
    frame = ex.analysis.entropy_error(tiny_zoo, tv, [0.0, 1.0])
    assert list(frame.columns) == ["value", "task", "entropy", "accuracy", "error"]
    assert frame.value.tolist() == [0, 0, 1, 1] and frame.attrs == {"method": "task_arithmetic", "param": "scale"}
    base = ex.evaluate(tiny_zoo, tiny_zoo.base_state_dict()).table.merged.tolist()
    assert frame[frame.value == 0].accuracy.tolist() == base
    with pytest.raises(ValueError, match="swept"):
        ex.analysis.entropy_error(tiny_zoo, tv, [0.1], scale=0.3)
    with pytest.raises(ValueError, match="at least one"):
        ex.analysis.entropy_error(tiny_zoo, tv, [])


def test_pearson_by_hand():
    frame = pd.DataFrame({"entropy": [1.0, 2.0, 3.0], "error": [2.0, 4.0, 6.0], "other": [3.0, 1.0, 2.0]})
    assert ex.analysis.pearson(frame) == pytest.approx(1.0)
    assert ex.analysis.pearson(frame, "entropy", "other") == pytest.approx(-0.5)  # cov -1 / (sqrt 2 * sqrt 2)
    assert math.isnan(ex.analysis.pearson(frame.assign(error=1.0)))
