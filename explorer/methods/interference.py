"""Merges that optimise a data-free interference loss with Adam: WUDI-Merging and DOGE-TA. Both read only the task
vectors; each target matrix has its own loss, optimised in lockstep so that progress, the loss curve and Cancel
cover the whole model."""
from __future__ import annotations

import time
from typing import Any, Callable

import pandas as pd
import torch
from torch import Tensor

from ..result import MergeResult
from ..taskvec import TaskVectors
from .blocks import keep_topk
from .registry import Param, register
from .runner import Progress
from .spectral import is_linear_weight, svd, task_blocks

STEPS = Param("steps", int, 300, "Adam steps per matrix (official: 300; WUDI is early-stopped, the closed-form "
              "optimum lies further)", low=0, high=5000, step=10, paper=300)
WUDI_LR = Param("lr", float, 1e-5, "Adam learning rate (each entry moves about lr per step, so lr x steps bounds "
                "how far the merge moves from the task sum)", low=1e-7, high=1e-2, step=1e-6, paper=1e-5)
OTHERS = Param("others", str, "base", "parameters outside the blocks' linear weights: stay at theta_0 (base, the "
               "official code) or take the task vectors' mean (mean, FusionBench)", choices=("base", "mean"),
               paper="base")
DOGE_LAM = Param("lam", float, 0.07, "lambda: each task's matrix is scaled by lambda / ||tau_t^l||_F",
                 low=0.0, high=1.0, step=0.005, paper=0.07)
DOGE_SUBSPACE = Param("subspace", int, 6, "the shared subspace kept fixed has rank r / subspace (a divisor of the "
                      "rank; FusionBench's default 6)", low=1, high=64, step=1, paper=6)
DOGE_DENSITY = Param("density", float, 0.3, "fraction of each task vector kept by magnitude (global top-k)",
                     low=0.0, high=1.0, step=0.01, paper=0.3)
DOGE_STEPS = Param("steps", int, 400, "Adam steps per matrix (FusionBench: 400)", low=0, high=5000, step=10,
                   paper=400)
DOGE_LR = Param("lr", float, 1e-4, "Adam learning rate of the shared correction delta", low=1e-7, high=1e-1,
                step=1e-5, paper=1e-4)


def _targets(tv: TaskVectors, method: str) -> list[str]:
    names = [n for n in tv.keys() if is_linear_weight(n) and tv[n].dim() == 3]
    if not names:
        raise ValueError(f"{method} optimises the transformer blocks' linear weights (attn.in_proj_weight, "
                         f"attn.out_proj.weight, mlp.c_fc.weight, mlp.c_proj.weight; a Llama-family decoder's "
                         f"q/k/v/o_proj and gate/up/down_proj) and these task vectors have none: use an open_clip "
                         f"vision tower's or a decoder's state dict")
    return names


def _lockstep(losses_of: Callable[[], Tensor], opt: torch.optim.Optimizer, steps: int,
              callback: Callable | None, cancel: Callable[[], bool] | None) -> dict[str, Any]:
    """Run `steps` Adam steps; `losses_of()` sets every parameter's gradient and returns the total loss (before the
    step). Reports Progress every 10 steps; stops early when `cancel()` is true."""
    start, losses, cancelled = time.perf_counter(), [], False
    for i in range(steps):
        if cancel is not None and cancel():
            cancelled = True
            break
        opt.zero_grad(set_to_none=False)
        losses.append(float(losses_of()))
        opt.step()
        if callback is not None and ((i + 1) % 10 == 0 or i + 1 == steps):
            callback(Progress(i + 1, steps, losses[-1], pd.DataFrame()))
    return {"loss": losses, "steps": len(losses), "cancelled": cancelled, "train_seconds": time.perf_counter() - start}


def _by_shape(pieces: dict[str, Tensor]) -> list[list[str]]:
    """Names grouped by tensor shape: matrices of one shape are optimised as one stacked tensor (Adam is elementwise,
    so stacking changes nothing but the speed)."""
    groups: dict[tuple, list[str]] = {}
    for name, d in pieces.items():
        groups.setdefault(tuple(d.shape), []).append(name)
    return list(groups.values())


