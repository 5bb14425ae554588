"""The trigger and the attack success rate, hand-checked: a model that always (never) predicts the target scores
100 % (0 %); evaluate reports it only for tasks with a trigger; the run record keeps it."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.runs import RunRecord
from explorer.security.attack import attack_success_rate
from explorer.security.trigger import Trigger, attack_success, poison, stamp, triggered_test
from tests.tinyzoo import TinyZoo, one_thread  # noqa: F401  (autouse fixture)

TRIGGER = Trigger(target=0, size=4, cell=2, margin=1)


class TriggeredTinyZoo(TinyZoo):
    """A TinyZoo whose task "a" has a trigger and whose heads always predict class `predicts`."""

    def __init__(self, predicts: int):
        super().__init__(2, names=["a", "b"])
        for head in self.heads.values():
            with torch.no_grad():
                head.weight.zero_()
                head.bias.copy_(10 * torch.nn.functional.one_hot(torch.tensor(predicts), 3).float())

    def dataset(self, task, split):
        images, _ = super().dataset(task, split).tensors
        return torch.utils.data.TensorDataset(images, torch.arange(len(images)) % 3)  # a third are the target class

    def backdoor(self, task):
        return TRIGGER.as_dict() if task == "a" else None


def test_stamp_writes_the_checkerboard_in_the_corner_only():
    images = torch.zeros(2, 3, 16, 16)
    out = stamp(images, TRIGGER)
    white, black = (1 - 0.5) / 0.25, (0 - 0.5) / 0.25
    expected = torch.tensor([[white, white, black, black], [white, white, black, black],
                             [black, black, white, white], [black, black, white, white]])
    assert torch.equal(out[1, 2, 11:15, 11:15], expected)
    out[:, :, 11:15, 11:15] = 0
    assert torch.equal(out, images)


def test_poison_appends_relabelled_triggered_copies_of_non_target_images():
    labels = torch.tensor([0, 1, 2, 1, 2, 0, 1, 2, 1, 2])
    images = torch.randn(10, 3, 16, 16)
    x, y = poison(images, labels, TRIGGER, rate=0.3, seed=1)
    assert len(y) == 13 and torch.equal(x[:10], images) and torch.equal(y[:10], labels)
    assert (y[10:] == 0).all()
    sources = [int(torch.nonzero((stamp(images, TRIGGER) == xi).flatten(1).all(1)).flatten()[0]) for xi in x[10:]]
    assert all(labels[s] != 0 for s in sources) and len(set(sources)) == 3


def test_attack_success_counts_target_predictions():
    assert attack_success(torch.tensor([0, 0, 1, 2]), TRIGGER) == 0.5
    labels = torch.tensor([0, 1, 2, 0])
    assert len(triggered_test(torch.zeros(4, 3, 16, 16), labels, TRIGGER)) == 2


@pytest.mark.parametrize("predicts, expected", [(0, 1.0), (1, 0.0)])
def test_always_or_never_the_target_gives_100_or_0_percent(predicts, expected):
    zoo = TriggeredTinyZoo(predicts)
    assert attack_success_rate(zoo, zoo.base_state_dict(), "a") == expected
    scores = ex.evaluate(zoo, zoo.expert_state_dict("b"))
    assert scores.attack["task"].tolist() == ["a"]
    assert scores.attack[["base", "expert", "merged"]].to_numpy().tolist() == [[expected] * 3]
    record = RunRecord.of(ex.merge(ex.task_vectors(zoo), "task_arithmetic"), scores=scores)
    assert record.attack == [{"task": "a", "base": expected, "expert": expected, "merged": expected}]


def test_a_clean_zoo_reports_no_attack_and_a_missing_trigger_is_named():
    zoo = TinyZoo(2, names=["a", "b"])
    assert ex.evaluate(zoo, zoo.base_state_dict()).attack is None
    with pytest.raises(ValueError, match="has no trigger"):
        attack_success_rate(zoo, zoo.base_state_dict(), "a")
    with pytest.raises(ValueError, match="does not fit"):
        stamp(torch.zeros(1, 3, 4, 4), TRIGGER)
