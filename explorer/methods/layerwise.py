"""LiNeS: scale a merged task vector layer by layer, shallow blocks less than deep ones."""
from __future__ import annotations

import pandas as pd

from ..result import MergeResult
from ..taskvec import TaskVectors
from . import params
from .blocks import l1, layer_scale, task_sum
from .compose import compose
from .registry import Param, register


@register("lines", Param("base", str, "task_arithmetic", "the merge whose vector is rescaled layer by layer",
                         choices=("task_arithmetic", "ties", "consensus"), paper="task_arithmetic"),
          Param("alpha_mode", str, "auto", "auto: the paper's multi-task rule alpha = (||sum tau||_1 / "
                "||tau_merged||_1) / T; fixed: use alpha", choices=("auto", "fixed"), paper="auto"),
          Param("alpha", float, 1.0, "scale of the shallowest block and of everything outside the blocks "
                "(used when alpha_mode=fixed)", low=0.0, high=3.0, step=0.05, paper=None),
          Param("beta", float, 0.5, "extra scale that grows linearly to the deepest block", low=0.0, high=3.0,
                step=0.05, paper=0.5),
          params.density(0.2, "ties base only: fraction of each task vector kept by magnitude"), params.CONSENSUS_K,
          params.TALL_LAM,
          title="LiNeS (layer-increasing network scaling)",
          paper="Wang, Dimitriadis et al., LiNeS: Post-training Layer Scaling Prevents Forgetting and Enhances "
                "Model Merging, ICLR 2025",
          formula="tau_l <- (alpha + beta * l / (L - 1)) * tau_l for block l; alpha for layers outside the blocks",
          summary="Shallow layers hold general features that merging should disturb least, so the merged vector is "
                  "scaled from alpha at the first block up to alpha + beta at the last.")
def lines(tv: TaskVectors, *, base: str, alpha_mode: str, alpha: float, beta: float, density: float, k: int,
          lam: float) -> MergeResult:
    merged, _ = compose(tv.deltas, base, density=density, aggregate="mean", k=k, lam=lam)
    if alpha_mode == "auto":
        norm = l1(merged)
        alpha = l1(task_sum(tv.deltas)) / norm / tv.num_tasks if norm > 0 else 1.0 / tv.num_tasks
    block_of = {n: tv.info[n].block for n in merged}
    delta, factors = layer_scale(merged, block_of, tv.num_blocks, alpha, beta)
    by_layer = {layer: factors[_block(layer)] for layer in tv.layers()}
    return MergeResult(tv, delta, coefficients=pd.DataFrame([by_layer], index=pd.Index(["all"], name="task")),
                       info={"alpha": alpha, "beta": beta})


def _block(layer: str) -> int | None:
    return int(layer.split(".")[1]) if layer.startswith("block.") else None
