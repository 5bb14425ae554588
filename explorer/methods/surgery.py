"""Representation Surgery (Yang et al., ICML 2024): per-task feature modules on top of any merge.

The merged encoder stays fixed, so each test image's merged and expert features are computed once; training then
only fits, per task, f' = f - up(relu(down f)) to the expert's features with an L1 loss (up starts at zero, so the
untrained result is exactly the base merge). The trained modules are the result's `SurgeryAddOn`, run at inference.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..inference import eval_data
from ..result import AddOn, MergeResult, register_addon
from ..taskvec import TaskVectors
from .adaptive import LOG_EVERY, SEED
from .registry import Param, all_methods, get, register
from .runner import Progress, optimize, require_zoo

SPLIT = "test"  # the paper trains on the unlabeled test images (labels are never read)
BASES = tuple(m.name for m in all_methods() if not m.per_task and not m.inference)


def surgery_correct(features: Tensor, down: Tensor, up: Tensor) -> Tensor:
    """f - up(relu(down f)) for features [..., N, d], down [..., r, d], up [..., d, r] (leading axes batch tasks)."""
    return features - F.relu(features @ down.mT) @ up.mT


@register_addon
class SurgeryAddOn(AddOn):
    """Representation Surgery: task t's features f become f - up_t(relu(down_t f)) (down [r, d], up [d, r])."""

    kind, needs_task = "surgery", True

    def __init__(self, down: Mapping[str, Tensor], up: Mapping[str, Tensor]):
        if set(down) != set(up):
            raise ValueError(f"surgery modules need a down and an up matrix per task: {sorted(down)} vs {sorted(up)}")
        self.down, self.up = dict(down), dict(up)

    def correct(self, features: Tensor, task: str) -> Tensor:
        """f - up(relu(down f)) for `task` (differentiable in its matrices)."""
        if task not in self.down:
            raise KeyError(f"no surgery module for task {task!r}; this result has {sorted(self.down)}")
        return surgery_correct(features, self.down[task], self.up[task])

    def features(self, model, weights, images, task):
        return self.correct(functional_call(model, dict(weights), (images,)), task)

    def tensors(self):
        return {**{f"down.{t}": v.detach() for t, v in self.down.items()},
                **{f"up.{t}": v.detach() for t, v in self.up.items()}}

    def config(self):
        return {"tasks": sorted(self.down)}

    @classmethod
    def rebuild(cls, config, tensors):
        return cls({t: tensors[f"down.{t}"] for t in config["tasks"]}, {t: tensors[f"up.{t}"] for t in config["tasks"]})


def parse_params(text: str, method: str) -> dict[str, Any]:
    """`name=value` pairs separated by commas (e.g. "scale=0.3,density=0.2") as validated parameters of `method`;
    "defaults" (or nothing) gives its declared defaults."""
    m, out = get(method), {}
    text = "" if text.strip() == "defaults" else text
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" not in item:
            raise ValueError(f"base parameters are name=value pairs separated by commas, got {item!r} "
                             f"(e.g. 'scale=0.3'); {method!r} takes {[p.name for p in m.params]}")
        name, value = (s.strip() for s in item.split("=", 1))
        out[name] = m.param(name).parse(value)
    return m.resolve(out)


def run_base(tv: TaskVectors, on: str, on_params: str, zoo: Any, callback: Callable | None,
             cancel: Callable[[], bool] | None) -> MergeResult:
    """The base merge `on` with its parameters, run as `ex.merge` would (zoo, progress and cancel passed on)."""
    m = get(on)
    values = parse_params(on_params, on)
    injected = {"zoo": zoo, "callback": callback, "cancel": cancel, "device": tv.device}
    result = m.fn(tv, **values, **{k: v for k, v in injected.items() if k in m.injected})
    result.method, result.params = on, values
    return result


def encoder(zoo: Any, device: torch.device) -> nn.Module:
    """A frozen encoder module of the zoo on `device`; weights come functionally."""
    return zoo.build_model().to(device).eval().requires_grad_(False)


@torch.no_grad()
def features(model: nn.Module, weights: dict[str, Tensor], images: Tensor, batch: int = 512) -> Tensor:
    """Image features [N, D] of `images` under `weights`, in batches."""
    return torch.cat([functional_call(model, weights, (images[i:i + batch],)) for i in range(0, len(images), batch)])


def l1_gap(merged: Tensor, expert: Tensor) -> float:
    """The representation bias: mean |f_merged - f_expert| over images and feature entries."""
    return float((merged - expert).abs().mean())


