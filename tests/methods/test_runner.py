"""The functional runner: merged weights, gradients, accuracy, progress reports and cancellation."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.methods.adaptive import softmax_entropy
from explorer.methods.runner import FunctionalMerge, Progress, optimize, reporter, require_zoo
from tests.tinyzoo import TinyZoo, one_thread  # noqa: F401  (autouse fixture)


@pytest.fixture
def zoo() -> TinyZoo:
    return TinyZoo()


@pytest.fixture
def tv(zoo) -> ex.TaskVectors:
    return ex.task_vectors(zoo, device="cpu")


def explicit_model(zoo, tv, coef, granularity):
    """A hand-built model: load theta_0 + sum_t coef * tau_t into a fresh module, tensor by tensor."""
    sd = {}
    for j, name in enumerate(tv.keys()):
        c = coef[:, j if granularity == "layer" else 0]
        sd[name] = tv.base[name] + sum(float(c[t]) * tv[name][t] for t in range(tv.num_tasks))
    model = zoo.build_model()
    model.load_state_dict({**sd, **tv.extras})
    return model


@pytest.mark.parametrize("granularity", ["task", "layer"])
def test_theta_matches_hand_built_state_dict(zoo, tv, granularity):
    fm = FunctionalMerge(tv, zoo, granularity)
    coef = torch.rand(tv.num_tasks, len(fm.columns), generator=torch.Generator().manual_seed(3))
    model = explicit_model(zoo, tv, coef, granularity)
    theta = fm.theta(coef)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(theta[name], value, rtol=1e-5, atol=1e-6)
    images = zoo.dataset("task1", "test")[:8][0]
    torch.testing.assert_close(fm.logits(theta, "task1", images), zoo.head("task1")(model(images)),
                               rtol=1e-4, atol=1e-5)
    expected_cols = tv.keys() if granularity == "layer" else ["all"]
    assert list(fm.table(coef).columns) == expected_cols and list(fm.table(coef).index) == tv.tasks


def test_one_forward_for_all_tasks_equals_separate_forwards(zoo, tv):
    fm = FunctionalMerge(tv, zoo, "layer")
    theta = fm.theta(fm.coefficients(0.3))
    images = {t: zoo.dataset(t, "test")[:5 + i][0] for i, t in enumerate(tv.tasks)}
    joint = fm.task_logits(theta, images)
    for task, x in images.items():
        torch.testing.assert_close(joint[task], fm.logits(theta, task, x), rtol=1e-4, atol=1e-5)
        assert joint[task].shape == (len(x), 3)


def entropy_of(logits):
    return softmax_entropy(logits).mean()


@pytest.mark.parametrize("granularity", ["task", "layer"])
def test_gradient_matches_hand_built_model(zoo, tv, granularity):
    """d loss / d Lambda[t, j] from functional_call equals the chain rule through an explicit model:
    sum over tensors in column j of <d loss / d theta, tau_t>."""
    fm = FunctionalMerge(tv, zoo, granularity)
    coef = torch.full((tv.num_tasks, len(fm.columns)), 0.3, requires_grad=True)
    images = zoo.dataset("task0", "test")[:16][0]
    entropy_of(fm.logits(fm.theta(coef), "task0", images)).backward()
    model = explicit_model(zoo, tv, coef.detach(), granularity)
    entropy_of(zoo.head("task0")(model(images))).backward()
    grads = dict(model.named_parameters())
    expected = torch.zeros_like(coef)
    for j, name in enumerate(tv.keys()):
        col = j if granularity == "layer" else 0
        expected[:, col] += (grads[name].grad.unsqueeze(0) * tv[name]).flatten(1).sum(1)
    torch.testing.assert_close(coef.grad, expected, rtol=1e-3, atol=1e-6)
    assert expected.abs().max() > 0


def test_gradient_matches_finite_difference(zoo, tv):
    fm = FunctionalMerge(tv, zoo, "task")
    images = zoo.dataset("task2", "test")[:16][0]

    def loss(c):
        return entropy_of(fm.logits(fm.theta(c), "task2", images))

    coef = torch.full((tv.num_tasks, 1), 0.3, requires_grad=True)
    loss(coef).backward()
    eps = 1e-2
    for t in range(tv.num_tasks):
        step = torch.zeros_like(coef)
        step[t, 0] = eps
        with torch.no_grad():
            fd = (loss(coef + step) - loss(coef - step)) / (2 * eps)
        assert float(coef.grad[t, 0]) == pytest.approx(float(fd), rel=2e-2, abs=1e-5)


def test_expert_coefficients_give_known_accuracy(zoo, tv):
    """Labels are each expert's own predictions, so Lambda = one-hot(t) scores 1.0 on task t."""
    fm = FunctionalMerge(tv, zoo, "layer")
    for i, task in enumerate(tv.tasks):
        onehot = fm.coefficients(0.0)
        onehot[i] = 1.0
        assert fm.accuracy(onehot, task, "validation") == 1.0
    images, labels = zoo.dataset("task0", "validation")[:10]
    with torch.no_grad():
        by_hand = float((zoo.head("task0")(explicit_model(zoo, tv, fm.coefficients(0.0), "layer")(images))
                         .argmax(1) == labels).float().mean())
    assert fm.accuracy(fm.coefficients(0.0), "task0", "validation", limit=10) == pytest.approx(by_hand)
    assert by_hand < 1.0


