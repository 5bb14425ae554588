"""How much weight each expert got in a Fisher merge, per layer: the mean of its per-entry Fisher weight."""
from __future__ import annotations

import pandas as pd

from ..result import MergeResult
from ._common import groups, layer_depth


def fisher_share(result: MergeResult) -> pd.DataFrame:
    """`layer, depth, task, share`: expert t's Fisher weight w_t = (F_t + eps) / sum_s (F_s + eps) averaged over all
    entries of the layer (tensors weighted by their size), so the shares of a layer sum to 1. Read from the mean
    weight per tensor that `fisher` stores in `result.coefficients`."""
    table = result.coefficients
    if result.method not in ("", "fisher") or table is None or not set(result.tv.keys()) <= set(table.columns):
        raise ValueError(f"fisher_share needs a Fisher merge (ex.merge(tv, 'fisher')), not {result.method!r}")
    tv, depth, rows = result.tv, layer_depth(result.tv), []
    for layer, names in groups(tv, "layer").items():
        sizes = pd.Series({n: tv[n][0].numel() for n in names}, dtype=float)
        share = table[names].mul(sizes, axis=1).sum(axis=1) / sizes.sum()
        rows += [(layer, depth[layer], str(task), float(share[task])) for task in table.index]
    return pd.DataFrame(rows, columns=["layer", "depth", "task", "share"])
