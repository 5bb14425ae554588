"""Self Positioning: SLERP by hand, the iterated SLERP's direction, and the fit on a tiny in-memory zoo."""
from __future__ import annotations

import math

import pytest
import torch

import explorer as ex
from explorer.methods.positioning import iterated_slerp, slerp
from explorer.runs import RunRecord
from tests.tinyzoo import TinyZoo, one_thread  # noqa: F401  (autouse fixture)


def angle(a, b) -> float:
    return math.acos(float(a @ b / (a.norm() * b.norm())))


def test_slerp_of_two_orthogonal_unit_vectors_at_equal_weights():
    u, v, one = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor(1.0)
    mid = slerp(u, v, one, one, torch.tensor(0.0))
    assert float(mid.norm()) == pytest.approx(1.0)
    assert angle(mid, u) == pytest.approx(math.pi / 4) and angle(mid, v) == pytest.approx(math.pi / 4)


def test_slerp_moves_towards_the_heavier_vector_along_the_circle():
    u, v = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    point = slerp(u, v, torch.tensor(3.0), torch.tensor(1.0), torch.tensor(0.0))
    assert float(point.norm()) == pytest.approx(1.0)
    assert angle(point, u) == pytest.approx(math.pi / 8)  # a quarter of the way: weight 1 / (3 + 1) towards v
    near = slerp(u, u, torch.tensor(1.0), torch.tensor(1.0), torch.tensor(1.0))  # parallel: the linear mix
    torch.testing.assert_close(near, u)


def test_iterated_slerp_is_a_unit_direction_in_the_span(tv):
    flat = tv.flat().double()
    units = flat / flat.norm(dim=1, keepdim=True)
    cosines = units @ units.T
    weights = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    c = iterated_slerp(weights, cosines)
    assert float(c @ cosines @ c) == pytest.approx(1.0)
    two = iterated_slerp(weights[:2], cosines[:2, :2])  # T = 2: one SLERP of u_1 and u_2
    expected = slerp(units[0], units[1], weights[0], weights[1], cosines[0, 1])
    torch.testing.assert_close(two @ units[:2], expected)
    # the third step interpolates with weights mean(a_1, a_2) and a_3
    step = slerp(expected, units[2], weights[:2].mean(), weights[2], expected @ units[2])
    torch.testing.assert_close(c @ units, step)


def test_zero_steps_is_the_equal_weight_direction_at_the_experts_mean_norm(tv):
    res = ex.merge(tv, "self_positioning", steps=0, probe=8)
    flat = tv.flat().double()
    norms = flat.norm(dim=1)
    cosines = (flat @ flat.T) / torch.outer(norms, norms)
    c = iterated_slerp(torch.ones(3, dtype=torch.float64), cosines)
    merged = torch.cat([res.delta[n].reshape(-1) for n in tv.keys()]).double()
    torch.testing.assert_close(merged, norms.mean() * (c / norms) @ flat, rtol=1e-5, atol=1e-6)
    assert list(res.coefficients.index) == [*tv.tasks, "all"]
    assert res.coefficients["all"].to_numpy() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0])
    assert res.info["data"] == {"split": "validation", "examples_per_task": {t: 8 for t in tv.tasks}}
    assert RunRecord.of(res).data["split"] == "validation"


def test_fit_lowers_the_loss_and_the_penalty_shortens_the_vector(tv):
    res = ex.merge(tv, "self_positioning", steps=30, lr=0.05, probe=16, mu=0.0)
    loss = res.info["loss"]
    assert len(loss) == 30 and loss[-1] < loss[0]
    weights = res.coefficients["all"].to_numpy()
    assert weights[:-1].sum() == pytest.approx(1.0) and weights[-1] == pytest.approx(res.info["norm"])
    strong = ex.merge(tv, "self_positioning", steps=30, lr=0.05, probe=16, mu=5.0)
    assert strong.info["norm"] < res.info["norm"]


def test_seeded_cancelled_and_reported(tv):
    a = ex.merge(tv, "self_positioning", steps=5, probe=8, seed=2)
    b = ex.merge(tv, "self_positioning", steps=5, probe=8, seed=2)
    c = ex.merge(tv, "self_positioning", steps=5, probe=8, seed=3)
    assert a.info["loss"] == b.info["loss"] and a.info["loss"] != c.info["loss"]
    seen = []
    calls = []
    res = ex.merge(tv, "self_positioning", steps=50, probe=8, callback=seen.append,
                   cancel=lambda: calls.append(1) or len(calls) > 12)
    assert res.info["cancelled"] and res.info["steps"] == 12
    assert [p.step for p in seen] == [5, 10] and all(p.total == 50 for p in seen)
