"""Entropy against error across a merge sweep, and the Pearson correlation that condenses it."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import explorer as ex
from explorer.analysis.calibration import entropy_error, pearson
from explorer.evaluate import task_logits
from tests.tinyzoo import TinyZoo, one_thread  # noqa: F401


def test_pearson_by_hand():
    frame = pd.DataFrame({"entropy": [0.0, 1.0, 2.0], "error": [0.1, 0.2, 0.6]})
    # mean-centred: x = (-1, 0, 1), y = (-0.2, -0.1, 0.3); r = 0.5 / (sqrt(2) * sqrt(0.14))
    assert pearson(frame) == pytest.approx(0.5 / math.sqrt(2 * 0.14))
    assert math.isnan(pearson(pd.DataFrame({"entropy": [1.0, 1.0], "error": [0.0, 1.0]})))


def test_entropy_error_matches_the_logits():
    zoo = TinyZoo()
    tv = ex.task_vectors(zoo, device="cpu")
    frame = entropy_error(zoo, tv, [0.0, 1.0], limit=16)
    assert list(frame.columns) == ["value", "task", "entropy", "error"] and len(frame) == 2 * len(zoo.tasks)
    row = frame[(frame["value"] == 1.0) & (frame["task"] == zoo.tasks[0])].iloc[0]
    logits, labels = task_logits(zoo, ex.merge(tv, "task_arithmetic", scale=1.0).state_dict(), zoo.tasks[0],
                                 limit=16, device="cpu")
    p = logits.softmax(-1)
    assert row["entropy"] == pytest.approx(float(-(p * p.log()).sum(-1).mean()), rel=1e-5)
    assert row["error"] == pytest.approx(float((logits.argmax(-1) != labels).float().mean()))
    assert 0.0 <= row["entropy"] <= math.log(3) + 1e-6
    with pytest.raises(ValueError, match="at least one value"):
        entropy_error(zoo, tv, [])


def test_task_logits_agree_with_accuracy():
    zoo = TinyZoo()
    weights = zoo.expert_state_dict(zoo.tasks[1])
    logits, labels = task_logits(zoo, weights, zoo.tasks[1], device="cpu")
    acc = ex.evaluate(zoo, weights, tasks=[zoo.tasks[1]], device="cpu").table["merged"].iloc[0]
    assert float((logits.argmax(-1) == labels).float().mean()) == pytest.approx(acc)
    assert acc == 1.0 and logits.shape == (len(labels), 3) and torch.isfinite(logits).all()
