"""DAM (Yang, Tang et al., ICLR 2025): merging that mitigates backdoors through a safety-aware
subspace. A shared Concrete mask over the task vectors (`concrete_mask`) is learned on unlabeled test images, each
step pitting it against a universal input perturbation per task that stands in for an unknown trigger.

Each step: (1) AdaMerging base only: reset the coefficients to `scale`, one Adam step at `base_lr` on the entropy
with the mask detached; (2) perturbation: Adam at `adv_lr` on delta_t maximising the cross-entropy between the
merge's logits on x + delta_t and its own labels on x (weights detached); (3) mask: Adam at `lr` on the entropy on x
plus `adv_weight` x the entropy on the perturbed images clamped to the batch's pixel range; one relaxed mask sample
per step serves all three. Then one mask is frozen, drawn with the seed (`eval_mask`: a relaxed sample as in the
official code, a Bernoulli sample, or the hard mask) and, on AdaMerging, the layer-wise coefficients are learned for
`adamerging_steps` at `adamerging_lr` through it, as in AdaMerging.
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
from .concrete_mask import FROZEN, ConcreteMask
from .registry import Param, register
from .runner import FunctionalMerge, Progress, optimize, reporter, require_zoo

BASES = {"task_arithmetic": "task", "adamerging": "layer"}  # base merge -> coefficient granularity


def _entropy(logits: dict[str, Tensor]) -> Tensor:
    return sum(softmax_entropy(x).mean() for x in logits.values())


class _Dam:
    """The three updates of one DAM step over a FunctionalMerge, a Concrete mask and one perturbation per task.

    Each optimiser lives for the whole run (as in the official code): the inner one is reset to `scale` in value
    every step but keeps its Adam moments."""

    def __init__(self, fm: FunctionalMerge, scale: float, lr: float, base_lr: float, adv_lr: float,
                 adv_weight: float, learn_coefficients: bool):
        self.fm, self.scale, self.adv_weight, self.adv_lr = fm, scale, adv_weight, adv_lr
        self.coef = torch.nn.Parameter(fm.coefficients(scale), requires_grad=learn_coefficients)
        self.coef_opt = torch.optim.Adam([self.coef], lr=base_lr) if learn_coefficients else None
        self.mask = ConcreteMask.for_deltas(fm.deltas)
        self.mask_opt = torch.optim.Adam(self.mask.parameters(), lr=lr)
        self.delta: dict[str, Tensor] = {}
        self.delta_opt: torch.optim.Optimizer | None = None

    def coefficients(self) -> Tensor:
        """The coefficients the merge uses, clamped to [0, 1] (detached)."""
        return self.coef.detach().clamp(0.0, 1.0)

    def _perturbations(self, images: dict[str, Tensor]) -> dict[str, Tensor]:
        if not self.delta:  # one universal perturbation per task, the images' shape, from 0
            self.delta = {t: torch.zeros_like(x[0], requires_grad=True) for t, x in images.items()}
            self.delta_opt = torch.optim.Adam(self.delta.values(), lr=self.adv_lr)
        return self.delta

    def _inner(self, images: dict[str, Tensor], mask: dict[str, Tensor]) -> None:
        """AdaMerging's inner step: coefficients reset to `scale`, one Adam step on the entropy, mask detached."""
        with torch.no_grad():
            self.coef.fill_(self.scale)
        loss = _entropy(self.fm.task_logits(self.fm.theta(self.coef.clamp(0.0, 1.0), mask), images))
        self.coef_opt.zero_grad()
        loss.backward()
        self.coef_opt.step()

    def _attack(self, images: dict[str, Tensor], mask: dict[str, Tensor]) -> None:
        """One Adam step on each task's perturbation towards flipping the merge's own labels (weights detached)."""
        delta = self._perturbations(images)
        with torch.no_grad():
            theta = self.fm.theta(self.coefficients(), mask)
            labels = {t: z.argmax(-1) for t, z in self.fm.task_logits(theta, images).items()}
        adv = self.fm.task_logits(theta, {t: x + delta[t] for t, x in images.items()})
        loss = -sum(F.cross_entropy(adv[t], labels[t]) for t in images)
        self.delta_opt.zero_grad()
        loss.backward()
        self.delta_opt.step()

    def step(self, batches: Callable[[], dict[str, Tensor]]) -> float:
        """One DAM step; `batches()` draws a fresh unlabeled batch per task for each of the three updates."""
        sample = self.mask.sample()  # one relaxed mask per step, shared by the three updates
        fixed = {n: m.detach() for n, m in sample.items()}
        if self.coef_opt is not None:
            self._inner(batches(), fixed)
        self._attack(batches(), fixed)
        images = batches()
        low, high = min(float(x.min()) for x in images.values()), max(float(x.max()) for x in images.values())
        perturbed = {t: (x + self.delta[t].detach()).clamp(low, high) for t, x in images.items()}
        both = self.fm.task_logits(self.fm.theta(self.coefficients(), sample),
                                   {t: torch.cat([images[t], perturbed[t]]) for t in images})
        clean = {t: z[:len(images[t])] for t, z in both.items()}
        loss = _entropy(clean) + self.adv_weight * _entropy({t: z[len(images[t]):] for t, z in both.items()})
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
          Param("lr", float, 1e-3, "Adam learning rate of the mask logits (100 steps at the paper's 1e-3 move them "
                "by at most 0.1: the mask stays a near-random half)", low=1e-5, high=1.0, step=1e-4, paper=1e-3),
          Param("adamerging_lr", float, 1e-3, "Adam learning rate of the AdaMerging with the frozen mask (AdaMerging "
                "base only)", low=1e-5, high=1.0, step=1e-4, paper=1e-3),
          Param("base_lr", float, 1.0, "Adam learning rate of AdaMerging's inner step per mask step", low=1e-4,
                high=10.0, step=0.1, paper=1.0),
          Param("adv_lr", float, 1e-4, "Adam learning rate of the trigger perturbations", low=1e-6, high=1.0,
                step=1e-4, paper=1e-4),
          Param("adv_weight", float, 0.1, "weight of the entropy on perturbed images in the mask loss", low=0.0,
                high=10.0, step=0.05, paper=0.1),
          Param("batch", int, 16, "unlabeled test images per task and update", low=1, high=1024, step=1, paper=16),
          Param("eval_mask", str, "continuous", "the frozen mask the merge is evaluated with, drawn with `seed`: a "
                "relaxed sample (continuous), a Bernoulli sample (discrete), or hard (keep where sigmoid(x) > 0.5); "
                "each rescaled by 1 / its mean", choices=FROZEN, paper="continuous"),
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
def dam(tv: TaskVectors, *, base: str, scale: float, steps: int, adamerging_steps: int, lr: float,
        adamerging_lr: float, base_lr: float, adv_lr: float, adv_weight: float, batch: int, eval_mask: str, seed: int,
        log_every: int, zoo: Any = None, callback: Callable[[Progress], Any] | None = None,
        cancel: Callable[[], bool] | None = None) -> MergeResult:
    """DAM: the mask steps above, then (AdaMerging) the coefficients with the frozen mask. The result's delta is
    the merge through that frozen mask, the one evaluated and saved; the same seed gives the same delta."""
    start = time.perf_counter()
    zoo = require_zoo(zoo, "dam")
    fm = FunctionalMerge(tv, zoo, BASES[base])
    torch.manual_seed(seed)  # the Concrete samples of training
    learner = _Dam(fm, scale, lr, base_lr, adv_lr, adv_weight, base == "adamerging")
    streams = {t: zoo.unlabeled(t, batch, split="test", seed=seed + i) for i, t in enumerate(fm.tasks)}

    def batches() -> dict[str, Tensor]:
        return {t: next(s).to(fm.device) for t, s in streams.items()}

    trace = optimize(lambda _: learner.step(batches), steps, cancel=cancel, log_every=log_every,
                     report=reporter(fm, learner.coefficients, steps, callback))
    frozen = learner.mask.frozen(eval_mask, seed)
    coef, losses = fm.coefficients(scale), list(trace.losses)
    if base == "adamerging" and not trace.cancelled:
        raw = torch.nn.Parameter(fm.coefficients(scale))
        opt = torch.optim.Adam([raw], lr=adamerging_lr)

        def adamerge(_: int) -> float:
            loss = _entropy(fm.task_logits(fm.theta(raw.clamp(0.0, 1.0), frozen), batches()))
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()

        second = optimize(adamerge, adamerging_steps, cancel=cancel, log_every=log_every,
                          report=reporter(fm, lambda: raw.clamp(0.0, 1.0), adamerging_steps, callback))
        coef, losses = raw.detach().clamp(0.0, 1.0), losses + second.losses
    kept = {n: m > 0.5 for n, m in frozen.items()}
    density = sum(float(m.sum()) for m in kept.values()) / max(1, sum(m.numel() for m in kept.values()))
    info = {"loss": losses, "steps": len(losses), "cancelled": trace.cancelled, "mask_density": density,
            "eval_mask": eval_mask, "mask_logits": learner.mask.state_dict(),
            "perturbation_norm": {t: float(d.detach().norm()) for t, d in learner.delta.items()},
            "data": {"split": "test"},
            "seconds": time.perf_counter() - start}
    masks = per_task({n: m.expand_as(fm.deltas[n]) for n, m in kept.items()}, fm.tasks)
    return MergeResult(tv, fm.delta(coef, frozen), masks=masks, coefficients=fm.table(coef), info=info)