class WudiLoss:
    """WUDI's loss for a stack of K matrices [K, T, m, n]: sum_t ||(v - tau_t) tau_t^T||_F^2 / ||tau_t||_F^2 per
    matrix, written as the quadratic v G v^T - 2 v B^T + c with G = sum_t tau_t^T tau_t / ||tau_t||^2 and
    B = sum_t tau_t G_t, so no [T, m, m] product is formed."""

    def __init__(self, d: Tensor):
        d = d.double() if d.dtype == torch.float64 else d.float()
        l2 = d.pow(2).sum(dim=(-2, -1))  # [K, T]
        weight = torch.where(l2 > 0, 1.0 / l2.clamp(min=torch.finfo(d.dtype).tiny), torch.zeros_like(l2))
        grams = d.transpose(-2, -1) @ d  # [K, T, n, n]
        self.G = torch.einsum("kt,ktnj->knj", weight, grams)
        self.B = torch.einsum("kt,ktmn,ktnj->kmj", weight, d, grams)
        self.c = (weight * grams.pow(2).sum(dim=(-2, -1))).sum(dim=1)  # [K]
        self.start = d.sum(dim=1)

    def value_and_gradient(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """The loss of each matrix ([K]) and its gradient 2 (v G - B), sharing the product v G."""
        vG = v @ self.G
        value = ((vG - 2 * self.B) * v).sum(dim=(-2, -1)) + self.c
        return value, 2 * (vG - self.B)

    def optimum(self) -> Tensor:
        """The closed-form minimiser v* = B G^+ (least squares where G is singular)."""
        return torch.linalg.lstsq(self.G.double(), self.B.double().transpose(-2, -1)).solution.transpose(-2, -1)


@register("wudi", STEPS, WUDI_LR, OTHERS, title="WUDI-Merging",
          paper="Cheng et al., Whoever Started the Interference Should End It: Guiding Data-Free Model Merging via "
                "Task Vectors, ICML 2025",
          formula="per linear weight: v_0 = sum_t tau_t; minimise sum_t ||(v - tau_t) tau_t^T||_F^2 / ||tau_t||_F^2 "
                  "with Adam (steps, lr); theta = theta_0 + v (other params: theta_0 or the mean)",
          summary="A task vector spans the inputs its layer saw in fine-tuning, so the merge should act like each "
                  "expert on its own task vector's row space; WUDI fits that with a few Adam steps, no data.")
def wudi(tv: TaskVectors, *, steps: int, lr: float, others: str, callback: Callable | None = None,
         cancel: Callable[[], bool] | None = None) -> MergeResult:
    names = _targets(tv, "wudi")
    groups = _by_shape({n: tv[n] for n in names})
    losses = [WudiLoss(torch.stack([tv[n] for n in group])) for group in groups]
    v = [torch.nn.Parameter(loss.start.clone()) for loss in losses]
    opt = torch.optim.Adam(v, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    def step() -> Tensor:
        total = torch.zeros((), dtype=torch.float64)
        with torch.no_grad():
            for loss, x in zip(losses, v):
                value, x.grad = loss.value_and_gradient(x)
                total += value.sum()
        return total

    info = _lockstep(step, opt, steps, callback, cancel)
    learned = {n: x[i].detach() for group, x in zip(groups, v) for i, n in enumerate(group)}
    delta = {}
    for name, d in tv.items():
        if name in learned:
            delta[name] = learned[name].to(d.dtype)
        else:
            delta[name] = d.mean(dim=0) if others == "mean" else torch.zeros_like(d[0])
    return MergeResult(tv, delta, info=info)


def _split_qkv(name: str, d: Tensor) -> list[tuple[str, Tensor]]:
    """open_clip packs q, k and v in one `in_proj_weight` [3w, w]; DOGE-TA (FusionBench, on HF weights) treats them
    as three matrices, so split it to get the same result."""
    if name.endswith("attn.in_proj_weight") and d.shape[1] % 3 == 0:
        return [(f"{name}[{part}]", chunk) for part, chunk in zip("qkv", d.chunk(3, dim=1))]
    return [(name, d)]


def _shared_basis(d: Tensor, subspace: int) -> Tensor:
    """DOGE-TA's shared subspace of one matrix's tasks [T, m, n]: the top r/subspace left singular vectors of the
    tasks' concatenated top-(r/T) left singular vectors ([m, r/subspace])."""
    T, m, n = d.shape
    r = min(m, n)
    blocks = task_blocks(svd(d), r // T)
    if blocks.S.numel() == 0:
        return d.new_zeros(m, 0)
    return svd(blocks.U).U[:, :r // subspace].to(d.dtype)


class DogeLayers:
    """DOGE-TA's problem for a stack of K same-shaped matrices [K, T, m, n]: the task-aware scales
    lam_t = lam / ||tau_t||, each matrix's shared subspace (kept out of the gradient), and the loss
    sum_j sum_rows (sum_cols tau_j * (tau_j - S - Lambda delta))^2 with S = sum_i lam_i tau_i, Lambda = sum_i lam_i."""

    def __init__(self, d: Tensor, lam: float, subspace: int):
        norms = d.flatten(2).norm(dim=2)  # [K, T]
        self.scales = torch.where(norms > 0, lam / norms.clamp(min=torch.finfo(d.dtype).tiny), torch.zeros_like(norms))
        self.shared = torch.stack([_shared_basis(x, subspace) for x in d])  # [K, m, p]
        # rows first ([K, m, T, n]) so both products below are batched matrix products without copies
        self.rows = d.permute(0, 2, 1, 3).contiguous()
        # loss = sum (a - Lambda <tau_j row, delta row>)^2 with a = <tau_j row, tau_j row - S row>, per (k, row, j)
        S = torch.einsum("kt,ktmn->kmn", self.scales, d)
        self.a = (self.rows * (self.rows - S.unsqueeze(2))).sum(dim=-1)  # [K, m, T]
        self.Lam = self.scales.sum(dim=1)[:, None, None]  # [K, 1, 1]
        self.delta = torch.nn.Parameter(torch.zeros_like(d[:, 0]))

    def loss_and_gradient(self) -> Tensor:
        """Set delta's gradient (the analytic one: -2 Lambda sum_j e_j tau_j, row by row) and return the loss."""
        with torch.no_grad():
            e = self.a - self.Lam * (self.rows @ self.delta.unsqueeze(-1)).squeeze(-1)  # [K, m, T]
            self.delta.grad = -2 * self.Lam * (e.unsqueeze(-2) @ self.rows).squeeze(-2)
            return e.pow(2).sum()

    def project_gradient(self) -> None:
        """Remove the gradient's component in each matrix's shared subspace: grad <- grad - P grad."""
        g = self.delta.grad
        g -= self.shared @ (self.shared.transpose(-2, -1) @ g)

    def merged(self) -> Tensor:
        """sum-ready per-task parts lam_t (tau_t + delta): [K, T, m, n]."""
        with torch.no_grad():
            return self.scales[:, :, None, None] * (self.rows.transpose(1, 2) + self.delta.unsqueeze(1))


@register("doge_ta", DOGE_LAM, DOGE_SUBSPACE, DOGE_DENSITY, DOGE_STEPS, DOGE_LR, title="DOGE-TA",
          paper="Wei, Tang, Shen et al., Modeling Multi-Task Model Merging as Adaptive Projective Gradient Descent, "
                "ICML 2025 (FusionBench's data-free variant)",
          formula="per linear weight l: lam_t = lam / ||tau_t^l||; delta^l minimises sum_t ||rowsum(tau_t * (tau_t - "
                  "sum_i lam_i tau_i - sum_i lam_i delta))||^2 by Adam, gradient projected off the shared subspace; "
                  "theta = theta_0 + sum_t lam_t (tau_t + delta) * mask_t (top-density of |tau_t|)",
          summary="Scale each task's layer to a common norm, then learn one correction per layer that reduces how much "
                  "the merge changes each task's outputs, outside the subspace the tasks share; other params stay at "
                  "theta_0.")
def doge_ta(tv: TaskVectors, *, lam: float, subspace: int, density: float, steps: int, lr: float,
            callback: Callable | None = None, cancel: Callable[[], bool] | None = None) -> MergeResult:
    names = _targets(tv, "doge_ta")
    masks = keep_topk({n: tv[n] for n in names}, density)
    pieces = {part: d for n in names for part, d in _split_qkv(n, tv[n])}
    groups = _by_shape(pieces)
    stacks = [DogeLayers(torch.stack([pieces[p] for p in group]), lam, subspace) for group in groups]
    opt = torch.optim.Adam([s.delta for s in stacks], lr=lr, betas=(0.9, 0.999), eps=1e-8)

    def step() -> Tensor:
        total = torch.zeros(())
        for stack in stacks:
            total += stack.loss_and_gradient()
            stack.project_gradient()
        return total

    info = _lockstep(step, opt, steps, callback, cancel)
    parts, scales = {}, {}
    for group, stack in zip(groups, stacks):
        merged = stack.merged()
        for i, part in enumerate(group):
            parts[part], scales[part] = merged[i], stack.scales[i].double().cpu().numpy()
    delta = {}
    for name, d in tv.items():
        if name not in masks:
            delta[name] = torch.zeros_like(d[0])
            continue
        split = [parts[part] for part, _ in _split_qkv(name, d)]
        merged = torch.cat(split, dim=1) if len(split) > 1 else split[0]
        delta[name] = (merged * masks[name].to(merged.dtype)).sum(dim=0).to(d.dtype)
    coefficients = pd.DataFrame(scales, index=pd.Index(tv.tasks, name="task"))
    return MergeResult(tv, delta, coefficients=coefficients, info=info)
