"""WEMoE, Weight-Ensembling Mixture of Experts (Tang et al., ICML 2024; FusionBench `we_moe`).

Everything but the MLPs of the routed blocks is merged by Task Arithmetic (lambda = init); each routed MLP becomes
MLP(x; W_0 + sum_t w_t(x) tau_t) with w(x) the token mean of a small router on the MLP's input (initial output
`init` for every task, so the untrained model is Task Arithmetic). The routers are trained by prediction entropy on
unlabeled test images, as FusionBench's `clip_weight_ensembling_moe` does: Adam, one batch per task and step, the
summed entropies, and by default its `batch_reduce` (each task batch shares the mean of its images' routing weights:
one mixed MLP per task batch, not per image). The result routes every input by its own weights.
"""
from __future__ import annotations

import copy
import time
from typing import Any, Callable

import pandas as pd
import torch

from ..addons import MoEAddOn, mlp_prefix, wemoe_gate
from ..result import MergeResult
from ..taskvec import TaskVectors
from .adaptive import LOG_EVERY, SEED, softmax_entropy
from .registry import Param, register
from .runner import Progress, optimize, require_zoo
from .surgery import encoder


def routed_blocks(tv: TaskVectors, last: int) -> list[int]:
    """The indices of the last `last` transformer blocks (0 = all) whose MLPs the task vectors hold."""
    blocks = sorted({int(n.split(".")[2]) for n in tv.deltas if n.startswith("transformer.resblocks.")
                     and ".mlp." in n})
    if not blocks:
        raise ValueError("wemoe routes the MLPs of an open_clip vision tower (transformer.resblocks.<i>.mlp.*); "
                         "these task vectors have none")
    return blocks if last == 0 else blocks[-last:]


@register("wemoe",
          Param("blocks", int, 0, "how many of the last transformer blocks get a routed MLP (0 = all)", low=0,
                high=1000, step=1, paper=0),
          Param("init", float, 0.3, "initial routing weight of every task, and lambda of the Task Arithmetic merge "
                "of the other weights", low=0.0, high=1.0, step=0.05, paper=0.3),
          Param("lr", float, 1e-4, "Adam learning rate of the routers (FusionBench's default; the paper's own code: "
                "1e-3, cosine-annealed over 1000 steps; at a constant 1e-3 the demo zoo's routers grow large, "
                "task-blind weights: 44.7 after 100 steps against 61.1 at 1e-4)", low=1e-6, high=1.0, step=1e-4,
                paper=1e-4),
          Param("steps", int, 80, "optimisation steps (the paper runs 1000; 80 keep the demo zoo's training within "
                "two minutes on a 2-core CPU)", low=0, high=10000, step=10, paper=1000),
          Param("batch", int, 16, "unlabeled test images per task and step", low=1, high=1024, step=1, paper=16),
          Param("batch_reduce", bool, True, "train with one routing weight vector per task batch (the mean of its "
                "images'; FusionBench's default) instead of one per image; evaluation always routes per image",
                paper=True),
          SEED, LOG_EVERY,
          title="WEMoE (weight-ensembling MoE)",
          paper="Tang et al., Merging Multi-Task Models via Weight-Ensembling Mixture of Experts, ICML 2024",
          formula="MLP_l(x; W_0 + sum_t w_t,l(x) tau_t,l), w_l(x) = mean_tokens router_l(x); other weights "
                  "theta_0 + init * sum_t tau_t; routers = argmin sum_t E_x~test_t H(softmax(head_t(f(x))))",
          summary="Turn the MLPs of the chosen blocks into a per-input mixture of the experts' MLPs, weighted by small "
                  "routers trained by entropy on unlabeled test images; the rest is Task Arithmetic.",
          needs_data=True, inference="router")
def wemoe(tv: TaskVectors, *, blocks: int, init: float, lr: float, steps: int, batch: int, batch_reduce: bool,
          seed: int,
          log_every: int, zoo: Any = None, callback: Callable[[Progress], Any] | None = None,
          cancel: Callable[[], bool] | None = None) -> MergeResult:
    """Task Arithmetic at `init` with routed MLPs in the chosen blocks; Adam on the routers, loss = summed mean
    entropy of one unlabeled test batch per task, all tasks through one forward."""
    start = time.perf_counter()
    zoo = require_zoo(zoo, "wemoe")
    torch.manual_seed(seed)
    dev, chosen = tv.device, routed_blocks(tv, blocks)
    delta = {n: init * d.sum(dim=0) for n, d in tv.deltas.items()}
    names = [mlp_prefix(b) + n for b in chosen for n in MoEAddOn.NAMES]
    dim = tv.base[mlp_prefix(chosen[0]) + "c_fc.weight"].shape[1]
    gates = {b: wemoe_gate(dim, len(tv.tasks), init).to(dev) for b in chosen}
    addon = MoEAddOn(tv.tasks, chosen, gates, {n: tv.base[n] for n in names}, {n: tv.deltas[n] for n in names})
    model, weights = encoder(zoo, dev), tv.state_dict(delta)
    heads = {t: copy.deepcopy(zoo.head(t)).to(dev).requires_grad_(False) for t in tv.tasks}  # own, normal tensors
    streams = {t: zoo.unlabeled(t, batch, split="test", seed=seed + i) for i, t in enumerate(tv.tasks)}
    opt = torch.optim.Adam(addon.parameters(), lr=lr)

    def step(_: int) -> float:
        images = {t: next(s).to(dev).clone() for t, s in streams.items()}  # clone: not an inference tensor
        sizes, stacked = [len(x) for x in images.values()], torch.cat(list(images.values()))
        feats = (addon.grouped_features(model, weights, stacked, sizes) if batch_reduce
                 else addon.features(model, weights, stacked, ""))
        loss = torch.zeros((), device=dev)
        for task, f in zip(images, feats.split(sizes)):
            loss = loss + softmax_entropy(heads[task](f)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    report = None if callback is None else (
        lambda done, loss: callback(Progress(done, steps, loss, pd.DataFrame())))
    trace = optimize(step, steps, cancel=cancel, report=report, log_every=log_every)
    for gate in gates.values():
        gate.requires_grad_(False)
    info = {**trace.info(), "routed_blocks": chosen, "seconds": time.perf_counter() - start}
    return MergeResult(tv, delta, addon=MoEAddOn(tv.tasks, chosen, gates, addon.base, addon.vectors), info=info)

