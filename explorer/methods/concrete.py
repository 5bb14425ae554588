"""Concrete subspace learning (Tang et al.): a shared binary-Concrete mask over the task vectors, learned by
prediction entropy on unlabeled test images, under Task Arithmetic or AdaMerging (`concrete_mask` holds the mask).

- Concrete TA: theta = theta_0 + scale * sum_t tau_t * m / mean(m); only the mask logits are trained.
- Concrete AdaMerging: per meta-step, (i) reset the coefficients to `scale`, one inner step of an Adam (lr
  `inner_lr`) that lives across the meta-steps, as in both official codes, on the entropy with the mask detached;
  (ii) one Adam step on the mask logits on a fresh batch through the updated coefficients. Stage 2 freezes the mask
  and runs AdaMerging from `scale`.

The result keeps one evaluation mask (`eval_mask`), the one stage 2 trains under: as in FusionBench, a
binary-Concrete sample (`sample`) or a Bernoulli sample (`bernoulli`) drawn with the run's seed, or the
deterministic expectation sigmoid(x) (`expected`) or hard mask [x > 0] (`hard`).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch

from ..result import MergeResult
from ..taskvec import TaskVectors
from .adaptive import LOG_EVERY, SEED, softmax_entropy
from .concrete_mask import ConcreteMask
from .registry import Param, register
from .runner import FunctionalMerge, Progress, optimize, reporter, require_zoo

EVAL_MASKS = ("sample", "bernoulli", "expected", "hard")


def evaluation_mask(mask: ConcreteMask, kind: str, seed: int) -> dict[str, torch.Tensor]:
    """The frozen mask of the result (name -> tensor, detached), one of EVAL_MASKS; a sampled one is drawn from a
    generator seeded with `seed`, so the same run gives the same mask."""
    if kind not in EVAL_MASKS:
        raise ValueError(f"eval_mask must be one of {EVAL_MASKS}, got {kind!r}")
    gen = torch.Generator().manual_seed(seed)
    if kind == "sample":
        with torch.no_grad():
            return mask.sample(gen)
    if kind == "bernoulli":
        return {n: torch.bernoulli(p.cpu(), generator=gen).to(p.device) for n, p in mask.probabilities().items()}
    return mask.hard() if kind == "hard" else mask.probabilities()


def entropy(fm: FunctionalMerge, theta: dict, streams: dict) -> torch.Tensor:
    """Sum over tasks of the mean prediction entropy of one unlabeled batch per task (one forward for all)."""
    logits = fm.task_logits(theta, {t: next(s) for t, s in streams.items()})
    return sum(softmax_entropy(z).mean() for z in logits.values())


@register("concrete",
          Param("merge", str, "adamerging", "the merge under the mask: fixed Task Arithmetic weights, or AdaMerging "
                "(bi-level meta-steps, then AdaMerging with the mask frozen)", choices=("task_arithmetic",
                                                                                          "adamerging"),
                paper="adamerging"),
          Param("scale", float, 0.3, "Task Arithmetic's lambda, and AdaMerging's initial (reset) coefficient",
                low=0.0, high=1.0, step=0.05, paper=0.3),
          Param("granularity", str, "layer", "AdaMerging's coefficients: per task or per task and tensor",
                choices=("task", "layer"), paper="layer"),
          Param("logit_init", float, 0.0, "initial mask logit of every entry (0: keep probability 0.5; large: keep "
                "all, the base merge)", low=-100.0, high=100.0, step=0.5, paper=0.0),
          Param("lr", float, 1e-3, "Adam learning rate of the mask logits (the paper's; on the demo zoo 1e-2 moves the "
                "mask further and lowers Concrete AdaMerging from 60.9 to 58.3)", low=1e-5, high=1.0, step=1e-3,
                paper=1e-3),
          Param("steps", int, 40, "mask (meta-)steps (the paper runs 2000; 40 keep the demo zoo's training within two "
                "minutes on a 2-core CPU)", low=0, high=10000, step=10, paper=2000),
          Param("inner_lr", float, 1.0, "AdaMerging: Adam learning rate of the one inner step per meta-step",
                low=1e-5, high=10.0, step=0.1, paper=1.0),
          Param("adamerging_steps", int, 100, "AdaMerging: stage-2 steps with the mask frozen (the paper runs 1000)",
                low=0, high=10000, step=10, paper=1000),
          Param("adamerging_lr", float, 1e-3, "AdaMerging: stage-2 Adam learning rate (the paper's; 1e-2 over 60 "
                "steps, with the mask's lr also 1e-2, gave 56.0 on the demo zoo)", low=1e-5, high=1.0, step=1e-3,
                paper=1e-3),
          Param("batch", int, 16, "unlabeled test images per task and step", low=1, high=1024, step=1, paper=16),
          Param("eval_mask", str, "sample", "the frozen mask of the result and of stage 2: a binary-Concrete sample "
                "(the official default), a Bernoulli sample (both drawn from the seed), the expectation sigmoid(x), or "
                "the hard mask [x > 0]", choices=EVAL_MASKS, paper="sample"),
          SEED, LOG_EVERY,
          title="Concrete subspace (Concrete TA / Concrete AdaMerging)",
          paper="Tang et al., Concrete Subspace Learning based Interference Elimination for Multi-task Model "
                "Fusion, 2023",
          formula="theta = theta_0 + sum_t lambda_t * tau_t * m / mean(m), m = sigmoid((x + log u - log(1-u)) / 0.5) "
                  "in training, one such sample (or a Bernoulli sample, sigmoid(x), [x > 0]) frozen for the result; "
                  "x = argmin sum_t E_x~test_t H(softmax(head_t(f(x; theta))))",
          summary="Learn one binary mask shared by all task vectors (a binary-Concrete relaxation, rescaled by its "
                  "mean) by entropy on unlabeled test images, under Task Arithmetic or AdaMerging.",
          needs_data=True)
def concrete(tv: TaskVectors, *, merge: str, scale: float, granularity: str, logit_init: float, lr: float,
             steps: int, inner_lr: float, adamerging_steps: int, adamerging_lr: float, batch: int, eval_mask: str,
             seed: int, log_every: int, zoo: Any = None,
             callback: Callable[[Progress], Any] | None = None,
             cancel: Callable[[], bool] | None = None) -> MergeResult:
    """Train the shared mask (stage 1); for AdaMerging, then the coefficients under the frozen mask (stage 2).
    Progress steps count both stages."""
    start = time.perf_counter()
    zoo = require_zoo(zoo, "concrete")
    torch.manual_seed(seed)
    fm = FunctionalMerge(tv, zoo, granularity if merge == "adamerging" else "task")
    mask = ConcreteMask.for_deltas(fm.deltas, init=logit_init)
    streams = {t: zoo.unlabeled(t, batch, split="test", seed=seed + i) for i, t in enumerate(fm.tasks)}
    mask_opt = torch.optim.Adam(mask.parameters(), lr=lr)
    coef = torch.nn.Parameter(fm.coefficients(scale))

    def lam() -> torch.Tensor:  # the coefficients as the forward pass uses them
        return coef.clamp(0.0, 1.0)

    stage2 = adamerging_steps if merge == "adamerging" else 0
    total = steps + stage2

    inner = torch.optim.Adam([coef], lr=inner_lr)  # one optimiser for all meta-steps: its moments carry over

    def mask_step(_: int) -> float:
        if merge == "adamerging":  # (i) inner step from the reset coefficients, mask detached
            with torch.no_grad():
                coef.fill_(scale)
            inner_loss = entropy(fm, fm.theta(lam(), {n: m.detach() for n, m in mask.sample().items()}), streams)
            inner.zero_grad()
            inner_loss.backward()
            inner.step()
        loss = entropy(fm, fm.theta(lam().detach(), mask.sample()), streams)  # (ii) outer step on the logits
        mask_opt.zero_grad()
        loss.backward()
        mask_opt.step()
        return loss.item()

    report = reporter(fm, lam, total, callback)
    trace = optimize(mask_step, steps, cancel=cancel, report=report, log_every=log_every)
    frozen = evaluation_mask(mask, eval_mask, seed)
    losses, cancelled = list(trace.losses), trace.cancelled
    with torch.no_grad():
        coef.fill_(scale)
    if stage2 and not cancelled:
        opt = torch.optim.Adam([coef], lr=adamerging_lr)

        def ada_step(_: int) -> float:
            loss = entropy(fm, fm.theta(lam(), frozen), streams)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()

        shifted = None if report is None else (lambda done, loss: report(steps + done, loss))
        trace2 = optimize(ada_step, stage2, cancel=cancel, report=shifted, log_every=log_every)
        losses += trace2.losses
        cancelled = trace2.cancelled
    final = lam().detach()
    density = mask.density()
    info = {"loss": losses, "steps": len(losses), "cancelled": cancelled, "mask_density": density,
            "mask_logits": mask.state_dict(), "seconds": time.perf_counter() - start, "data": {"split": "test"}}
    masks = {t: {n: m > 0.5 for n, m in frozen.items()} for t in fm.tasks}  # the evaluated mask, binarised
    return MergeResult(tv, fm.delta(final, frozen), masks=masks, coefficients=fm.table(final), info=info)
