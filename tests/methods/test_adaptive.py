"""AdaMerging (task-wise, layer-wise, ++) and aTLAS on a tiny in-memory zoo."""
from __future__ import annotations

import math

import pytest
import torch

import explorer as ex
from explorer.methods.adaptive import lp_penalty, softmax_entropy
from explorer.methods.blocks import ties_split
from explorer.methods.runner import Progress
from tests.tinyzoo import TinyZoo, one_thread  # noqa: F401  (autouse fixture)


def test_softmax_entropy_hand_computed():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, -1e9, -1e9]])
    # row 2: p = (3/4, 1/4, 0, 0) -> H = -(3/4 ln 3/4 + 1/4 ln 1/4)
    expected = torch.tensor([math.log(4.0), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))])
    torch.testing.assert_close(softmax_entropy(logits), expected)


def test_lp_penalty_hand_computed():
    coef = torch.tensor([[1.0, -2.0], [2.0, 2.0]])  # [T=2, tensors=2]
    assert float(lp_penalty(coef, 1)) == pytest.approx(0.5 * (3 + 4) / 2)
    assert float(lp_penalty(coef, 2)) == pytest.approx(0.5 * (math.sqrt(5) + math.sqrt(8)) / 2)
    assert float(lp_penalty(coef, 0)) == 0.0


@pytest.mark.parametrize("granularity", ["task", "layer"])
def test_entropy_decreases(tv, granularity):
    res = ex.merge(tv, "adamerging", granularity=granularity, steps=40, lr=0.01)
    loss = res.info["loss"]
    assert len(loss) == 40 and res.info["steps"] == 40 and not res.info["cancelled"]
    assert sum(loss[-5:]) / 5 < 0.8 * sum(loss[:5]) / 5


@pytest.mark.parametrize("granularity", ["task", "layer"])
def test_zero_steps_equals_task_arithmetic_at_init(tv, granularity):
    res = ex.merge(tv, "adamerging", granularity=granularity, steps=0, init=0.4)
    ta = ex.merge(tv, "task_arithmetic", scale=0.4)
    for name in tv.keys():
        torch.testing.assert_close(res.delta[name], ta.delta[name])
    assert (res.coefficients.to_numpy() == pytest.approx(0.4)) and res.info["loss"] == []
    columns = tv.keys() if granularity == "layer" else ["all"]
    assert list(res.coefficients.columns) == columns and list(res.coefficients.index) == tv.tasks


def test_plus_at_zero_steps_equals_ties_disjoint_sum(tv):
    res = ex.merge(tv, "adamerging", plus=True, density=0.3, steps=0, init=0.3)
    ties = ex.merge(tv, "ties", density=0.3, aggregate="sum", scale=0.3)
    for name in tv.keys():
        torch.testing.assert_close(res.delta[name], ties.delta[name])
    split = ties_split(tv.deltas, 0.3)
    for i, task in enumerate(tv.tasks):
        for name in tv.keys():
            assert torch.equal(res.masks[task][name], split[name][i] != 0)


def test_delta_is_the_coefficient_weighted_sum(tv):
    res = ex.merge(tv, "adamerging", granularity="layer", steps=5, lr=0.05)
    coef = res.coefficients
    for name in tv.keys():
        lam = torch.tensor(coef[name].to_numpy(), dtype=torch.float32)
        torch.testing.assert_close(res.delta[name], torch.tensordot(lam, tv[name], dims=1))


def test_clamped_coefficients_stay_in_unit_interval(tv):
    clamped = ex.merge(tv, "adamerging", steps=30, lr=0.5, init=0.5)
    values = clamped.coefficients.to_numpy()
    assert values.min() >= 0.0 and values.max() <= 1.0
    assert ((values == 0.0) | (values == 1.0)).any()  # the large lr pushed some against the bounds
    free = ex.merge(tv, "adamerging", steps=30, lr=0.5, init=0.5, clamp=False).coefficients.to_numpy()
    assert free.min() < 0.0 or free.max() > 1.0


def test_seeded_runs_are_identical_and_seeds_differ(tv):
    a = ex.merge(tv, "adamerging", steps=8, lr=0.01, seed=3)
    b = ex.merge(tv, "adamerging", steps=8, lr=0.01, seed=3)
    c = ex.merge(tv, "adamerging", steps=8, lr=0.01, seed=4)
    assert a.info["loss"] == b.info["loss"] and a.coefficients.equals(b.coefficients)
    assert a.info["loss"] != c.info["loss"]


def test_cancel_stops_early_with_a_usable_result(tv):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 6

    res = ex.merge(tv, "adamerging", steps=100, lr=0.01, cancel=cancel)
    assert res.info["cancelled"] and res.info["steps"] == 6 and len(res.info["loss"]) == 6
    assert all(torch.isfinite(d).all() for d in res.delta.values())
    assert res.coefficients.shape == (3, len(tv.keys()))
    sd = res.state_dict()
    assert set(tv.keys()) <= set(sd)


