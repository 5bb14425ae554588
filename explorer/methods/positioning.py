"""Self Positioning (Li et al., 2024): the merged task vector's direction is an iterated SLERP of the experts' unit
task vectors with learned weights a_t, and its length a learned norm; both are fitted on a small labelled probe set.

Every SLERP of unit vectors is a combination of them, so the direction is tracked as coefficients c over the unit
task vectors u_t, with only their T x T cosine matrix: the fit never touches a model-sized vector except in the
forward pass theta = theta_0 + lambda * rho * sum_t c_t u_t (rho = the experts' mean task-vector norm, so lambda is
dimensionless and starts at 1).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ..result import MergeResult
from ..taskvec import TaskVectors
from . import stats_passes as S
from .registry import Param, register
from .runner import FunctionalMerge, Progress, optimize, reporter, require_zoo

PROBE_SPLIT = "validation"
LOG_EVERY = 5
_EPS = 1e-6


def slerp(u: Tensor, v: Tensor, wu: Tensor, wv: Tensor, cos: Tensor) -> Tensor:
    """Spherical interpolation of unit vectors u and v (`cos` = their cosine) with weights wu, wv: the point on the
    great circle at angle wv / (wu + wv) * Omega from u, [sin(wu/(wu+wv) Omega) u + sin(wv/(wu+wv) Omega) v] / sin
    Omega; a larger weight pulls towards its vector. Nearly parallel vectors fall back to the linear mix."""
    omega = torch.acos(cos.clamp(-1 + _EPS, 1 - _EPS))
    tu, tv = wu / (wu + wv), wv / (wu + wv)
    sin = torch.sin(omega).clamp_min(_EPS)
    spherical = (torch.sin(tu * omega) * u + torch.sin(tv * omega) * v) / sin
    return torch.where(omega < 1e-4, tu * u + tv * v, spherical)


def iterated_slerp(weights: Tensor, cosines: Tensor) -> Tensor:
    """V_1..k = SLERP(V_1..k-1, u_k; mean(a_1..a_k-1), a_k), from V_1 = u_1: returned as coefficients c [T] with
    V = sum_t c_t u_t; `cosines` [T, T] holds the unit task vectors' cosines."""
    unit = torch.eye(len(weights), dtype=weights.dtype, device=weights.device)  # u_k as coefficients
    c = unit[0]
    for k in range(1, len(weights)):
        c = slerp(c, unit[k], weights[:k].mean(), weights[k], c @ cosines[:, k])
    return c


def _probe(zoo: Any, tasks: list[str], probe: int, seed: int, device: torch.device) -> dict[str, tuple]:
    """The probe set: `probe` labelled validation images per task (seeded), as (images, labels) on `device`."""
    out = {}
    for task in tasks:
        images, labels = zip(*S.batches(S.examples(zoo, task, PROBE_SPLIT, probe, seed, "self_positioning"), device))
        out[task] = (torch.cat(images), torch.cat(labels))
    return out


@register("self_positioning",
          Param("probe", int, 32, "labelled validation images per task the weights and the norm are fitted on",
                low=1, high=100000, step=8, paper=None),
          Param("steps", int, 50, "Adam steps, each on the whole probe set", low=0, high=10000, step=10, paper=None),
          Param("lr", float, 0.05, "Adam learning rate of log a_t and lambda", low=1e-5, high=1.0, step=1e-3,
                paper=None),
          Param("mu", float, 0.01, "penalty mu * lambda against a long merged vector (the paper: best below 0.05)",
                low=0.0, high=10.0, step=0.005, paper="< 0.05"),
          Param("seed", int, 0, "random seed: which probe images are read", low=0, high=2**31 - 1, step=1,
                paper=None),
          title="Self Positioning",
          paper="Li et al., Improving General Text Embedding Model: Tackling Task Conflict and Data Imbalance "
                "through Model Merging, arXiv 2410.15035, 2024",
          formula="theta = theta_0 + lambda * rho * V; V = iterated SLERP of tau_t / ||tau_t|| with weights a_t; "
                  "(a, lambda) = argmin mean_t CE(head_t(f(x; theta)), y) + mu * lambda on the probe set",
          summary="Iterated spherical interpolation of the unit task vectors with learned weights, scaled by a "
                  "learned norm; both fitted on a few labelled validation images per task.",
          needs_data=True)
def self_positioning(tv: TaskVectors, *, probe: int, steps: int, lr: float, mu: float, seed: int, zoo: Any = None,
                     callback: Callable[[Progress], Any] | None = None,
                     cancel: Callable[[], bool] | None = None) -> MergeResult:
    """Adam on log a_t (from a_t = 1) and lambda (from 1), cross-entropy through the frozen heads on the probe set.
    `coefficients` holds the weights a_t (normalised to sum 1) per task and the norm lambda in the row "all"."""
    start = time.perf_counter()
    zoo = require_zoo(zoo, "self_positioning")
    fm = FunctionalMerge(tv, zoo, "task")
    flat = tv.flat().double()
    norms = flat.norm(dim=1).clamp_min(1e-12)  # [T]
    cosines = (flat @ flat.T) / torch.outer(norms, norms)
    rho = float(norms.mean())
    log_a = torch.nn.Parameter(torch.zeros(tv.num_tasks, dtype=torch.float64, device=tv.device))
    lam = torch.nn.Parameter(torch.ones((), dtype=torch.float64, device=tv.device))

    def coef() -> Tensor:  # [T, 1]: theta = theta_0 + sum_t coef_t tau_t
        return (lam * rho * iterated_slerp(log_a.exp(), cosines) / norms).float().unsqueeze(1)

    data = _probe(zoo, tv.tasks, probe, seed, tv.device)
    opt = torch.optim.Adam([log_a, lam], lr=lr)

    def step(_: int) -> float:
        logits = fm.task_logits(fm.theta(coef()), {t: x for t, (x, _) in data.items()})
        loss = torch.stack([F.cross_entropy(logits[t], y) for t, (_, y) in data.items()]).mean() + mu * lam
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    trace = optimize(step, steps, cancel=cancel, log_every=LOG_EVERY, report=reporter(fm, coef, steps, callback))
    weights = (log_a.exp() / log_a.exp().sum()).detach().cpu().tolist()
    table = pd.DataFrame({"all": weights + [lam.item()]}, index=pd.Index([*tv.tasks, "all"], name="task"))
    final = coef().detach()
    info = {**trace.info(), "data": {"split": PROBE_SPLIT, "examples_per_task": {t: len(y) for t, (_, y) in
                                                                                 data.items()}},
            "weights": dict(zip(tv.tasks, weights)), "norm": lam.item(), "rho": rho,
            "effective": dict(zip(tv.tasks, final[:, 0].tolist())), "seconds": time.perf_counter() - start}
    return MergeResult(tv, fm.delta(final), coefficients=table, info=info)
