"""WEMoE: a one-hot router reproduces that task's MLP exactly; the untrained model is Task Arithmetic."""
from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

import explorer as ex
from explorer.methods.wemoe import mlp_prefix


def test_one_hot_router_reproduces_the_experts_mlp(zoo, tv):
    res = ex.merge(tv, "wemoe", steps=0)
    assert res.routes and res.info["routed_blocks"] == [0, 1]
    model = res.addon.routed(zoo.build_model())
    block = model.transformer.resblocks[1]
    with torch.no_grad():
        block.mlp.gate[2].weight.zero_()
        block.mlp.gate[2].bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    expert = zoo.expert_state_dict(tv.tasks[2])
    prefix = mlp_prefix(1)
    plain = zoo.build_model().transformer.resblocks[1].mlp
    x = torch.randn(4, 5, plain.c_fc.in_features)
    want = functional_call(plain, {k[len(prefix):]: v for k, v in expert.items() if k.startswith(prefix)}, (x,))
    assert torch.allclose(block.mlp(x), want, atol=1e-6)
    assert torch.allclose(block.mlp.last_weights, torch.tensor([[0.0, 0.0, 1.0]] * 4))


def test_untrained_wemoe_is_task_arithmetic_at_init(zoo, tv):
    res = ex.merge(tv, "wemoe", steps=0, init=0.3)
    ta = ex.merge(tv, "task_arithmetic", scale=0.3)
    got = ex.evaluate(zoo, res).table["merged"].tolist()
    assert got == ex.evaluate(zoo, ta).table["merged"].tolist()


def test_training_reports_progress_and_lowers_entropy(tv):
    seen = []
    res = ex.merge(tv, "wemoe", steps=20, lr=1e-2, blocks=1, log_every=10, callback=seen.append)
    assert [p.step for p in seen] == [10, 20] and res.info["routed_blocks"] == [1]
    assert min(res.info["loss"][-5:]) < res.info["loss"][0]


def _mlp_with(plain, base, vectors, w):
    """The plain MLP run with W_0 + sum_t w_t tau_t (the hand-computed reference of a routed MLP)."""
    return {n: base[n] + torch.tensordot(w, vectors[n], dims=1) for n in base}


def test_a_group_shares_the_mean_of_its_routing_weights(zoo, tv):
    res = ex.merge(tv, "wemoe", steps=0, blocks=1)
    model = res.addon.routed(zoo.build_model())
    mlp = model.transformer.resblocks[1].mlp
    with torch.no_grad():
        mlp.gate[2].weight.normal_(0.0, 1.0)  # inputs now get different weights
    x = torch.randn(5, 4, mlp.gate[0].in_features)
    per_input = mlp(x)
    w = mlp.last_weights
    assert not torch.allclose(w[0], w[1])
    mlp.groups = [2, 3]
    grouped = mlp(x)
    mlp.groups = None
    prefix, plain = mlp_prefix(1), zoo.build_model().transformer.resblocks[1].mlp
    base = {n: res.addon.base[prefix + n] for n in res.addon.NAMES}
    vectors = {n: res.addon.vectors[prefix + n] for n in res.addon.NAMES}
    for rows in (slice(0, 2), slice(2, 5)):
        want = functional_call(plain, _mlp_with(plain, base, vectors, w[rows].mean(dim=0)), (x[rows],))
        assert torch.allclose(grouped[rows], want, atol=1e-5)
    singles = [functional_call(plain, _mlp_with(plain, base, vectors, w[i]), (x[i:i + 1],)) for i in range(5)]
    assert torch.allclose(per_input, torch.cat(singles), atol=1e-5)


def test_groups_of_one_route_per_input_and_bad_groups_are_refused(zoo, tv):
    res = ex.merge(tv, "wemoe", steps=3, lr=1e-2)
    model, weights = zoo.build_model(), tv.state_dict(res.delta)
    images = next(zoo.unlabeled(tv.tasks[0], 4, split="test"))
    per_input = res.addon.features(model, weights, images, "")
    assert torch.allclose(res.addon.grouped_features(model, weights, images, [1] * 4), per_input, atol=1e-5)
    with pytest.raises(ValueError, match="cover 3 inputs"):
        res.addon.grouped_features(model, weights, images, [1, 2])
    assert all(res.addon.routed(model).transformer.resblocks[b].mlp.groups is None for b in res.addon.blocks)


def test_per_input_training_is_still_available(tv):
    res = ex.merge(tv, "wemoe", steps=3, lr=1e-2, batch_reduce=False)
    assert len(res.info["loss"]) == 3