def test_callback_gets_progress_every_n_steps(zoo, tv):
    seen: list[Progress] = []
    res = ex.merge(tv, "adamerging", granularity="task", steps=25, log_every=10, eval_images=8,
                   callback=seen.append)
    assert [p.step for p in seen] == [10, 20, 25] and all(p.total == 25 for p in seen)
    assert [p.loss for p in seen] == [res.info["loss"][s - 1] for s in (10, 20, 25)]
    assert seen[-1].coefficients.equals(res.coefficients)
    assert all(set(p.accuracy) == set(tv.tasks) for p in seen)
    # the last report measures the final coefficients: the result's accuracy on the first 8 validation images
    final = ex.evaluate(zoo, res, split="validation", limit=8, device="cpu").table.set_index("task").merged
    assert seen[-1].accuracy == pytest.approx(final.to_dict())
    quiet: list[Progress] = []
    ex.merge(tv, "adamerging", steps=3, log_every=1, callback=quiet.append)
    assert [p.step for p in quiet] == [1, 2, 3] and all(p.accuracy is None for p in quiet)


@pytest.mark.parametrize("method", ["adamerging", "atlas"])
def test_data_methods_need_a_zoo(zoo, method):
    bare = ex.task_vectors(zoo.base_state_dict(), {t: zoo.expert_state_dict(t) for t in zoo.tasks})
    with pytest.raises(ValueError, match=f"'{method}' needs a zoo with data"):
        ex.merge(bare, method)
    res = ex.merge(bare, method, zoo=zoo, **({"steps": 1} if method == "adamerging" else {"epochs": 1}))
    assert res.info["steps"] >= 1


def test_atlas_learns_and_keeps_the_best_epoch(tv):
    epochs: list[Progress] = []
    res = ex.merge(tv, "atlas", epochs=4, lr=0.05, callback=lambda p: p.accuracy and epochs.append(p))
    scores, best = res.info["val_normalized"], res.info["best_epoch"]
    assert len(scores) == 5 and len(epochs) == 4 and scores[best] == max(scores)
    assert scores[0] < max(scores)  # better than the zero-shot start (epoch 0)
    assert res.coefficients.equals(epochs[best - 1].coefficients)
    per_epoch = len(res.info["loss"]) // 4  # 48 validation images, batch 16 -> 3 steps per epoch
    assert per_epoch == 3 and res.info["loss"][-1] < res.info["loss"][0]
    for p, score in zip(epochs, scores[1:]):
        assert sum(p.accuracy.values()) / 3 == pytest.approx(score)  # the tiny zoo's experts score 1.0


def test_atlas_zero_epochs_is_the_zero_shot_model(tv):
    res = ex.merge(tv, "atlas", epochs=0)
    assert res.info["best_epoch"] == 0 and (res.coefficients.to_numpy() == 0).all()
    assert all((d == 0).all() for d in res.delta.values())
    assert list(res.coefficients.columns) == tv.keys()


def test_atlas_lp_reg_shrinks_the_coefficients(tv):
    plain = ex.merge(tv, "atlas", epochs=3, lr=0.05, weight_decay=0.0)
    reg = ex.merge(tv, "atlas", epochs=3, lr=0.05, weight_decay=0.0, lp_reg=1)
    assert plain.info["best_epoch"] > 0 and reg.info["best_epoch"] > 0
    assert reg.coefficients.abs().to_numpy().mean() < plain.coefficients.abs().to_numpy().mean()


@pytest.mark.parametrize("method,kwargs", [("adamerging", {"steps": 3}), ("adamerging", {"steps": 3, "plus": True}),
                                           ("atlas", {"epochs": 1})])
def test_results_have_full_shapes_and_are_deterministic(tv, method, kwargs):
    first, second = ex.merge(tv, method, **kwargs), ex.merge(tv, method, **kwargs)
    for name in tv.keys():
        assert first.delta[name].shape == tv[name].shape[1:] and torch.isfinite(first.delta[name]).all()
        assert torch.equal(first.delta[name], second.delta[name])
    assert first.info["seconds"] > 0 and first.method == method


def test_atlas_cancel_keeps_the_best_completed_epoch(tv):
    calls = []
    res = ex.merge(tv, "atlas", epochs=5, lr=0.05, cancel=lambda: calls.append(1) or len(calls) > 4)
    # 3 steps per epoch: epoch 1 completes, the cancel comes during epoch 2
    assert res.info["cancelled"] and res.info["steps"] == 4 and len(res.info["val_normalized"]) == 2
    assert res.info["best_epoch"] in (0, 1) and all(torch.isfinite(d).all() for d in res.delta.values())


def test_images_made_under_inference_mode_still_train():
    """A zoo may load heads and data lazily inside an evaluation (torch.inference_mode); training must still work."""
    fresh = TinyZoo()
    with torch.inference_mode():
        fresh.heads = {t: torch.nn.Linear(8, 3) for t in fresh.tasks}  # heads loaded inside an evaluation
        for task in fresh.tasks:
            for split in ("validation", "test"):
                assert fresh.dataset(task, split).tensors[0].is_inference()
    tv = ex.task_vectors(fresh, device="cpu")
    assert ex.merge(tv, "adamerging", steps=2).info["steps"] == 2
    assert ex.merge(tv, "atlas", epochs=1).info["steps"] == 3
