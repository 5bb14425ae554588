"""Merges that learn their coefficients from data: AdaMerging (task-wise, layer-wise, ++) and aTLAS.

Both learn Lambda in theta = theta_0 + sum_t Lambda[t, c(j)] * tau_t^(j) through the functional runner
(`runner.FunctionalMerge`), one module and no model copies; they differ in the objective: AdaMerging
minimises the prediction entropy on unlabeled test images, aTLAS the cross-entropy on labelled
validation images.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..inference import reference_accuracies
from ..result import MergeResult
from ..taskvec import TaskVectors
from . import params
from .blocks import per_task, ties_split
from .registry import Param, register
from .runner import FunctionalMerge, Progress, labelled, optimize, reporter, require_zoo

LP_WEIGHT = 0.5  # aTLAS' weight of the Lp penalty on the coefficients (official gamma)
GRAD_CLIP = 1.0  # aTLAS clips the coefficients' gradient norm at 1

SEED = Param("seed", int, 0, "random seed of the data order", low=0, high=2**31 - 1, step=1, paper=None)
LOG_EVERY = Param("log_every", int, 10, "report progress (loss, coefficients) to the callback every N steps",
                  low=1, high=100000, step=1, paper=None)


def softmax_entropy(logits: Tensor) -> Tensor:
    """Shannon entropy of softmax(logits) per row: [N, C] -> [N]."""
    return -(logits.softmax(dim=1) * logits.log_softmax(dim=1)).sum(dim=1)


def _entropy_loss(fm: FunctionalMerge, theta: dict, streams: dict) -> Tensor:
    """Sum over tasks of the mean entropy of each of two unlabeled batches (the official 2 batches per task
    and step), all tasks' images through one forward."""
    pairs = {t: (next(s), next(s)) for t, s in streams.items()}
    logits = fm.task_logits(theta, {t: torch.cat(pair) for t, pair in pairs.items()})
    loss = torch.zeros((), device=fm.device)
    for task, (first, _) in pairs.items():
        ent = softmax_entropy(logits[task])
        loss = loss + ent[:len(first)].mean() + ent[len(first):].mean()
    return loss


@register("adamerging",
          Param("granularity", str, "layer", "one coefficient per task (task) or per task and parameter tensor "
                "(layer)", choices=("task", "layer"), paper="layer"),
          Param("init", float, 0.3, "initial value of every coefficient lambda", low=0.0, high=1.0, step=0.05,
                paper=0.3),
          Param("clamp", bool, True, "clamp the coefficients to [0, 1] in the forward pass", paper=True),
          Param("lr", float, 1e-3, "Adam learning rate", low=1e-5, high=1.0, step=1e-4, paper=1e-3),
          Param("steps", int, 100, "optimisation steps (the paper runs 500; the default 100 is for the dashboard: "
                "about 0.3-0.7 s per step on the demo zoo on a 2-core CPU)", low=0, high=10000, step=10, paper=500),
          Param("batch", int, 16, "unlabeled test images per batch; each step uses two batches per task",
                low=1, high=1024, step=1, paper=16),
          Param("plus", bool, False, "AdaMerging++: learn over TIES-trimmed, sign-elected task vectors "
                "(disjoint-sum semantics)", paper=False),
          params.density(0.2, "each task vector (plus=True only)"),
          SEED, LOG_EVERY,
          Param("eval_images", int, 0, "labelled validation images per task on which progress reports measure "
                "accuracy (0 = none)", low=0, high=100000, step=16, paper=None),
          title="AdaMerging",
          paper="Yang et al., AdaMerging: Adaptive Model Merging for Multi-Task Learning, ICLR 2024",
          formula="theta = theta_0 + sum_t lambda_t^(j) * tau_t^(j); "
                  "lambda = argmin sum_t E_x~test_t[H(softmax(head_t(f(x; theta))))], Adam from lambda = init",
          summary="Learn the merging coefficients (per task, or per task and layer) by minimising the prediction "
                  "entropy on unlabeled test images; plus=True starts from TIES-processed task vectors.",
          needs_data=True)
def adamerging(tv: TaskVectors, *, granularity: str, init: float, clamp: bool, lr: float, steps: int, batch: int,
               plus: bool, density: float, seed: int, log_every: int, eval_images: int, zoo: Any = None,
               callback: Callable[[Progress], Any] | None = None,
               cancel: Callable[[], bool] | None = None) -> MergeResult:
    """AdaMerging: Adam on the (clamped) coefficients, loss = sum over tasks of the mean prediction entropy of
    two unlabeled test batches per task. Returns the merged delta with the learned coefficients."""
    start = time.perf_counter()
    zoo = require_zoo(zoo, "adamerging")
    deltas = ties_split(tv.deltas, density) if plus else None
    fm = FunctionalMerge(tv, zoo, granularity, deltas)
    raw = torch.nn.Parameter(fm.coefficients(init))
    lam = (lambda: raw.clamp(0.0, 1.0)) if clamp else (lambda: raw)
    streams = {t: zoo.unlabeled(t, batch, split="test", seed=seed + i) for i, t in enumerate(fm.tasks)}
    opt = torch.optim.Adam([raw], lr=lr, betas=(0.9, 0.999), weight_decay=0.0)

    def step(_: int) -> float:
        theta = fm.theta(lam())
        loss = _entropy_loss(fm, theta, streams)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    trace = optimize(step, steps, cancel=cancel, log_every=log_every,
                     report=reporter(fm, lam, steps, callback, eval_images))
    final = lam().detach()
    masks = per_task({n: d != 0 for n, d in fm.deltas.items()}, fm.tasks) if plus else None
    return MergeResult(tv, fm.delta(final), masks=masks, coefficients=fm.table(final),
                       info={**trace.info(), "seconds": time.perf_counter() - start})


