"""Representation Surgery: zero-initialised up-projection gives the base merge; training lowers the L1 gap."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.methods.surgery import SurgeryAddOn, parse_params, surgery_correct


def test_surgery_correct_is_f_minus_up_relu_down_f():
    f = torch.tensor([[1.0, -2.0]])
    down, up = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    # relu(down f) = [1, 0]; up @ [1, 0] = [2, 0]; f - that = [-1, -2]
    assert torch.equal(surgery_correct(f, down, up), torch.tensor([[-1.0, -2.0]]))


def test_untrained_surgery_equals_its_base_merge(zoo, tv):
    base = ex.merge(tv, "task_arithmetic", scale=0.4)
    res = ex.merge(tv, "surgery", on="task_arithmetic", on_params="scale=0.4", steps=0)
    assert all(torch.equal(res.delta[n], base.delta[n]) for n in base.delta)
    assert res.needs_task and not res.routes and isinstance(res.addon, SurgeryAddOn)
    assert ex.evaluate(zoo, res).table["merged"].tolist() == ex.evaluate(zoo, base).table["merged"].tolist()
    bias = res.info["representation_bias"]
    assert (bias["before"] == bias["after"]).all()


def test_training_lowers_the_l1_gap_to_the_experts_features(tv):
    seen = []
    res = ex.merge(tv, "surgery", steps=60, lr=1e-2, log_every=20, callback=seen.append)
    bias = res.info["representation_bias"]
    assert (bias["after"] < bias["before"]).all(), bias
    assert [p.step for p in seen] == [20, 40, 60] and res.info["steps"] == 60


def test_cancel_stops_training_and_keeps_a_result(tv):
    res = ex.merge(tv, "surgery", steps=50, cancel=lambda: True)
    assert res.info["cancelled"] and res.info["steps"] == 0


def test_base_parameters_are_parsed_and_checked():
    assert parse_params("scale=0.5", "task_arithmetic") == {"scale": 0.5}
    assert parse_params("defaults", "task_arithmetic") == {"scale": 0.3}
    with pytest.raises(ValueError, match="name=value"):
        parse_params("0.5", "task_arithmetic")
    with pytest.raises(ValueError, match="no parameter 'density'"):
        parse_params("density=0.2", "task_arithmetic")