def test_optimize_reports_every_n_steps_and_cancels():
    calls, reports = [], []
    trace = optimize(lambda i: calls.append(i) or float(i), 25, report=lambda s, loss: reports.append((s, loss)),
                     log_every=10)
    assert calls == list(range(25)) and trace.losses == [float(i) for i in range(25)]
    assert reports == [(10, 9.0), (20, 19.0), (25, 24.0)] and not trace.cancelled and trace.steps == 25
    stopped = optimize(lambda i: calls.append(i) or 0.0, 25, cancel=lambda: True)
    assert stopped.steps == 0 and stopped.cancelled and len(calls) == 25


def test_optimize_cancel_midway_keeps_steps_done():
    done = []
    trace = optimize(lambda i: done.append(i) or 1.0, 50, cancel=lambda: len(done) >= 7)
    assert trace.steps == 7 and trace.cancelled and trace.losses == [1.0] * 7


def test_reporter_sends_progress_with_heldout_accuracy(zoo, tv):
    fm = FunctionalMerge(tv, zoo, "task")
    coef = fm.coefficients(0.0)
    seen = []
    report = reporter(fm, lambda: coef, 40, seen.append, eval_images=12)
    report(10, 0.5)
    (p,) = seen
    assert isinstance(p, Progress) and (p.step, p.total, p.loss) == (10, 40, 0.5)
    assert p.coefficients.shape == (3, 1) and (p.coefficients.to_numpy() == 0).all()
    images, labels = zoo.dataset("task1", "validation")[:12]
    with torch.no_grad():
        by_hand = float((zoo.head("task1")(explicit_model(zoo, tv, coef, "task")(images)).argmax(1) == labels)
                        .float().mean())
    assert p.accuracy["task1"] == pytest.approx(by_hand) and set(p.accuracy) == set(tv.tasks)
    assert reporter(fm, lambda: coef, 40, None) is None


def test_errors_name_the_problem(zoo, tv):
    with pytest.raises(ValueError, match="needs a zoo with data"):
        require_zoo(None, "adamerging")
    with pytest.raises(ValueError, match="granularity"):
        FunctionalMerge(tv, zoo, "block")
    partial = ex.task_vectors({k: v for k, v in zoo.base.items() if k != "proj"},
                              {t: {k: v for k, v in sd.items() if k != "proj"} for t, sd in zoo.experts.items()})
    with pytest.raises(ValueError, match="lack 1 entries.*proj"):
        FunctionalMerge(partial, zoo, "layer")
    with pytest.raises(ValueError, match="not in zoo"):
        FunctionalMerge(ex.task_vectors(zoo.base, {"other": zoo.experts["task0"]}), zoo, "layer")
