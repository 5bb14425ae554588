"""Twin-Merging: a one-hot router gives shared + that task's exclusive vector (the expert itself at full rank)."""
from __future__ import annotations

import torch

import explorer as ex
from explorer.methods.twin import truncated


def one_hot(res, task_index: int) -> None:
    last = res.addon.router[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-1e4)
        last.bias[task_index] = 1e4


def test_truncated_svd_keeps_the_requested_rank_and_is_exact_at_full_rank():
    v = torch.randn(6, 4, dtype=torch.float64)
    a, b = truncated(v, 0.5)
    assert a.shape == (6, 2) and b.shape == (2, 4) and torch.linalg.matrix_rank(a @ b) == 2
    a, b = truncated(v, 1.0)
    assert torch.allclose(a @ b, v)


def test_one_hot_router_at_full_rank_reproduces_the_expert(zoo, tv):
    res = ex.merge(tv, "twin", keep=1.0, epochs=1)
    assert res.routes and not res.needs_task
    one_hot(res, 1)
    task = tv.tasks[1]
    images = zoo.dataset(task, "test").tensors[0][:8]
    model = zoo.build_model().eval()
    weights = res.state_dict()
    got = res.addon.features(model, weights, images, task)
    expert = torch.func.functional_call(model, zoo.expert_state_dict(task), (images,))
    assert torch.allclose(got, expert, atol=1e-5)
    theta = res.addon.theta(weights, torch.eye(len(tv.tasks))[1])
    assert all(torch.allclose(theta[n], zoo.expert_state_dict(task)[n], atol=1e-6) for n in tv.deltas)


def test_one_hot_router_at_low_rank_is_shared_plus_the_truncated_vector(tv):
    res = ex.merge(tv, "twin", keep=0.25, epochs=1)
    one_hot(res, 0)
    weights = res.state_dict()
    theta = res.addon.theta(weights, torch.eye(len(tv.tasks))[0])
    for name, d in tv.deltas.items():
        v = d[0] - res.delta[name]
        expected = v if v.ndim != 2 else (lambda ab: ab[0] @ ab[1])(truncated(v, 0.25))
        assert torch.allclose(theta[name], weights[name] + expected, atol=1e-6)


def test_router_training_lowers_its_loss_and_reports_progress(tv):
    # the TinyZoo's tasks share one image distribution, so the router can only fit (not generalise) the task id
    seen = []
    res = ex.merge(tv, "twin", epochs=30, lr=1e-2, log_every=10, callback=seen.append)
    assert [p.step for p in seen] == [10, 20, 30]
    assert res.info["loss"][-1] < res.info["loss"][0]
    assert set(res.info["router_accuracy"]) == {"validation", "test"}
