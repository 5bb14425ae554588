"""Twin-Merging (Lu et al., NeurIPS 2024) on CLIP image encoders: a shared expert plus routed exclusive knowledge.

Shared expert: Task Arithmetic. Exclusive vector of task t: v_t = theta_t - theta_shared, each 2-D tensor compressed
by truncated SVD (other tensors kept dense). A router on the shared expert's image features, trained to predict the
task on validation images, mixes them per input: theta_x = theta_shared + sum_t softmax(router(f(x)))_t * v_t
(the result's `TwinAddOn`, run at inference).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..inference import eval_data
from ..result import AddOn, MergeResult, register_addon, unprefixed
from ..taskvec import TaskVectors
from .adaptive import LOG_EVERY, SEED
from .registry import Param, register
from .runner import Progress, optimize, require_zoo
from .surgery import encoder, features

TRAIN_SPLIT, CHECK_SPLIT = "validation", "test"


def twin_router(dim: int, tasks: int, dropout: float = 0.5) -> nn.Sequential:
    """Twin-Merging's router: Linear(d, 2d) -> BN -> LeakyReLU -> Dropout, twice, then Linear(2d, T)."""
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.BatchNorm1d(2 * dim), nn.LeakyReLU(), nn.Dropout(dropout),
                         nn.Linear(2 * dim, 2 * dim), nn.BatchNorm1d(2 * dim), nn.LeakyReLU(), nn.Dropout(dropout),
                         nn.Linear(2 * dim, tasks))


@register_addon
class TwinAddOn(AddOn):
    """Twin-Merging: w = softmax(router(f_shared(x))), theta_x = theta_shared + sum_t w_t * v_t.

    `exclusive[t][name]` is task t's exclusive vector of tensor `name`: a pair (A [m, r], B [r, n]) with v = A @ B
    for a compressed matrix, or a dense tensor. Inputs whose weights agree after rounding to 1/`grid` share one
    rebuilt model, so a batch is not rebuilt image by image.
    """

    kind, routes = "twin", True

    def __init__(self, tasks: list[str], router: nn.Module, exclusive: Mapping[str, Mapping[str, Any]],
                 dim: int, grid: int = 20):
        self.tasks, self.router, self.dim, self.grid = list(tasks), router.eval(), int(dim), int(grid)
        self.exclusive = {t: dict(exclusive[t]) for t in self.tasks}
        self._stacked: dict[str, Tensor] | None = None

    def weights_for(self, shared_features: Tensor) -> Tensor:
        """Routing weights [N, T] = softmax(router(features of the shared model))."""
        return self.router(shared_features).softmax(dim=-1)

    def vector(self, task: str, name: str) -> Tensor:
        v = self.exclusive[task][name]
        return v[0] @ v[1] if isinstance(v, tuple) else v

    def stacked(self) -> dict[str, Tensor]:
        """name -> [T, ...] dense exclusive vectors (rebuilt from the low-rank pairs once, then kept)."""
        if self._stacked is None:
            names = self.exclusive[self.tasks[0]]
            self._stacked = {n: torch.stack([self.vector(t, n) for t in self.tasks]) for n in names}
        return self._stacked

    def theta(self, weights: Mapping[str, Tensor], w: Tensor) -> dict[str, Tensor]:
        """theta_shared + sum_t w[t] * v_t for one weight vector w [T]."""
        out = dict(weights)
        for name, v in self.stacked().items():
            out[name] = out[name] + torch.tensordot(w.to(v.dtype), v, dims=1)
        return out

    def route(self, model: nn.Module, weights: Mapping[str, Tensor], images: Tensor) -> Tensor:
        """The routing weights [N, T] of `images`, rounded to 1/grid (the grouping inference uses)."""
        with torch.no_grad():
            shared = functional_call(model, dict(weights), (images,))
            return torch.round(self.weights_for(shared) * self.grid) / self.grid

    def features(self, model, weights, images, task):
        w = self.route(model, weights, images)
        groups, index = torch.unique(w, dim=0, return_inverse=True)
        out = None
        for g, row in enumerate(groups):
            picked = (index == g).nonzero().flatten()
            f = functional_call(model, self.theta(weights, row), (images[picked],))
            out = f.new_empty((len(images), f.shape[-1])) if out is None else out
            out[picked] = f
        return out

    def tensors(self):
        out = {f"router.{k}": v for k, v in self.router.state_dict().items()}
        for t in self.tasks:
            for name, v in self.exclusive[t].items():
                if isinstance(v, tuple):
                    out[f"exclusive.{t}.{name}.a"], out[f"exclusive.{t}.{name}.b"] = v
                else:
                    out[f"exclusive.{t}.{name}"] = v
        return {k: v.detach() for k, v in out.items()}

    def config(self):
        return {"tasks": self.tasks, "dim": self.dim, "grid": self.grid,
                "low_rank": {t: sorted(n for n, v in self.exclusive[t].items() if isinstance(v, tuple))
                             for t in self.tasks},
                "dense": {t: sorted(n for n, v in self.exclusive[t].items() if not isinstance(v, tuple))
                          for t in self.tasks}}

    @classmethod
    def rebuild(cls, config, tensors):
        tasks = config["tasks"]
        router = twin_router(config["dim"], len(tasks))
        router.load_state_dict(unprefixed(tensors, "router."))
        router = router.to(next(iter(tensors.values())).device)
        exclusive = {t: {**{n: (tensors[f"exclusive.{t}.{n}.a"], tensors[f"exclusive.{t}.{n}.b"])
                            for n in config["low_rank"][t]},
                         **{n: tensors[f"exclusive.{t}.{n}"] for n in config["dense"][t]}} for t in tasks}
        return cls(tasks, router, exclusive, config["dim"], config["grid"])


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
