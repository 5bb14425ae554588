"""EMR-Merging: one elected unified task vector plus a light mask and rescaler per task."""
from __future__ import annotations

import torch

from ..result import MergeResult
from ..taskvec import TaskVectors
from .blocks import per_task
from .engine.fused import emr_one
from .engine.kernels import Scratch, applies, fused
from .registry import register


@register("emr", title="EMR-Merging", per_task=True,
          paper="Huang et al., EMR-Merging: Tuning-Free High-Performance Model Merging, NeurIPS 2024",
          formula="gamma = sign(sum_t tau_t) (0 -> -1); tau_uni = gamma * max_t(|tau_t| 1[tau_t gamma > 0]); "
                  "M_t = 1[tau_t gamma > 0]; s_t = sum_l mean|tau_t,l| / sum_l mean|M_t,l tau_uni,l|; "
                  "theta_t = theta_0 + s_t M_t tau_uni",
          summary="Elect a unified vector, then give each task a sign mask and a rescaler; needs the task id at "
                  "inference (one light model per task), no data and no tuning.")
def emr(tv: TaskVectors) -> MergeResult:
    unified, masks = {}, {}
    num = torch.zeros(tv.num_tasks, dtype=torch.float64, device=tv.device)
    den = torch.zeros_like(num)
    use = applies(list(tv.deltas.values()))
    scratch = Scratch(list(tv.deltas.values()))
    for name, d in tv.deltas.items():
        if use and fused(d.reshape(d.shape[0], -1)):  # one pass, the same bits
            uni, agree, picked = emr_one(d)
        else:
            gamma = (d.sum(dim=0) > 0).to(d.dtype) * 2 - 1  # exact zeros get -1, as the official code
            agree = d * gamma.unsqueeze(0) > 0  # [T, ...]
            uni = gamma * (d.abs() * agree.to(d.dtype)).amax(dim=0)
            picked = (agree.to(d.dtype) * uni.unsqueeze(0)).abs()
        unified[name], masks[name] = uni, agree
        dims = tuple(range(1, d.dim()))
        num += torch.abs(d, out=scratch.like(d)).mean(dim=dims).double() if dims else d.abs().double()
        den += picked.mean(dim=dims).double() if dims else picked.double()
    scales = torch.where(den > 0, num / den.clamp(min=1e-30), torch.zeros_like(num))
    task_scales = {t: float(s) for t, s in zip(tv.tasks, scales)}
    return MergeResult(tv, unified, masks=per_task(masks, tv.tasks), task_scales=task_scales)
