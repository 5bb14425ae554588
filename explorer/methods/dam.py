"""DAM (Yang, Tang et al., ICLR 2025; ALGORITHMS.md §3.18): merging that mitigates backdoors through a safety-aware
subspace. A shared Concrete mask over the task vectors (`concrete_mask`) is learned on unlabeled test images, each
step pitting it against a universal input perturbation per task that stands in for an unknown trigger.

Each step: (1) AdaMerging base only: reset the coefficients to `scale`, one Adam step at `base_lr` on the entropy
with the mask detached; (2) perturbation: Adam at `adv_lr` on delta_t maximising the cross-entropy between the
merge's logits on x + delta_t and its own labels on x (weights detached); (3) mask: Adam at `lr` on the entropy on x
plus `adv_weight` x the entropy on x + delta_t. Then the mask (hard, or soft with eval_mask="soft") is frozen and,
on AdaMerging, the layer-wise coefficients are learned for `adamerging_steps` as in AdaMerging.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..result import MergeResult
from ..taskvec import TaskVectors
from .adaptive import LOG_EVERY, SEED, softmax_entropy
from .blocks import per_task
from .concrete_mask import ConcreteMask
from .registry import Param, register
from .runner import FunctionalMerge, Progress, optimize, reporter, require_zoo

BASES = {"task_arithmetic": "task", "adamerging": "layer"}  # base merge -> coefficient granularity


def _entropy(logits: dict[str, Tensor]) -> Tensor:
    return sum(softmax_entropy(x).mean() for x in logits.values())


class _Dam:
    """The three updates of one DAM step over a FunctionalMerge, a Concrete mask and one perturbation per task."""

    def __init__(self, fm: FunctionalMerge, scale: float, lr: float, base_lr: float, adv_lr: float,
                 adv_weight: float, learn_coefficients: bool):
        self.fm, self.scale, self.base_lr, self.adv_weight = fm, scale, base_lr, adv_weight
        self.learn_coefficients = learn_coefficients
        self.coef = fm.coefficients(scale)
        self.mask = ConcreteMask.for_deltas(fm.deltas)
        self.mask_opt = torch.optim.Adam(self.mask.parameters(), lr=lr)
        self.delta: dict[str, Tensor] = {}
        self.adv_lr = adv_lr
        self.delta_opt: torch.optim.Optimizer | None = None

    def _perturbations(self, images: dict[str, Tensor]) -> dict[str, Tensor]:
        if not self.delta:  # one universal perturbation per task, the images' shape, from 0
            self.delta = {t: torch.zeros_like(x[0], requires_grad=True) for t, x in images.items()}
            self.delta_opt = torch.optim.Adam(self.delta.values(), lr=self.adv_lr)
        return self.delta

    def _inner(self, images: dict[str, Tensor]) -> None:
        """AdaMerging's inner step: coefficients from `scale`, one Adam step on the entropy, mask detached."""
        coef = torch.nn.Parameter(self.fm.coefficients(self.scale))
        opt = torch.optim.Adam([coef], lr=self.base_lr)
        mask = {n: m.detach() for n, m in self.mask.sample().items()}
        loss = _entropy(self.fm.task_logits(self.fm.theta(coef, mask), images))
        opt.zero_grad()
        loss.backward()
        opt.step()
        self.coef = coef.detach().clamp(0.0, 1.0)

    def step(self, images: dict[str, Tensor]) -> float:
        if self.learn_coefficients:
            self._inner(images)
        delta, low, high = self._perturbations(images), min(x.min() for x in images.values()), max(
            x.max() for x in images.values())
        with torch.no_grad():  # the perturbation sees the merged weights detached
            theta = self.fm.theta(self.coef, {n: m.detach() for n, m in self.mask.sample().items()})
            labels = {t: x.argmax(-1) for t, x in self.fm.task_logits(theta, images).items()}
        adv = self.fm.task_logits(theta, {t: x + delta[t] for t, x in images.items()})
        loss = -sum(F.cross_entropy(adv[t], labels[t]) for t in images)
        self.delta_opt.zero_grad()
        loss.backward()
        self.delta_opt.step()
        theta = self.fm.theta(self.coef, self.mask.sample())  # the mask update, through the relaxed sample
        perturbed = {t: (x + delta[t].detach()).clamp(low, high) for t, x in images.items()}
        both = self.fm.task_logits(theta, {t: torch.cat([images[t], perturbed[t]]) for t in images})
        clean = {t: x[:len(images[t])] for t, x in both.items()}
        loss = _entropy(clean) + self.adv_weight * _entropy({t: x[len(images[t]):] for t, x in both.items()})
        self.mask_opt.zero_grad()
        loss.backward()
        self.mask_opt.step()
        return loss.item()


