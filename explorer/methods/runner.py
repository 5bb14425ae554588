"""The common runner of merge methods that learn coefficients from data (AdaMerging, aTLAS, ...).

The merged weights are built functionally, theta(Lambda)^(j) = theta_0^(j) + sum_t Lambda[t, c(j)] * tau_t^(j),
and run through ONE module from `zoo.build_model()` with `torch.func.functional_call`, so gradients reach
Lambda and no model is copied per step. c(j) is the column of parameter tensor j: its own column
(granularity "layer") or the single column "all" (granularity "task").
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pandas as pd
import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.data import DataLoader

from ..inference import task_accuracy
from ..taskvec import TaskVectors
from .concrete_mask import rescaled

GRANULARITIES = ("task", "layer")


@dataclass(frozen=True)
class Progress:
    """What a data-driven method reports to `callback(progress)` every `log_every` steps and at the end.

    `coefficients` is the current [T x L] table; `accuracy` (task -> fraction) is given when the method
    measured it on held-out labelled images at this step, else None. `stage` names a pass that is not an
    optimisation (a statistics pass over batches of examples: no loss, NaN).
    """

    step: int
    total: int
    loss: float
    coefficients: pd.DataFrame
    accuracy: dict[str, float] | None = None
    stage: str = ""


@dataclass
class Trace:
    """How an optimisation went: the loss per step, steps done, whether it was cancelled, wall time."""

    losses: list[float]
    steps: int
    cancelled: bool
    seconds: float

    def info(self) -> dict[str, Any]:
        return {"loss": self.losses, "steps": self.steps, "cancelled": self.cancelled,
                "train_seconds": self.seconds}


def require_zoo(zoo: Any, method: str) -> Any:
    """The zoo a data-driven method reads, or a ValueError saying how to provide one."""
    needed = ("build_model", "head", "dataset", "unlabeled")
    if zoo is None or not all(hasattr(zoo, a) for a in needed):
        raise ValueError(f"method {method!r} needs a zoo with data (models, heads and datasets): build the task "
                         f"vectors from a zoo (ex.task_vectors(zoo)) or pass zoo=... to ex.merge")
    return zoo


class FunctionalMerge:
    """theta(Lambda) = theta_0 + sum_t Lambda[t, c(j)] * tau_t^(j) through one module, with frozen task heads.

    `deltas` (name -> [T, ...]) replaces the task vectors when a method preprocesses them (AdaMerging++).
    """

    def __init__(self, tv: TaskVectors, zoo: Any, granularity: str = "layer",
                 deltas: Mapping[str, Tensor] | None = None):
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        unknown = [t for t in tv.tasks if t not in zoo.tasks]
        if unknown:
            raise ValueError(f"task(s) {unknown} are not in zoo {getattr(zoo, 'name', zoo)!r} ({zoo.tasks}); "
                             f"pass the zoo the task vectors were built from")
        self.zoo, self.tasks, self.device = zoo, tv.tasks, tv.device
        self.base, self.extras = tv.base, tv.extras
        self.deltas = dict(tv.deltas if deltas is None else deltas)
        self.columns = list(self.deltas) if granularity == "layer" else ["all"]
        self.column_of = {n: (j if granularity == "layer" else 0) for j, n in enumerate(self.deltas)}
        self.model = _frozen(zoo.build_model(), self.device)
        missing = sorted(set(self.model.state_dict()) - set(self.base) - set(self.extras))
        if missing:
            raise ValueError(f"the task vectors lack {len(missing)} entries of the zoo's model: {missing[:8]}; "
                             f"build them from the whole state dict (ex.task_vectors(zoo))")
        # Own copies of the heads: the zoo's may hold tensors made under torch.inference_mode (loaded
        # lazily inside an evaluation), which autograd refuses to save; a deep copy makes normal tensors.
        self.heads = {t: _frozen(copy.deepcopy(zoo.head(t)), self.device) for t in self.tasks}

    def coefficients(self, value: float) -> Tensor:
        """A [T, L] coefficient tensor filled with `value` (float32, on the task vectors' device)."""
        return torch.full((len(self.tasks), len(self.columns)), float(value), device=self.device)

    def theta(self, coef: Tensor, mask: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Merged weights name -> theta_0 + sum_t coef[t, c(name)] * tau_t (differentiable in coef); with a shared
        `mask` (name -> tensor, see `concrete_mask`), every tau_t is first masked and rescaled: tau_t * m / mean(m)."""
        out = dict(self.base)
        out.update({n: self.base[n] + d for n, d in self._merged(coef, mask).items()})
        out.update(self.extras)
        return out

    def delta(self, coef: Tensor, mask: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The merged task vector sum_t coef[t, c(name)] * tau_t (masked as in `theta`; detached)."""
        with torch.no_grad():
            return self._merged(coef, mask)

    def _merged(self, coef: Tensor, mask: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
        out = {}
        for name, d in self.deltas.items():  # d: [T, ...]; a shared mask commutes with the sum over tasks
            merged = torch.tensordot(coef[:, self.column_of[name]].to(d.dtype), d, dims=1)
            out[name] = merged * rescaled(mask[name]).to(d.dtype) if mask is not None and name in mask else merged
        return out

    def logits(self, theta: Mapping[str, Tensor], task: str, images: Tensor) -> Tensor:
        """The frozen head of `task` on the merged encoder's features: [N, C]."""
        features = functional_call(self.model, dict(theta), (_trainable(images, self.device),))
        return self.heads[task](features)

    def task_logits(self, theta: Mapping[str, Tensor], images: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Logits per task for a batch per task, through ONE encoder forward of all the images (the merged
        weights are shared by every task), each task's features then going to its own head."""
        sizes = [len(x) for x in images.values()]
        features = functional_call(self.model, dict(theta), (_trainable(torch.cat(list(images.values())),
                                                                        self.device),))
        return {t: self.heads[t](f) for t, f in zip(images, features.split(sizes))}

    def accuracy(self, coef: Tensor, task: str, split: str = "validation", limit: int | None = None) -> float:
        """Top-1 accuracy of the merge with coefficients `coef` on `task`/`split` (first `limit` images),
        measured by the evaluation harness, so it matches `ex.evaluate`."""
        with torch.no_grad():
            theta = self.theta(coef.detach())
        return task_accuracy(self.zoo, theta, task, split, limit, self.device)

    def table(self, coef: Tensor) -> pd.DataFrame:
        """The coefficients as a [T x L] DataFrame: index = task, one column per tensor (or "all")."""
        values = coef.detach().cpu().double().numpy()
        return pd.DataFrame(values, index=pd.Index(self.tasks, name="task"), columns=list(self.columns))


def _trainable(images: Tensor, device: torch.device) -> Tensor:
    """`images` on `device`, usable under autograd: a zoo may have made them under torch.inference_mode
    (a dataset generated lazily during an evaluation), and autograd refuses to save inference tensors."""
    images = images.to(device)
    return images.clone() if images.is_inference() else images


def _frozen(module: nn.Module, device: torch.device) -> nn.Module:
    module = module.to(device).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def labelled(zoo: Any, task: str, split: str, batch: int, seed: int = 0) -> DataLoader:
    """A shuffled DataLoader of (images, labels) of `task`/`split`, its order seeded."""
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(zoo.dataset(task, split), batch_size=batch, shuffle=True, generator=gen)


def reporter(fm: FunctionalMerge, coefficients: Callable[[], Tensor], total: int,
             callback: Callable[[Progress], Any] | None, eval_images: int = 0) -> Callable[[int, float], None] | None:
    """A `report(step, loss)` that sends `callback` a Progress with the current coefficients and, when
    `eval_images` > 0, each task's accuracy on the first `eval_images` labelled validation images."""
    if callback is None:
        return None

    def report(step: int, loss: float) -> None:
        coef = coefficients().detach()
        acc = {t: fm.accuracy(coef, t, "validation", eval_images) for t in fm.tasks} if eval_images else None
        callback(Progress(step, total, loss, fm.table(coef), acc))

    return report


def optimize(step: Callable[[int], float], steps: int, *, cancel: Callable[[], bool] | None = None,
             report: Callable[[int, float], None] | None = None, log_every: int = 10) -> Trace:
    """Run `step(i)` (one optimiser step, returning its loss) `steps` times; `report(done, loss)` every
    `log_every` steps and after the last; stop early, keeping what was learned, when `cancel()` is true."""
    start, losses, cancelled = time.perf_counter(), [], False
    for i in range(steps):
        if cancel is not None and cancel():
            cancelled = True
            break
        losses.append(float(step(i)))
        if report is not None and ((i + 1) % max(log_every, 1) == 0 or i + 1 == steps):
            report(i + 1, losses[-1])
    return Trace(losses, len(losses), cancelled, time.perf_counter() - start)
