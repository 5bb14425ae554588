"""WEMoE: a one-hot router reproduces that task's MLP exactly; the untrained model is Task Arithmetic."""
from __future__ import annotations

import torch
from torch.func import functional_call

import explorer as ex
from explorer.addons import mlp_prefix


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
