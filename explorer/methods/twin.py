"""Twin-Merging (Lu et al., NeurIPS 2024) on CLIP image encoders: a shared expert plus routed exclusive knowledge.

Shared expert: Task Arithmetic. Exclusive vector of task t: v_t = theta_t - theta_shared, each 2-D tensor compressed
by truncated SVD (other tensors kept dense). A router on the shared expert's image features, trained to predict the
task on validation images, mixes them per input: theta_x = theta_shared + sum_t softmax(router(f(x)))_t * v_t.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ..addons import TwinAddOn, twin_router
from ..inference import eval_data
from ..result import MergeResult
from ..taskvec import TaskVectors
from .adaptive import LOG_EVERY, SEED
from .registry import Param, register
from .runner import Progress, optimize, require_zoo
from .surgery import encoder, features

TRAIN_SPLIT, CHECK_SPLIT = "validation", "test"


def truncated(v: Tensor, keep: float) -> tuple[Tensor, Tensor]:
    """(A [m, k], B [k, n]) with A @ B the best rank-k approximation of v, k = max(1, floor(keep * min(m, n)))."""
    k = max(1, int(keep * min(v.shape)))
    u, s, vh = torch.linalg.svd(v.double(), full_matrices=False)
    return (u[:, :k] * s[:k]).to(v.dtype), vh[:k].to(v.dtype)


def exclusive_vectors(tv: TaskVectors, shared: dict[str, Tensor], keep: float) -> dict[str, dict[str, Any]]:
    """task -> name -> v_t = tau_t - shared delta: a truncated-SVD pair for 2-D tensors, the dense tensor else."""
    out = {}
    for i, task in enumerate(tv.tasks):
        out[task] = {}
        for name, d in tv.deltas.items():
            v = d[i] - shared[name]
            out[task][name] = truncated(v, keep) if v.ndim == 2 and keep < 1.0 else v
    return out


def router_accuracy(router: torch.nn.Module, feats: Tensor, labels: Tensor) -> float:
    with torch.no_grad():
        return float((router(feats).argmax(-1) == labels).float().mean())


@register("twin",
          Param("scale", float, 0.3, "lambda of the shared expert theta_0 + lambda * sum_t tau_t (Task Arithmetic)",
                low=0.0, high=3.0, step=0.05, paper=0.29),
          Param("keep", float, 0.1, "fraction of each 2-D exclusive vector's rank kept by truncated SVD (1 = exact)",
                low=0.0, high=1.0, step=0.01, paper=0.1),
          Param("epochs", int, 50, "router training epochs over the validation features", low=0, high=1000, step=1,
                paper=50),
          Param("lr", float, 5e-4, "router Adam learning rate", low=1e-5, high=1.0, step=1e-4, paper=5e-4),
          Param("batch", int, 1024, "router batch size (features of validation images of every task)", low=1,
                high=100000, step=1, paper=1024),
          SEED, LOG_EVERY,
          title="Twin-Merging",
          paper="Lu et al., Twin-Merging: Dynamic Integration of Modular Expertise in Model Merging, NeurIPS 2024",
          formula="theta_x = theta_shared + sum_t softmax(router(f(x; theta_shared)))_t * "
                  "SVD_k(theta_t - theta_shared), theta_shared = theta_0 + lambda * sum_t tau_t; "
                  "router = argmin CE(router(f), task) on validation",
          summary="A shared expert (Task Arithmetic) plus each task's exclusive vector compressed by truncated SVD, "
                  "mixed per input by a router that predicts the task from the shared expert's image features.",
          needs_data=True, inference="router")
def twin(tv: TaskVectors, *, scale: float, keep: float, epochs: int, lr: float, batch: int, seed: int,
         log_every: int, zoo: Any = None, callback: Callable[[Progress], Any] | None = None,
         cancel: Callable[[], bool] | None = None) -> MergeResult:
    """Shared expert, compressed exclusive vectors, and the router MLP trained by cross-entropy on the task id of
    the validation images' shared features (one loss per epoch reported)."""
    start = time.perf_counter()
    zoo = require_zoo(zoo, "twin")
    torch.manual_seed(seed)
    dev = tv.device
    shared = {n: scale * d.sum(dim=0) for n, d in tv.deltas.items()}
    exclusive = exclusive_vectors(tv, shared, keep)
    model, weights = encoder(zoo, dev), {k: v.to(dev) for k, v in tv.state_dict(shared).items()}
    split_feats = {}
    for split in (TRAIN_SPLIT, CHECK_SPLIT):
        feats = [features(model, weights, eval_data(zoo, t, split, None, dev)[0]) for t in tv.tasks]
        split_feats[split] = (torch.cat(feats), torch.cat([torch.full((len(f),), i, device=dev)
                                                           for i, f in enumerate(feats)]))
    x, y = split_feats[TRAIN_SPLIT]
    router = twin_router(x.shape[-1], len(tv.tasks)).to(dev)
    opt = torch.optim.Adam(router.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)

    def epoch(_: int) -> float:
        router.train()
        order, losses = torch.randperm(len(x), generator=gen).to(dev), []
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            if len(idx) < 2:  # BatchNorm needs two examples
                continue
            loss = F.cross_entropy(router(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        router.eval()
        return sum(losses) / max(1, len(losses))

    report = None if callback is None else (
        lambda done, loss: callback(Progress(done, epochs, loss, pd.DataFrame())))
    trace = optimize(epoch, epochs, cancel=cancel, report=report, log_every=log_every)
    router.eval()
    info = {**trace.info(), "router_accuracy": {s: router_accuracy(router, *split_feats[s])
                                                for s in (TRAIN_SPLIT, CHECK_SPLIT)},
            "data": {"split": TRAIN_SPLIT, "examples_per_task": {t: int((y == i).sum())
                                                                 for i, t in enumerate(tv.tasks)}},
            "seconds": time.perf_counter() - start}
    addon = TwinAddOn(tv.tasks, router.requires_grad_(False), exclusive, x.shape[-1])
    return MergeResult(tv, shared, addon=addon, info=info)