@register("surgery",
          Param("on", str, "task_arithmetic", "the base merge the feature modules correct (any merge giving one "
                "model)", choices=BASES, paper="task_arithmetic"),
          Param("on_params", str, "defaults", "the base merge's parameters as name=value pairs separated by commas, "
                "e.g. 'scale=0.3' ('defaults': its declared defaults)", paper="defaults"),
          Param("rank", int, 16, "rank r of each task's down (d -> r) and up (r -> d) projection", low=1, high=1024,
                step=1, paper=16),
          Param("lr", float, 1e-3, "Adam learning rate", low=1e-5, high=1.0, step=1e-4, paper=1e-3),
          Param("steps", int, 500, "iterations; each takes two shuffled batches per task with an Adam step per "
                "batch (features are computed once, so the paper's 500 fit a demo)", low=0, high=10000, step=10,
                paper=500),
          Param("batch", int, 16, "unlabeled test images per batch", low=1, high=1024, step=1, paper=16),
          SEED, LOG_EVERY,
          title="Representation Surgery",
          paper="Yang et al., Representation Surgery for Multi-Task Model Merging, ICML 2024",
          formula="f'_t(x) = f(x; theta_merged) - up_t(relu(down_t f(x; theta_merged))); "
                  "down_t, up_t = argmin E_x~test_t |f'_t(x) - f(x; theta_t)|_1, up_t initialised to 0",
          summary="Keep a merge's weights and train, per task, a small feature-space module (rank-16 down/up "
                  "projection) that removes the merged model's representation bias: L1 to the expert's features "
                  "on unlabeled test images.",
          needs_data=True, inference="task")
def surgery(tv: TaskVectors, *, on: str, on_params: str, rank: int, lr: float, steps: int, batch: int, seed: int,
            log_every: int, zoo: Any = None, callback: Callable[[Progress], Any] | None = None,
            cancel: Callable[[], bool] | None = None) -> MergeResult:
    """The base merge `on`, then per-task surgery modules trained on the merged and expert features of the test
    images (the paper's loop: per iteration, two batches per task, one Adam step each)."""
    start = time.perf_counter()
    zoo = require_zoo(zoo, "surgery")
    base = run_base(tv, on, on_params, zoo, None, cancel)
    dev, model = tv.device, encoder(zoo, tv.device)
    merged_weights = {k: v.to(dev) for k, v in base.state_dict().items()}
    merged, expert = {}, {}
    for task in tv.tasks:
        images, _ = eval_data(zoo, task, SPLIT, None, dev)
        merged[task] = features(model, merged_weights, images)
        expert[task] = features(model, {k: v.to(dev) for k, v in zoo.expert_state_dict(task).items()}, images)
    dim, count = next(iter(merged.values())).shape[-1], len(tv.tasks)
    gen = torch.Generator().manual_seed(seed)
    # All tasks' modules stacked [T, ...]: their parameters are disjoint, so one Adam step on the summed per-task
    # losses is exactly the paper's separate per-task steps (Adam acts entry by entry).
    down = nn.Parameter(torch.stack([_kaiming(rank, dim, gen) for _ in tv.tasks]).to(dev))
    up = nn.Parameter(torch.zeros(count, dim, rank, device=dev))
    opt = torch.optim.Adam([down, up], lr=lr)

    def step(_: int) -> float:
        total = 0.0
        for _ in range(2):  # two batches per task and iteration, a step after each
            picks = [torch.randint(len(merged[t]), (batch,), generator=gen).to(dev) for t in tv.tasks]
            f_merged = torch.stack([merged[t][i] for t, i in zip(tv.tasks, picks)])
            f_expert = torch.stack([expert[t][i] for t, i in zip(tv.tasks, picks)])
            loss = (surgery_correct(f_merged, down, up) - f_expert).abs().mean(dim=(1, 2)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() / count
        return total / 2

    coefficients = base.coefficients if base.coefficients is not None else pd.DataFrame()
    report = None if callback is None else (
        lambda done, loss: callback(Progress(done, steps, loss, coefficients)))
    trace = optimize(step, steps, cancel=cancel, report=report, log_every=log_every)
    addon = SurgeryAddOn({t: down[i].detach().clone() for i, t in enumerate(tv.tasks)},
                         {t: up[i].detach().clone() for i, t in enumerate(tv.tasks)})
    with torch.no_grad():
        bias = {t: (l1_gap(merged[t], expert[t]), l1_gap(addon.correct(merged[t], t), expert[t])) for t in tv.tasks}
    info = {**trace.info(), "base": {"method": on, "params": base.params, "seconds": base.info.get("seconds")},
            "representation_bias": pd.DataFrame(bias, index=["before", "after"]).T.rename_axis("task"),
            "data": {"split": SPLIT, "examples_per_task": {t: len(f) for t, f in merged.items()}},
            "seconds": time.perf_counter() - start}
    return MergeResult(tv, base.delta, masks=base.masks, coefficients=base.coefficients, addon=addon, info=info)


def _kaiming(rows: int, cols: int, gen: torch.Generator) -> Tensor:
    """nn.Linear's default weight init (kaiming uniform, a = sqrt(5)): U(-1/sqrt(cols), 1/sqrt(cols))."""
    bound = 1.0 / math.sqrt(cols)
    return (torch.rand(rows, cols, generator=gen) * 2 - 1) * bound
