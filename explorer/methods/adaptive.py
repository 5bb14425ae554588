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

from ..result import MergeResult
from ..taskvec import TaskVectors
from . import params
from .blocks import per_task, ties_split
from .registry import Param, register
from .runner import FunctionalMerge, Progress, Trace, heldout, labelled, optimize, reporter, require_zoo

LP_WEIGHT = 0.5  # aTLAS' weight of the Lp penalty on the coefficients (official gamma)
GRAD_CLIP = 1.0  # aTLAS clips the coefficients' gradient norm at 1
EVAL_BATCH = 256

SEED = Param("seed", int, 0, "random seed of the data order", low=0, high=2**31 - 1, step=1, paper=None)
LOG_EVERY = Param("log_every", int, 10, "report progress (loss, coefficients) to the callback every N steps",
                  low=1, high=100000, step=1, paper=None)


def softmax_entropy(logits: Tensor) -> Tensor:
    """Shannon entropy of softmax(logits) per row: [N, C] -> [N]."""
    return -(logits.softmax(dim=1) * logits.log_softmax(dim=1)).sum(dim=1)


def _entropy_loss(fm: FunctionalMerge, theta: dict, task: str, stream) -> Tensor:
    """Mean entropy of each of two unlabeled batches of `task`, summed (the official 2 batches per step)."""
    first, second = next(stream), next(stream)
    ent = softmax_entropy(fm.logits(theta, task, torch.cat([first, second])))
    return ent[:len(first)].mean() + ent[len(first):].mean()


@register("adamerging",
          Param("granularity", str, "layer", "one coefficient per task (task) or per task and parameter tensor "
                "(layer)", choices=("task", "layer"), paper="layer"),
          Param("init", float, 0.3, "initial value of every coefficient lambda", low=0.0, high=1.0, step=0.05,
                paper=0.3),
          Param("clamp", bool, True, "clamp the coefficients to [0, 1] in the forward pass", paper=True),
          Param("lr", float, 1e-3, "Adam learning rate", low=1e-5, high=1.0, step=1e-4, paper=1e-3),
          Param("steps", int, 100, "optimisation steps (the paper runs 500; 100 keeps the dashboard near 10 s on "
                "the demo zoo)", low=0, high=10000, step=10, paper=500),
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
        loss = sum(_entropy_loss(fm, theta, t, streams[t]) for t in fm.tasks)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    shown = heldout(zoo, fm.tasks, eval_images) if eval_images and callback else None
    trace = optimize(step, steps, cancel=cancel, log_every=log_every,
                     report=reporter(fm, lam, steps, callback, shown))
    final = lam().detach()
    masks = per_task({n: d != 0 for n, d in fm.deltas.items()}, fm.tasks) if plus else None
    return MergeResult(tv, fm.delta(final), masks=masks, coefficients=fm.table(final),
                       info={**trace.info(), "seconds": time.perf_counter() - start})


def lp_penalty(coef: Tensor, p: int) -> Tensor:
    """aTLAS' regulariser: gamma * mean over tensors of the Lp norm over tasks of the coefficients (p=0: none)."""
    if p == 0:
        return coef.new_zeros(())
    return LP_WEIGHT * torch.linalg.vector_norm(coef, ord=p, dim=0).mean()


def _val_accuracy(fm: FunctionalMerge, coef: Tensor, loaders: dict) -> dict[str, float]:
    theta = fm.theta(coef.detach())
    return {t: fm.accuracy(theta, t, iter(loader)) for t, loader in loaders.items()}


def _expert_accuracy(fm: FunctionalMerge, loaders: dict) -> dict[str, float]:
    """Each expert's validation accuracy on its own task: coefficient 1 on its task vector, 0 elsewhere."""
    out = {}
    for i, t in enumerate(fm.tasks):
        onehot = fm.coefficients(0.0)
        onehot[i] = 1.0
        out[t] = _val_accuracy(fm, onehot, {t: loaders[t]})[t]
    return out


def _normalized(acc: dict[str, float], expert: dict[str, float]) -> float:
    return sum(acc[t] / max(expert[t], 1e-12) for t in acc) / len(acc)
