"""Hand-computed tests for the composed variants: TALL masks and Consensus over the TIES vector (mtl="ties"), LiNeS
on TIES and on Consensus, DARE on TIES with a real drop, and TALL masks choosing lambda on validation data."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.methods.masks import LAM_GRID
from tests.tinyzoo import TinyZoo, one_thread  # noqa: F401  (autouse)

from .test_data_free import TAU, tall_tv, tv_from

# TIES over TAU at density 0.5 (see test_ties_hand_computed_with_zero_sum_tie): disjoint sum and mean
TIES_SUM = [3.0, -3.0, 0.0, 4.0, 0.0, 3.0]
TIES_MEAN = [1.5, -1.5, 0.0, 2.0, 0.0, 1.5]


def test_tall_masks_over_the_ties_vector():
    # m_t = |tau_t| > 0.4 |tau_MTL - tau_t| with tau_MTL = TIES_SUM
    res = ex.merge(tv_from(TAU), "tall_masks", mtl="ties", density=0.5, lam=0.4, lam_select="fixed")
    assert res.delta["w"].tolist() == TIES_SUM
    assert res.masks["t0"]["w"].tolist() == [True] * 6          # 0.4|mtl - t0| = [.8 .4 .2 .4 .04 .8] < |t0|
    assert res.masks["t1"]["w"].tolist() == [False] + [True] * 5  # 0.4 * |3 + 1| = 1.6 > |-1|
    assert res.masks["t2"]["w"].tolist() == [True, False, True, False, True, True]
    assert res.task_delta("t2")["w"].tolist() == [3.0, 0.0, 0.0, 0.0, 0.0, 3.0]


def test_consensus_over_the_ties_vector():
    # the three TALL masks above use each weight [2, 2, 3, 2, 3, 3] times
    tv = tv_from(TAU)
    two = ex.merge(tv, "consensus", mtl="ties", density=0.5, lam=0.4, k=2, scale=1.0)
    assert two.delta["w"].tolist() == TIES_SUM
    three = ex.merge(tv, "consensus", mtl="ties", density=0.5, lam=0.4, k=3, scale=0.5)
    assert three.delta["w"].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, 1.5]


def blocks_tv() -> ex.TaskVectors:
    """TAU split into two blocks: entries 0-2 in block 0, entries 3-5 in block 1."""
    names = ("transformer.resblocks.0.mlp.c_fc.bias", "transformer.resblocks.1.mlp.c_fc.bias")
    base = {n: torch.zeros(3) for n in names}
    experts = {f"t{i}": {names[0]: row[:3].clone(), names[1]: row[3:].clone()} for i, row in enumerate(TAU)}
    return ex.task_vectors(base, experts, device="cpu")


def test_lines_on_ties():
    tv = blocks_tv()
    b0, b1 = tv.keys()
    fixed = ex.merge(tv, "lines", base="ties", density=0.5, alpha_mode="fixed", alpha=0.5, beta=1.0)
    # TIES (global top-k, mean) = TIES_MEAN; block 0 scaled by alpha = 0.5, block 1 by alpha + beta = 1.5
    assert fixed.delta[b0].tolist() == [0.75, -0.75, 0.0]
    assert fixed.delta[b1].tolist() == [3.0, 0.0, 2.25]
    auto = ex.merge(tv, "lines", base="ties", density=0.5, beta=0.0)
    # alpha = ||sum_t tau_t||_1 / ||TIES||_1 / T = (2 + 2 + .4 + 1 + .1 + 0) / 6.5 / 3
    assert auto.info["alpha"] == pytest.approx(5.5 / 6.5 / 3)
    assert torch.allclose(auto.delta[b1], torch.tensor(TIES_MEAN[3:]) * 5.5 / 6.5 / 3)


def test_lines_on_consensus():
    # Consensus of tall_tv at lam 0.5, k 2 keeps weight 0 only: [2, 0, 0] (test_consensus_hand_computed...)
    res = ex.merge(tall_tv(), "lines", base="consensus", k=2, lam=0.5, beta=0.0)
    # alpha = ||[2, -0.9, -0.8]||_1 / ||[2, 0, 0]||_1 / 2 = 3.7 / 2 / 2
    assert res.info["alpha"] == pytest.approx(0.925)
    assert torch.allclose(res.delta["w"], torch.tensor([1.85, 0.0, 0.0]))


@pytest.mark.parametrize("aggregate,expected", [("sum", [6.0, -2.0, 0.4, 6.0, 0.8, 6.0]),
                                                ("mean", [3.0, -2.0, 0.4, 6.0, 0.8, 3.0])])
def test_dare_on_ties_with_a_real_drop(aggregate, expected):
    # seed 1 keeps [[1,0,0,1,0,1], [0,1,1,0,1,1], [1,0,0,0,1,0]] (torch.rand >= 0.5); survivors are doubled:
    # t0 = [2,0,0,6,0,2], t1 = [0,-2,.4,0,.8,4], t2 = [4,0,0,0,-.4,0]. TIES at density 0.5 keeps |x| >= the 3rd
    # smallest (0, 0.4, 0: t1 loses nothing non-zero either); signs [+,-,+,+,+,+]; t2's -0.4 disagrees.
    res = ex.merge(tv_from(TAU), "dare", drop=0.5, seed=1, base="ties", density=0.5, aggregate=aggregate, scale=1.0)
    assert torch.allclose(res.delta["w"], torch.tensor(expected))
    assert res.masks["t0"]["w"].tolist() == [True, False, False, True, False, True]
    assert res.masks["t1"]["w"].tolist() == [False, True, True, False, True, True]
    assert res.masks["t2"]["w"].tolist() == [True, False, False, False, False, False]


def test_tall_masks_choose_lambda_per_task_on_validation():
    zoo = TinyZoo()
    tv = ex.task_vectors(zoo, device="cpu")
    res = ex.merge(tv, "tall_masks", lam_select="validation", zoo=zoo)
    mtl = {n: d.sum(0) for n, d in tv.items()}
    for i, task in enumerate(tv.tasks):
        scores = {}
        for lam in LAM_GRID:  # theta_0 + m_t * tau_MTL, scored by ex.evaluate on the validation split
            delta = {n: ((d[i].abs() > lam * (mtl[n] - d[i]).abs()).float() * mtl[n]) for n, d in tv.items()}
            scores[lam] = ex.evaluate(zoo, tv.state_dict(delta), split="validation", tasks=[task]).table.merged[0]
        assert res.info["validation_accuracy"][task] == pytest.approx(scores)
        best = max(scores.values())
        chosen = min((lam for lam in LAM_GRID if scores[lam] == best), key=lambda lam: abs(lam - 0.4))
        assert res.info["lam"][task] == chosen
    assert len(set(res.info["validation_accuracy"]["task0"].values())) > 1  # the choice is not vacuous
