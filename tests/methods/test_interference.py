"""WUDI-Merging and DOGE-TA: the losses against their definitions, the optimisers' behaviour, the limiting cases."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.methods.blocks import keep_topk
from explorer.methods.interference import DogeLayers, WudiLoss
from tests.conftest import tiny_state_dicts

LINEAR = ("attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@pytest.fixture
def tv() -> ex.TaskVectors:
    base, experts = tiny_state_dicts(num_tasks=3, noise=0.05)
    return ex.task_vectors(base, experts, device="cpu")


def wudi_loss_by_definition(v: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The official loss: sum_t sum_ij [((v - tau_t) tau_t^T)_ij]^2 / ||tau_t||^2, through the [T, m, m] products."""
    inner = (v.unsqueeze(0) - d) @ d.transpose(1, 2)
    return (inner.pow(2).sum(dim=(1, 2)) / d.pow(2).sum(dim=(1, 2))).sum()


def test_wudi_quadratic_form_equals_the_official_loss_and_its_gradient():
    gen = torch.Generator().manual_seed(0)
    d = torch.randn(4, 6, 5, generator=gen, dtype=torch.float64)
    v = torch.randn(6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    loss = WudiLoss(d.unsqueeze(0))
    value, grad = loss.value_and_gradient(v.detach().unsqueeze(0))
    direct = wudi_loss_by_definition(v, d)
    direct.backward()
    assert torch.allclose(value[0], direct.detach())
    assert torch.allclose(grad[0], v.grad)


def test_wudi_loss_falls_and_a_long_run_approaches_the_closed_form_minimiser(tv):
    short = ex.merge(tv, "wudi", steps=50, lr=1e-4)
    assert short.info["loss"][-1] < short.info["loss"][0]
    name = "transformer.resblocks.1.mlp.c_fc.weight"
    loss = WudiLoss(tv[name].unsqueeze(0).double())
    best = float(loss.value_and_gradient(loss.optimum())[0][0])
    start = float(loss.value_and_gradient(loss.start)[0][0])
    long = ex.merge(tv, "wudi", steps=3000, lr=1e-3)
    reached = float(loss.value_and_gradient(long.delta[name].double().unsqueeze(0))[0][0])
    assert best < start
    assert reached - best < 0.02 * (start - best)  # within 2 % of the way from the start to the optimum


def test_wudi_leaves_other_parameters_at_the_base_or_averages_them(tv):
    for others, expected in (("base", lambda d: torch.zeros_like(d[0])), ("mean", lambda d: d.mean(dim=0))):
        res = ex.merge(tv, "wudi", steps=3, others=others)
        assert torch.equal(res.delta["conv1.weight"], expected(tv["conv1.weight"]))
        assert torch.equal(res.delta["transformer.resblocks.0.attn.in_proj_bias"],
                           expected(tv["transformer.resblocks.0.attn.in_proj_bias"]))
    zero = ex.merge(tv, "wudi", steps=0)
    name = "transformer.resblocks.0.attn.out_proj.weight"
    assert torch.allclose(zero.delta[name], tv[name].sum(dim=0))  # Adam starts from the task sum


def test_wudi_stops_when_cancelled(tv):
    calls = []
    res = ex.merge(tv, "wudi", steps=100, cancel=lambda: len(calls) > 0, callback=calls.append)
    assert res.info["cancelled"] and res.info["steps"] == 10


def test_doge_ta_with_zero_steps_is_the_masked_norm_scaled_sum(tv):
    res = ex.merge(tv, "doge_ta", steps=0, lam=0.07, density=0.3)
    targets = [n for n in tv.keys() if n.endswith(LINEAR)]
    masks = keep_topk({n: tv[n] for n in targets}, 0.3)
    for name in targets:
        d = tv[name]
        parts = d.chunk(3, dim=1) if name.endswith("in_proj_weight") else (d,)
        scaled = torch.cat([p * (0.07 / p.flatten(1).norm(dim=1))[:, None, None] for p in parts], dim=1)
        assert torch.allclose(res.delta[name], (scaled * masks[name]).sum(dim=0), atol=1e-6), name
    assert torch.equal(res.delta["ln_post.weight"], torch.zeros_like(tv["ln_post.weight"][0]))
    assert list(res.coefficients.index) == tv.tasks  # lam_t per matrix, q/k/v separately


def test_doge_ta_gradient_is_the_fusionbench_loss_gradient_projected_off_the_shared_subspace():
    gen = torch.Generator().manual_seed(1)
    d = torch.randn(1, 3, 8, 6, generator=gen, dtype=torch.float64)
    layers = DogeLayers(d, lam=0.07, subspace=2)
    with torch.no_grad():
        layers.delta.copy_(torch.randn(1, 8, 6, generator=gen, dtype=torch.float64))
    value = layers.loss_and_gradient()
    layers.project_gradient()
    tau, delta = d[0], layers.delta.detach()[0].clone().requires_grad_(True)
    lam = 0.07 / tau.flatten(1).norm(dim=1)
    S, Lam = torch.einsum("t,tmn->mn", lam, tau), lam.sum()
    direct = sum((tau[j] * (tau[j] - S - Lam * delta)).sum(dim=1).pow(2).sum() for j in range(3))
    direct.backward()
    P = layers.shared[0] @ layers.shared[0].T
    assert torch.allclose(value, direct.detach())
    assert torch.allclose(layers.delta.grad[0], delta.grad - P @ delta.grad)
    assert layers.shared.shape == (1, 8, 3)  # r / subspace = 6 / 2 directions


def test_doge_ta_loss_falls(tv):
    res = ex.merge(tv, "doge_ta", steps=30)
    assert res.info["loss"][-1] < res.info["loss"][0]


def test_interference_merges_need_the_blocks_linear_weights():
    tv = ex.TaskVectors(["a", "b"], {"w": torch.zeros(3, 3)}, {"w": torch.randn(2, 3, 3)})
    for method in ("wudi", "doge_ta"):
        with pytest.raises(ValueError, match="in_proj_weight"):
            ex.merge(tv, method)
