"""DAM on the tiny zoo: the merge is the base merge through one shared, rescaled mask, the seeded sample of the learned
logits (the same seed gives the same delta); the perturbations and the mask move; the AdaMerging base learns
layer-wise coefficients; cancelling stops early."""
from __future__ import annotations

import torch

import explorer as ex
from explorer.methods.concrete_mask import ConcreteMask
from tests.tinyzoo import one_thread  # noqa: F401  (autouse fixture)


def test_task_arithmetic_base_is_the_sum_through_the_seeded_mask_sample(zoo, tv):
    res = ex.merge(tv, "dam", steps=5, batch=4, seed=3, zoo=zoo)
    assert 0 < res.info["mask_density"] < 1 and res.info["steps"] == 5 and res.info["eval_mask"] == "continuous"
    assert all(n > 0 for n in res.info["perturbation_norm"].values())
    logits = res.info["mask_logits"]
    assert any(float(x.abs().max()) > 0 for x in logits.values())  # the mask learned
    sample = ConcreteMask.from_logits(logits).frozen("continuous", 3)  # the evaluated mask: drawn with the seed
    first, second = (res.masks[t] for t in tv.tasks[:2])
    for name, d in tv.deltas.items():  # one mask for every task: delta = 0.3 * sum_t tau_t * m / mean(m)
        m = sample[name]
        assert torch.equal(first[name], second[name]) and torch.equal(first[name], m > 0.5)
        torch.testing.assert_close(res.delta[name], 0.3 * d.sum(0) * m / m.mean())
    assert abs(res.coefficients.to_numpy() - 0.3).max() < 1e-6


def test_the_same_seed_gives_the_same_delta_and_another_seed_another(zoo, tv):
    runs = [ex.merge(tv, "dam", steps=2, batch=4, seed=s, zoo=zoo) for s in (1, 1, 2)]
    same = all(torch.equal(runs[0].delta[n], runs[1].delta[n]) for n in tv.deltas)
    assert same and not all(torch.equal(runs[0].delta[n], runs[2].delta[n]) for n in tv.deltas)


def test_the_hard_evaluation_mask_keeps_the_positive_logits(zoo, tv):
    res = ex.merge(tv, "dam", steps=3, batch=4, eval_mask="hard", zoo=zoo)
    hard = ConcreteMask.from_logits(res.info["mask_logits"]).hard()
    for name, d in tv.deltas.items():
        m = hard[name]
        torch.testing.assert_close(res.delta[name], 0.3 * d.sum(0) * m / m.mean().clamp_min(1e-38))


def test_adamerging_base_learns_layerwise_coefficients(zoo, tv):
    res = ex.merge(tv, "dam", base="adamerging", steps=3, adamerging_steps=4, lr=0.05, batch=4, zoo=zoo)
    assert res.info["steps"] == 7 and res.coefficients.shape == (len(tv.tasks), len(tv.deltas))
    values = res.coefficients.to_numpy()
    assert (values >= 0).all() and (values <= 1).all() and not (values == 0.3).all()
    assert ex.evaluate(zoo, res).table["merged"].between(0, 1).all()


def test_cancel_stops_the_mask_learning(zoo, tv):
    calls = []
    res = ex.merge(tv, "dam", base="adamerging", steps=50, batch=4, zoo=zoo,
                   cancel=lambda: calls.append(1) or len(calls) > 2)
    assert res.info["cancelled"] and res.info["steps"] == 2