@register("dam",
          Param("base", str, "task_arithmetic", "the merge the mask is learned on: Task Arithmetic (fixed lambda) "
                "or layer-wise AdaMerging", choices=tuple(BASES), paper="adamerging"),
          Param("scale", float, 0.3, "Task Arithmetic's lambda, or AdaMerging's initial coefficient", low=0.0,
                high=1.0, step=0.05, paper=0.3),
          Param("steps", int, 100, "mask-learning steps (paper: 2000 on Task Arithmetic, 1000 on AdaMerging)",
                low=0, high=10000, step=10, paper=1000),
          Param("adamerging_steps", int, 100, "AdaMerging steps with the frozen mask (AdaMerging base only)",
                low=0, high=10000, step=10, paper=1000),
          Param("lr", float, 1e-3, "Adam learning rate of the mask logits (and of the final AdaMerging)",
                low=1e-5, high=1.0, step=1e-4, paper=1e-3),
          Param("base_lr", float, 1.0, "Adam learning rate of AdaMerging's inner step per mask step", low=1e-4,
                high=10.0, step=0.1, paper=1.0),
          Param("adv_lr", float, 1e-4, "Adam learning rate of the trigger perturbations", low=1e-6, high=1.0,
                step=1e-4, paper=1e-4),
          Param("adv_weight", float, 0.1, "weight of the entropy on perturbed images in the mask loss", low=0.0,
                high=10.0, step=0.05, paper=0.1),
          Param("batch", int, 16, "unlabeled test images per task and step", low=1, high=1024, step=1, paper=16),
          Param("eval_mask", str, "hard", "the mask the merge is evaluated with: hard (keep where sigmoid(x) > 0.5) "
                "or soft (the keep probabilities sigmoid(x)), each rescaled by 1 / its mean", choices=("hard", "soft"),
                paper="hard"),
          SEED, LOG_EVERY,
          title="DAM (safety-aware subspace)",
          paper="Yang, Tang et al., Mitigating the Backdoor Effect for Multi-Task Model Merging via Safety-Aware "
                "Subspace, ICLR 2025",
          formula="theta = theta_0 + sum_t lambda_t^(j) * tau_t^(j) * m / mean(m); m ~ Concrete(x, T=0.5); "
                  "delta_t = argmax CE(f(x + delta_t), argmax f(x)); x = argmin sum_t H(f(x)) + 0.1 H(f(x + delta_t))",
          summary="Learn a shared Concrete mask over the task vectors on unlabeled test images against a universal "
                  "adversarial perturbation per task (a stand-in for a trigger), on Task Arithmetic or layer-wise "
                  "AdaMerging; then merge through the frozen mask.",
          needs_data=True)
def dam(tv: TaskVectors, *, base: str, scale: float, steps: int, adamerging_steps: int, lr: float, base_lr: float,
        adv_lr: float, adv_weight: float, batch: int, eval_mask: str, seed: int, log_every: int, zoo: Any = None,
        callback: Callable[[Progress], Any] | None = None, cancel: Callable[[], bool] | None = None) -> MergeResult:
    """DAM: the mask steps above, then (AdaMerging) the coefficients with the frozen mask."""
    start = time.perf_counter()
    zoo = require_zoo(zoo, "dam")
    fm = FunctionalMerge(tv, zoo, BASES[base])
    torch.manual_seed(seed)  # the Concrete samples
    learner = _Dam(fm, scale, lr, base_lr, adv_lr, adv_weight, base == "adamerging")
    streams = {t: zoo.unlabeled(t, batch, split="test", seed=seed + i) for i, t in enumerate(fm.tasks)}
    trace = optimize(lambda _: learner.step({t: next(s).to(fm.device) for t, s in streams.items()}), steps,
                     cancel=cancel, log_every=log_every, report=reporter(fm, lambda: learner.coef, steps, callback))
    frozen = learner.mask.hard() if eval_mask == "hard" else learner.mask.probabilities()
    coef, losses = fm.coefficients(scale), list(trace.losses)
    if base == "adamerging" and not trace.cancelled:
        raw = torch.nn.Parameter(fm.coefficients(scale))
        opt = torch.optim.Adam([raw], lr=lr)

        def adamerge(_: int) -> float:
            loss = _entropy(fm.task_logits(fm.theta(raw.clamp(0.0, 1.0), frozen),
                                           {t: next(s).to(fm.device) for t, s in streams.items()}))
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()

        second = optimize(adamerge, adamerging_steps, cancel=cancel, log_every=log_every,
                          report=reporter(fm, lambda: raw.clamp(0.0, 1.0), adamerging_steps, callback))
        coef, losses = raw.detach().clamp(0.0, 1.0), losses + second.losses
    density = sum(float((m > 0.5).sum()) for m in frozen.values()) / max(1, sum(m.numel() for m in frozen.values()))
    info = {"loss": losses, "steps": len(losses), "cancelled": trace.cancelled, "mask_density": density,
            "perturbation_norm": {t: float(d.detach().norm()) for t, d in learner.delta.items()},
            "seconds": time.perf_counter() - start}
    masks = per_task({n: (m > 0.5).expand_as(fm.deltas[n]) for n, m in frozen.items()}, fm.tasks)
    return MergeResult(tv, fm.delta(coef, frozen), masks=masks, coefficients=fm.table(coef), info=info)
