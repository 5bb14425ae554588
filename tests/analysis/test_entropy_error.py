"""Prediction entropy against error (analysis.calibration) on the tiny zoo, against a direct forward pass."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import explorer as ex


def _direct(zoo, weights, task):
    """Mean softmax entropy and error rate computed here, with a plain module (no explorer code)."""
    model = zoo.build_model()
    model.load_state_dict(weights)
    x, y = zoo.dataset(task, "test").tensors
    with torch.no_grad():
        p = zoo.head(task)(model(x)).softmax(-1)
    return float(-(p * p.log()).sum(-1).mean()), 1 - int((p.argmax(-1) == y).sum()) / len(y)


def test_entropy_error_matches_a_direct_forward_and_evaluate(tiny_zoo):
    tv = ex.task_vectors(tiny_zoo, device="cpu")
    frame = ex.analysis.entropy_error(tiny_zoo, tv, [0.0, 0.4])
    assert list(frame.columns) == ["value", "task", "entropy", "error"]
    assert frame.value.tolist() == [0, 0, 0.4, 0.4] and frame.task.tolist() == ["a", "b"] * 2
    assert frame.attrs == {"method": "task_arithmetic", "param": "scale", "split": "test"}
    merged = ex.merge(tv, "task_arithmetic", scale=0.4)
    for row in frame[frame.value == 0.4].itertuples():
        entropy, error = _direct(tiny_zoo, merged.state_dict(), row.task)
        assert row.entropy == pytest.approx(entropy, rel=1e-5) and row.error == pytest.approx(error)
        assert 0 < row.entropy <= math.log(tiny_zoo.CLASSES)
    base = ex.evaluate(tiny_zoo, tiny_zoo.base_state_dict()).table.merged
    assert (1 - frame[frame.value == 0].error).tolist() == pytest.approx(base.tolist())  # lambda 0: the base model
    limited = ex.analysis.entropy_error(tiny_zoo, tv, [1.0], tasks=["a"], limit=12)
    assert limited.error.tolist() == [0.0]  # theta_0 + tau_a is expert a, right on its first 18 images
    with pytest.raises(ValueError, match="at least one"):
        ex.analysis.entropy_error(tiny_zoo, tv, [])


def test_pearson_by_hand():
    frame = pd.DataFrame({"entropy": [1.0, 2.0, 3.0], "error": [2.0, 4.0, 6.0], "other": [3.0, 1.0, 2.0]})
    assert ex.analysis.pearson(frame) == pytest.approx(1.0)
    assert ex.analysis.pearson(frame, "entropy", "other") == pytest.approx(-0.5)  # cov -1 / (sqrt 2 * sqrt 2)
    assert math.isnan(ex.analysis.pearson(frame.assign(error=1.0)))