def lp_penalty(coef: Tensor, p: int) -> Tensor:
    """aTLAS' regulariser: gamma * mean over tensors of the Lp norm over tasks of the coefficients (p=0: none)."""
    if p == 0:
        return coef.new_zeros(())
    return LP_WEIGHT * torch.linalg.vector_norm(coef, ord=p, dim=0).mean()


def _val_accuracy(fm: FunctionalMerge, coef: Tensor) -> dict[str, float]:
    return {t: fm.accuracy(coef, t, "validation") for t in fm.tasks}


def _normalized(fm: FunctionalMerge, acc: dict[str, float]) -> float:
    """Average of merged / expert accuracy on the validation splits (the experts' accuracies are cached)."""
    expert = {t: reference_accuracies(fm.zoo, t, "validation", None, fm.device)[1] for t in acc}
    return sum(acc[t] / max(expert[t], 1e-12) for t in acc) / len(acc)


def _atlas_step(fm: FunctionalMerge, coef: Tensor, opt: torch.optim.Optimizer, batches: list, lp_reg: int) -> float:
    """One aTLAS step: summed cross-entropy over one labelled batch per task (+ Lp penalty), clipped gradient."""
    theta = fm.theta(coef)
    data = [next(it) for it in batches]
    logits = fm.task_logits(theta, {t: images for t, (images, _) in zip(fm.tasks, data)})
    loss = lp_penalty(coef, lp_reg)
    for task, (_, labels) in zip(fm.tasks, data):
        loss = loss + F.cross_entropy(logits[task], labels.to(fm.device))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_([coef], GRAD_CLIP)
    opt.step()
    return loss.item()


@register("atlas",
          Param("epochs", int, 20, "passes over the smallest task's validation split", low=0, high=1000, step=1,
                paper=20),
          Param("lr", float, 1e-3, "AdamW learning rate", low=1e-5, high=1.0, step=1e-4, paper=1e-3),
          Param("weight_decay", float, 0.1, "AdamW weight decay", low=0.0, high=10.0, step=0.01, paper=0.1),
          Param("batch", int, 16, "labelled validation images per task per step", low=1, high=1024, step=1,
                paper=16),
          Param("lp_reg", int, 0, "penalty 0.5 * mean_j ||Lambda[:, j]||_p on the coefficients: p = 1 or 2, "
                "0 = none", low=0, high=2, step=1, paper=0),
          SEED, LOG_EVERY,
          title="aTLAS (learned anisotropic scaling)",
          paper="Zhang et al., Knowledge Composition using Task Vectors with Learned Anisotropic Scaling, "
                "NeurIPS 2024",
          formula="theta = theta_0 + sum_t Lambda[t, j] * tau_t^(j); Lambda = argmin sum_t CE(head_t(f(x; theta)), y) "
                  "on validation, AdamW from Lambda = 0; keep the epoch with the best normalized validation accuracy",
          summary="Learn one coefficient per task and parameter tensor with cross-entropy on the labelled validation "
                  "splits, keeping the coefficients of the epoch with the best average normalized validation "
                  "accuracy (the zero-shot start counts as epoch 0).",
          needs_data=True)
def atlas(tv: TaskVectors, *, epochs: int, lr: float, weight_decay: float, batch: int, lp_reg: int, seed: int,
          log_every: int, zoo: Any = None, callback: Callable[[Progress], Any] | None = None,
          cancel: Callable[[], bool] | None = None) -> MergeResult:
    """aTLAS task addition: AdamW on per-(task, tensor) coefficients from 0, cross-entropy on every task's
    labelled validation batches; after each epoch, keep the coefficients if the average normalized
    validation accuracy (merged / expert) beats every earlier epoch, the zero-shot start included."""
    start = time.perf_counter()
    zoo = require_zoo(zoo, "atlas")
    fm = FunctionalMerge(tv, zoo, "layer")
    coef = torch.nn.Parameter(fm.coefficients(0.0))
    opt = torch.optim.AdamW([coef], lr=lr, weight_decay=weight_decay)
    train = [labelled(zoo, t, "validation", batch, seed=seed + i) for i, t in enumerate(fm.tasks)]
    per_epoch = min(len(loader) for loader in train)
    scores = [_normalized(fm, _val_accuracy(fm, coef))]  # epoch 0: the zero-shot model
    best, losses, cancelled = coef.detach().clone(), [], False
    report = reporter(fm, lambda: coef, epochs * per_epoch, callback)
    for epoch in range(epochs):
        batches = [iter(loader) for loader in train]
        shifted = None if report is None else (lambda done, loss, e=epoch: report(e * per_epoch + done, loss))
        trace = optimize(lambda _: _atlas_step(fm, coef, opt, batches, lp_reg), per_epoch, cancel=cancel,
                         report=shifted, log_every=log_every)
        losses += trace.losses
        if trace.cancelled:
            cancelled = True
            break
        acc = _val_accuracy(fm, coef)
        scores.append(_normalized(fm, acc))
        if scores[-1] > max(scores[:-1]):
            best = coef.detach().clone()
        if callback is not None:
            callback(Progress((epoch + 1) * per_epoch, epochs * per_epoch, losses[-1], fm.table(coef), acc))
    info = {"loss": losses, "steps": len(losses), "cancelled": cancelled, "val_normalized": scores,
            "best_epoch": max(range(len(scores)), key=scores.__getitem__), "seconds": time.perf_counter() - start}
    return MergeResult(tv, fm.delta(best), coefficients=fm.table(best), info=info)
