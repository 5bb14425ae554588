"""MergeLock keeps outputs (tiny and demo towers, biases and packed QKV included), composes, saves as safetensors;
the unlock attempt keeps the function and moves the weights back towards the base."""
from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

import explorer as ex
from explorer.security import protect, unlock, unlock_expert
from explorer.security.mergelock import IN_B, IN_W, OUT_W, attention_heads, attention_layers, transform_attention
from explorer.weights import read_weights, write_weights
from tests.conftest import tiny_tower
from tests.tinyzoo import TinyZoo, one_thread  # noqa: F401  (autouse fixture)


def _relative_gap(model, a, b, x):
    with torch.no_grad():
        ya, yb = functional_call(model, a, (x,)), functional_call(model, b, (x,))
    return float((ya - yb).norm() / ya.norm())


@pytest.fixture(scope="module")
def demo():
    return ex.load_zoo("demo")


def _with_random_biases(weights):
    """The towers start with zero attention biases; random ones make the bias transforms matter."""
    gen = torch.Generator().manual_seed(3)
    return {k: v + 0.1 * torch.randn(v.shape, generator=gen) if k.endswith((IN_B, "out_proj.bias")) else v
            for k, v in weights.items()}


def test_outputs_unchanged_on_the_tiny_tower():
    zoo = TinyZoo()
    model = zoo.build_model().eval()
    weights = _with_random_biases(zoo.expert_state_dict("task0"))
    protected = protect(weights, seed=1, heads=attention_heads(model))
    x = torch.randn(8, 3, 16, 16)
    assert _relative_gap(model, weights, protected, x) < 1e-4
    for layer in attention_layers(weights):  # every packed Q, K, V block, its bias and W_o moved
        for name in (IN_W, IN_B, OUT_W):
            assert (protected[layer + name] - weights[layer + name]).norm() > 0.1 * weights[layer + name].norm()


def test_outputs_unchanged_on_the_demo_tower_and_protection_composes(demo):
    model = demo.build_model().eval()
    expert = demo.expert_state_dict("signs")
    once = protect(demo, "signs", seed=1)
    twice = protect(once, seed=2, heads=4)
    x = torch.randn(16, 3, 32, 32)
    assert _relative_gap(model, expert, once, x) < 1e-4
    assert _relative_gap(model, expert, twice, x) < 1e-4
    key = "transformer.resblocks.0.attn.in_proj_weight"
    assert not torch.allclose(twice[key], once[key])
    assert not torch.allclose(twice[key], protect(demo, "signs", seed=2)[key])


def test_protecting_with_two_transforms_equals_their_product():
    weights = _with_random_biases(tiny_tower(0).state_dict())
    layers, gen = attention_layers(weights), torch.Generator().manual_seed(0)
    m1, m2, n1, n2 = ({p: torch.randn(2, 8, 8, generator=gen, dtype=torch.float64) + 3 * torch.eye(8) for p in layers}
                      for _ in range(4))
    stepwise = transform_attention(transform_attention(weights, 2, m1, n1), 2, m2, n2)
    product = transform_attention(weights, 2, {p: m1[p] @ m2[p] for p in layers}, {p: n1[p] @ n2[p] for p in layers})
    for k in stepwise:
        torch.testing.assert_close(stepwise[k], product[k], rtol=1e-4, atol=1e-5)


def test_protected_weights_round_trip_through_safetensors(tmp_path, demo):
    protected = protect(demo, "clock", seed=5)
    write_weights(protected, tmp_path / "locked.safetensors")
    back = read_weights(tmp_path / "locked.safetensors")
    assert set(back) == set(protected) and all(torch.equal(back[k], protected[k]) for k in back)


def test_unlock_keeps_the_function_and_moves_back_towards_the_expert(demo):
    model = demo.build_model().eval()
    # scalings bounded by 10 (not the default 100), so the rotation Kabsch recovers is a visible share of the change
    expert, protected = demo.expert_state_dict("digits"), protect(demo, "digits", seed=3, scale=10)
    key, x = "transformer.resblocks.3.attn.in_proj_weight", torch.randn(8, 3, 32, 32)
    for method, share in (("lstsq", 0.1), ("kabsch", 0.9)):  # a rotation cannot undo the per-head scalings
        recovered = unlock_expert(demo, protected, method)
        assert _relative_gap(model, expert, recovered, x) < 1e-4
        assert (recovered[key] - expert[key]).norm() < share * (protected[key] - expert[key]).norm()


def test_an_unprotected_expert_unlocks_to_nearly_itself():
    zoo = TinyZoo(noise=0.01)
    expert = zoo.expert_state_dict("task1")
    recovered = unlock(expert, zoo.base_state_dict(), heads=2, method="kabsch")
    key = "transformer.resblocks.1.attn.in_proj_weight"
    assert (recovered[key] - expert[key]).norm() < 0.1 * expert[key].norm()


def test_bad_input_is_named(demo):
    with pytest.raises(ValueError, match="heads="):
        protect(demo.base_state_dict())
    with pytest.raises(ValueError, match="name the expert"):
        protect(demo)
    with pytest.raises(ValueError, match="no open_clip attention block"):
        protect({"w": torch.zeros(2)}, heads=1)
    with pytest.raises(ValueError, match="unlock method"):
        unlock(demo.base_state_dict(), demo.base_state_dict(), 4, method="magic")
