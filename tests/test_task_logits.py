"""evaluate.task_logits: the logits behind the accuracy, on the tiny zoo whose experts are right on 18 of 24 images."""
from __future__ import annotations

import pytest
import torch

from explorer.evaluate import task_logits


def test_task_logits_are_what_accuracy_counts(tiny_zoo):
    weights = tiny_zoo.expert_state_dict("a")
    logits, labels = task_logits(tiny_zoo, weights, "a", limit=20)
    assert logits.shape == (20, tiny_zoo.CLASSES) and labels.shape == (20,)
    assert int((logits.argmax(-1) == labels).sum()) == 18  # the first 18 are right by construction
    model = tiny_zoo.build_model()
    model.load_state_dict(weights)
    x, _ = tiny_zoo.dataset("a", "test").tensors
    with torch.no_grad():
        torch.testing.assert_close(logits, tiny_zoo.head("a")(model(x[:20])))
    with pytest.raises(ValueError, match="missing"):
        task_logits(tiny_zoo, {"conv1.weight": weights["conv1.weight"]}, "a")
