"""The shared Concrete mask: sampling, hard mask, 1/mean rescaling, overlap (hand-computed cases and invariants)."""
from __future__ import annotations

import math

import pytest
import torch

from explorer.methods.concrete_mask import TEMPERATURE, ConcreteMask, apply_mask, mask_overlap, rescaled
from explorer.methods.runner import FunctionalMerge


def test_logits_start_at_init_with_the_parameter_shapes_and_train():
    deltas = {"w": torch.randn(3, 4, 5), "b": torch.randn(3, 5)}
    mask = ConcreteMask.for_deltas(deltas)
    assert {n: tuple(x.shape) for n, x in mask.logits.items()} == {"w": (4, 5), "b": (5,)}
    assert all(float(x.detach().abs().max()) == 0 for x in mask.logits.values())
    assert mask.temperature == TEMPERATURE == 0.5
    assert all(p.requires_grad for p in mask.parameters())


def test_a_sample_is_the_binary_concrete_formula_of_the_seeded_noise():
    mask = ConcreteMask({"w": (6,)}, init=0.7, temperature=0.5)
    sample = mask.sample(torch.Generator().manual_seed(3))["w"]
    u = torch.rand(6, generator=torch.Generator().manual_seed(3))
    expected = torch.sigmoid((0.7 + torch.log(u) - torch.log(1 - u)) / 0.5)
    assert torch.allclose(sample, expected, atol=1e-6)


def test_the_sample_is_differentiable_in_the_logits():
    mask = ConcreteMask({"w": (4,)})
    mask.sample()["w"].sum().backward()
    assert float(mask.logits["w"].grad.abs().sum()) > 0


def test_sample_frequency_matches_the_keep_probability():
    # P(sample > 0.5) = sigmoid(x) for a binary Concrete at any temperature
    mask = ConcreteMask({"w": (20000,)}, init=math.log(3.0))  # p = 0.75
    kept = float((mask.sample(torch.Generator().manual_seed(0))["w"] > 0.5).float().mean())
    assert abs(kept - 0.75) < 0.02


def test_infinite_logits_give_an_all_ones_mask_and_the_unmasked_vectors():
    deltas = {"w": torch.randn(2, 3, 3)}
    mask = ConcreteMask.for_deltas(deltas, init=float("inf"))
    for m in (mask.sample(), mask.hard()):
        assert torch.equal(m["w"], torch.ones(3, 3))
        assert torch.equal(apply_mask(deltas, m)["w"], deltas["w"])


def test_hard_mask_keeps_positive_logits_and_reports_density():
    mask = ConcreteMask.from_logits({"w": torch.tensor([[-1.0, 2.0], [0.5, -3.0]])})
    assert torch.equal(mask.hard()["w"], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert mask.density() == {"w": 0.5}
    assert torch.allclose(mask.probabilities()["w"][0, 1], torch.sigmoid(torch.tensor(2.0)))


def test_masked_vectors_are_rescaled_by_the_tensor_mean_of_the_mask():
    deltas = {"w": torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]]), "kept": torch.ones(2, 2)}
    out = apply_mask(deltas, {"w": torch.tensor([1.0, 0.0, 0.0, 1.0])})  # mean 0.5 -> kept entries x2
    assert torch.equal(out["w"], torch.tensor([[2.0, 0.0, 0.0, 8.0], [8.0, 0.0, 0.0, 2.0]]))
    assert out["kept"] is deltas["kept"]


def test_an_all_zero_mask_gives_zero_vectors_not_nan():
    assert torch.equal(rescaled(torch.zeros(3)), torch.zeros(3))


def test_the_constructor_refuses_a_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature"):
        ConcreteMask({"w": (2,)}, temperature=0.0)


def test_mask_overlap_is_the_jaccard_index_over_shared_names():
    a = {"w": torch.tensor([True, True, False, False]), "only_a": torch.ones(3, dtype=torch.bool)}
    b = {"w": torch.tensor([True, False, True, False])}
    assert mask_overlap(a, b) == pytest.approx(1 / 3)
    assert mask_overlap({"w": torch.zeros(2, dtype=torch.bool)}, {"w": torch.zeros(2, dtype=torch.bool)}) == 1.0


def test_state_dict_round_trips():
    mask = ConcreteMask({"w": (2, 2)}, init=0.3)
    again = ConcreteMask.from_logits(mask.state_dict(), temperature=mask.temperature)
    assert torch.equal(again.hard()["w"], mask.hard()["w"]) and torch.equal(again.logits["w"], mask.logits["w"])


def test_the_functional_merge_applies_a_shared_mask_to_each_task_vector(zoo, tv):
    fm = FunctionalMerge(tv, zoo, "task")
    coef = torch.tensor([[0.3], [0.5], [0.2]])
    gen = torch.Generator().manual_seed(0)
    mask = {n: (torch.rand(d.shape[1:], generator=gen) > 0.5).float() for n, d in fm.deltas.items()}
    masked = apply_mask(fm.deltas, mask)
    expected = {n: sum(coef[t, 0] * masked[n][t] for t in range(3)) for n in fm.deltas}
    theta = fm.theta(coef, mask)
    for n in fm.deltas:
        assert torch.allclose(theta[n], fm.base[n] + expected[n], atol=1e-6)
        assert torch.allclose(fm.delta(coef, mask)[n], expected[n], atol=1e-6)
    unmasked = fm.theta(coef, {n: torch.ones_like(m) for n, m in mask.items()})
    assert all(torch.allclose(unmasked[n], fm.theta(coef)[n]) for n in fm.deltas)


def test_frozen_masks_are_seeded_samples_of_the_logits():
    mask = ConcreteMask.from_logits({"w": torch.linspace(-2, 2, 500)})
    relaxed = mask.frozen("continuous", 5)["w"]
    assert torch.equal(relaxed, mask.sample(torch.Generator().manual_seed(5))["w"].detach())
    assert torch.equal(relaxed, mask.frozen("continuous", 5)["w"]) and not relaxed.requires_grad
    assert not torch.equal(relaxed, mask.frozen("continuous", 6)["w"])
    drawn = mask.frozen("discrete", 5)["w"]
    assert set(drawn.unique().tolist()) <= {0.0, 1.0} and torch.equal(drawn, mask.frozen("discrete", 5)["w"])
    assert drawn[:100].mean() < 0.35 < 0.65 < drawn[-100:].mean()  # kept with probability sigmoid(x)
    assert torch.equal(mask.frozen("hard", 5)["w"], mask.hard()["w"])
    with pytest.raises(ValueError, match="one of"):
        mask.frozen("soft", 0)
