"""Concrete TA / AdaMerging: mask logits that keep everything give the base merge; training moves the mask."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.methods.concrete_mask import ConcreteMask


def test_keep_all_logits_give_task_arithmetic_exactly(zoo, tv):
    res = ex.merge(tv, "concrete", merge="task_arithmetic", logit_init=60.0, scale=0.3, steps=2, lr=1e-5)
    ta = ex.merge(tv, "task_arithmetic", scale=0.3)
    assert all(torch.allclose(res.delta[n], ta.delta[n], atol=1e-7) for n in ta.delta)  # sum order only
    assert set(res.info["mask_density"].values()) == {1.0}


def test_keep_all_logits_with_no_meta_steps_give_adamerging_from_the_same_start(tv):
    kw = dict(granularity="task", steps=0, adamerging_steps=3, adamerging_lr=1e-2, seed=1)
    res = ex.merge(tv, "concrete", merge="adamerging", logit_init=60.0, **kw)
    ada = ex.merge(tv, "adamerging", granularity="task", init=0.3, lr=1e-2, steps=0, seed=1)
    assert torch.allclose(torch.tensor(ada.coefficients.values), torch.full((3, 1), 0.3, dtype=torch.float64))
    assert res.info["steps"] == 3 and res.coefficients.shape == (3, 1)


def test_untrained_zero_logits_keep_nothing_hard_and_everything_expected(tv):
    res = ex.merge(tv, "concrete", merge="task_arithmetic", steps=0, eval_mask="hard")
    assert all(float(d.abs().max()) == 0 for d in res.delta.values())
    expected = ex.merge(tv, "concrete", merge="task_arithmetic", steps=0, eval_mask="expected")  # 0.5 / mean = 1
    ta = ex.merge(tv, "task_arithmetic", scale=0.3)
    assert all(torch.allclose(expected.delta[n], ta.delta[n], atol=1e-7) for n in ta.delta)


def test_training_moves_the_mask_reports_progress_and_cancels(tv):
    seen = []
    res = ex.merge(tv, "concrete", merge="adamerging", steps=4, adamerging_steps=4, log_every=2,
                   callback=seen.append)
    assert [p.step for p in seen] == [2, 4, 6, 8] and seen[-1].total == 8
    density = res.info["mask_density"]
    assert 0.0 < sum(density.values()) / len(density) < 1.0
    assert ex.merge(tv, "concrete", steps=5, cancel=lambda: True).info["cancelled"]


def test_the_sampled_evaluation_mask_comes_from_the_seed_and_is_what_the_delta_holds(tv):
    kw = dict(merge="task_arithmetic", steps=0, scale=0.3, eval_mask="sample")
    res, again, other = (ex.merge(tv, "concrete", seed=s, **kw) for s in (3, 3, 4))
    drawn = ConcreteMask.for_deltas(tv.deltas).sample(torch.Generator().manual_seed(3))  # logits 0, untrained
    for n, d in tv.deltas.items():
        want = 0.3 * d.sum(dim=0) * drawn[n] / drawn[n].mean()
        assert torch.allclose(res.delta[n], want, atol=1e-6)
        assert torch.equal(res.delta[n], again.delta[n])
        assert torch.equal(next(iter(res.masks.values()))[n], drawn[n] > 0.5)
    assert any(not torch.equal(res.delta[n], other.delta[n]) for n in tv.deltas)


def test_a_bernoulli_evaluation_mask_keeps_or_drops_whole_entries(tv):
    res = ex.merge(tv, "concrete", merge="task_arithmetic", steps=0, scale=0.3, eval_mask="bernoulli", seed=2)
    for n, d in tv.deltas.items():
        kept = next(iter(res.masks.values()))[n]
        full = 0.3 * d.sum(dim=0) / kept.float().mean()
        assert torch.allclose(res.delta[n], torch.where(kept, full, torch.zeros_like(full)), atol=1e-6)


def test_an_unknown_evaluation_mask_is_refused(tv):
    with pytest.raises(ValueError, match="eval_mask"):
        ex.merge(tv, "concrete", merge="task_arithmetic", steps=0, eval_mask="soft")
