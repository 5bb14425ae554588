"""TALL masks (one compressed model per task) and Consensus merging (keep weights several tasks use)."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..inference import task_accuracy
from ..result import MergeResult
from ..taskvec import TaskVectors
from . import params
from .blocks import consensus_vector, per_task, scaled, tall_mask
from .compose import compose
from .registry import Param, register

LAM_GRID = (0.2, 0.3, 0.4, 0.5, 0.6)  # the TALL-masks paper's per-task search grid


def mtl_vector(tv: TaskVectors, mtl: str, density: float) -> dict[str, Tensor]:
    """tau_MTL: the plain sum of task vectors, or the TIES disjoint sum (unscaled), as in the TALL code."""
    return compose(tv.deltas, mtl, density=density, aggregate="sum")[0]


def _choose_lams(tv: TaskVectors, mtl: dict[str, Tensor], zoo: Any) -> tuple[list[float], dict]:
    """Per task, the TALL lambda from LAM_GRID whose compressed model theta_0 + m_t * tau_MTL scores best on
    that task's validation split."""
    table: dict[str, dict[float, float]] = {t: {} for t in tv.tasks}
    for lam in LAM_GRID:
        masks = tall_mask(tv.deltas, mtl, lam)
        for i, task in enumerate(tv.tasks):
            delta = {n: masks[n][i].to(v.dtype) * v for n, v in mtl.items()}
            table[task][lam] = task_accuracy(zoo, tv.state_dict(delta), task, split="validation")
    best = [max(LAM_GRID, key=lambda lam: (table[t][lam], -abs(lam - 0.4))) for t in tv.tasks]
    return best, table


@register("tall_masks", params.MTL, params.TALL_LAM,
          Param("lam_select", str, "validation", "choose lambda per task from {0.2..0.6} on the validation split "
                "(needs a zoo with data) or use the fixed lam for every task", choices=("validation", "fixed"),
                paper="validation"),
          params.density(0.2, "mtl=ties only: fraction of each task vector kept by magnitude"),
          title="TALL masks", per_task=True,
          paper="Wang, Dimitriadis et al., Localizing Task Information for Improved Model Merging and "
                "Compression, ICML 2024",
          formula="m_t = 1{|tau_t| > lambda_t |tau_MTL - tau_t|}; theta_t = theta_0 + m_t * tau_MTL",
          summary="One binary mask per task over the multi-task vector recovers each expert from a single shared "
                  "vector: a compression scheme, not one merged model (the task id is needed at inference).")
def tall_masks(tv: TaskVectors, *, mtl: str, lam: float, lam_select: str, density: float,
               zoo: Any = None) -> MergeResult:
    shared = mtl_vector(tv, mtl, density)
    info: dict[str, Any] = {}
    if lam_select == "validation" and zoo is not None:
        lams, info["validation_accuracy"] = _choose_lams(tv, shared, zoo)
    else:
        lams = [lam] * tv.num_tasks
        if lam_select == "validation":
            info["note"] = "no zoo with validation data was given, so the fixed lam was used for every task"
    info["lam"] = dict(zip(tv.tasks, lams))
    masks = tall_mask(tv.deltas, shared, torch.tensor(lams))
    return MergeResult(tv, shared, masks=per_task(masks, tv.tasks), task_scales={t: 1.0 for t in tv.tasks},
                       info=info)


@register("consensus", params.CONSENSUS_K, params.MTL, params.TALL_LAM, params.density(0.2, "mtl=ties only: fraction "
          "of each task vector kept by magnitude"), params.scale(0.4, paper=None), title="Consensus merging",
          paper="Wang, Dimitriadis et al., Localizing Task Information for Improved Model Merging and "
                "Compression, ICML 2024",
          formula="m_cons = 1{sum_t m_t >= k}; theta = theta_0 + lambda * m_cons * tau_MTL",
          summary="Drop the weights that fewer than k tasks' TALL masks use (selfish and catastrophic weights), "
                  "then add the rest of the multi-task vector.")
def consensus(tv: TaskVectors, *, k: int, mtl: str, lam: float, density: float, scale: float) -> MergeResult:
    kept, masks = consensus_vector(tv.deltas, mtl_vector(tv, mtl, density), lam, k)
    return MergeResult(tv, scaled(kept, scale), masks=per_task(masks, tv.tasks), info={"k": k})
