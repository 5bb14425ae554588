"""Views of the merges that train at test time: Surgery's representation bias, Concrete's learned mask, and where
the routers of Twin-Merging and WEMoE send each task's images."""
from __future__ import annotations

from typing import Any, Iterator

import pandas as pd
import torch

from ..inference import eval_data
from ..methods.concrete_mask import mask_overlap
from ..result import MergeResult


def representation_bias(result: MergeResult) -> pd.DataFrame:
    """Per task, the mean L1 distance between merged and expert features before and after Surgery."""
    if "representation_bias" not in result.info:
        raise ValueError(f"a {result.method!r} result has no representation bias: merge with method 'surgery'")
    return result.info["representation_bias"]


def concrete_mask_density(result: MergeResult) -> pd.Series:
    """Per parameter tensor, the share of entries the learned Concrete mask keeps (hard mask, logit > 0)."""
    if "mask_density" not in result.info:
        raise ValueError(f"a {result.method!r} result has no learned mask: merge with method 'concrete'")
    return pd.Series(result.info["mask_density"], name="density").rename_axis("parameter")


def learned_mask_overlap(result: MergeResult, others: dict[str, MergeResult]) -> pd.Series:
    """Jaccard overlap of a Concrete result's mask (the evaluated one: its `eval_mask`, kept where > 0.5) with each
    other result's masks (united over tasks)."""
    learned = dict(next(iter(result.masks.values()))) if result.masks else None
    if learned is None or "mask_density" not in result.info:
        raise ValueError("the first result must come from method 'concrete'")
    out = {}
    for label, other in others.items():
        if not other.masks:
            raise ValueError(f"{label!r} ({other.method}) has no masks to compare")
        united = {n: torch.stack([other.masks[t][n] for t in other.masks]).any(dim=0) for n in learned
                  if n in next(iter(other.masks.values()))}
        out[label] = mask_overlap(learned, united)
    return pd.Series(out, name="overlap")


def _routed(zoo: Any, result: MergeResult, split: str, limit: int | None) -> Iterator[tuple[str, Any]]:
    """Per task, the router's weights on its images: a [N, T] tensor (Twin) or block -> [N, T] (WEMoE)."""
    if not result.routes:
        raise ValueError(f"a {result.method!r} result has no router: merge with 'twin' or 'wemoe'")
    model = zoo.build_model().eval().requires_grad_(False)
    weights = result.state_dict()
    for task in result.tasks:
        images, _ = eval_data(zoo, task, split, limit, torch.device("cpu"))
        yield task, result.addon.route(model, weights, images)


def routing(zoo: Any, result: MergeResult, split: str = "test", limit: int | None = 200) -> pd.DataFrame:
    """Mean routing weight per (image task, block, expert): rows (task, block), one column per expert task.
    Twin-Merging routes once per image (block "all"); WEMoE per routed block."""
    rows = {}
    for task, routed in _routed(zoo, result, split, limit):
        for block, w in (routed.items() if isinstance(routed, dict) else [("all", routed)]):
            rows[task, block] = w.mean(dim=0).tolist()
    return pd.DataFrame(list(rows.values()), columns=result.tasks,
                        index=pd.MultiIndex.from_tuples(list(rows), names=["task", "block"]))


def router_confusion(zoo: Any, result: MergeResult, split: str = "test", limit: int | None = 200) -> pd.DataFrame:
    """T x T: the share of task i's images whose largest routing weight (averaged over blocks) is expert j's."""
    rows = {}
    for task, routed in _routed(zoo, result, split, limit):
        w = torch.stack(list(routed.values())).mean(dim=0) if isinstance(routed, dict) else routed
        picks = torch.bincount(w.argmax(dim=1), minlength=len(result.tasks)).float() / len(w)
        rows[task] = picks.tolist()
    return pd.DataFrame.from_dict(rows, orient="index", columns=result.tasks).rename_axis("task")
