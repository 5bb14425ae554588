"""Layer-wise scaling: how large each task vector is per layer, and how strongly a merge scales each layer."""
from __future__ import annotations

import pandas as pd
from torch import Tensor

from ..result import MergeResult
from ..taskvec import TaskVectors
from ._common import groups, layer_depth


def _sq_norm(tensors: list[Tensor]) -> float:
    """Squared L2 norm of several tensors taken together."""
    return float(sum(t.double().square().sum() for t in tensors))


def layer_norms(tv: TaskVectors) -> pd.DataFrame:
    """Each task vector's L2 norm per layer: `layer, depth, task, norm, relative` with relative = ||tau_t,l|| /
    ||theta_0,l|| (how much fine-tuning moved that layer; NaN where theta_0 is zero)."""
    depth, rows = layer_depth(tv), []
    for layer, names in groups(tv, "layer").items():
        sq = sum(tv[n].reshape(tv.num_tasks, -1).double().square().sum(1) for n in names)  # [T]
        base = _sq_norm([tv.base[n] for n in names]) ** 0.5
        rows += [(layer, depth[layer], t, v ** 0.5, v ** 0.5 / base if base else float("nan"))
                 for t, v in zip(tv.tasks, sq.tolist())]
    return pd.DataFrame(rows, columns=["layer", "depth", "task", "norm", "relative"])


def effective_coefficients(result: MergeResult) -> pd.DataFrame:
    """How much a merge keeps of the plain sum, per layer: ||delta_l|| / ||sum_t tau_t,l||, as `layer, depth, task,
    coefficient` with task "all" (or one row per task for per-task methods). Task arithmetic gives its lambda."""
    if result.delta is None:
        raise ValueError(f"the {result.method or 'given'} result has no stored delta (an input-dependent method); "
                         "effective coefficients need a merged task vector")
    tv, depth, rows = result.tv, layer_depth(result.tv), []
    deltas = {t: result.task_delta(t) for t in result.tasks} if result.per_task else {"all": result.delta}
    for layer, names in groups(tv, "layer").items():
        total = _sq_norm([tv[n].sum(0) for n in names]) ** 0.5
        for task, delta in deltas.items():
            merged = _sq_norm([delta[n] for n in names if n in delta]) ** 0.5
            rows.append((layer, depth[layer], task, merged / total if total else float("nan")))
    return pd.DataFrame(rows, columns=["layer", "depth", "task", "coefficient"])


def learned_coefficients(result: MergeResult, by: str = "key") -> pd.DataFrame:
    """The coefficients a method stored (LiNeS, AdaMerging, aTLAS, ...) as tidy `task, key, layer, depth,
    coefficient`, one row per table cell; keys are layer names ("block.3"), parameter names or "all" (whole
    model). by="layer" gives `task, layer, depth, coefficient`: the mean over each layer's keys, "all" broadcast."""
    if by not in ("key", "layer"):
        raise ValueError(f"by={by!r} is not supported; use 'key' or 'layer'")
    table = result.coefficients
    if table is None or table.empty:
        raise ValueError(f"the {result.method or 'given'} result stores no coefficients; layer-wise methods such "
                         "as lines, adamerging or atlas do. For any method use effective_coefficients(result)")
    tv, depth = result.tv, layer_depth(result.tv)
    frame = table.rename_axis(index="task", columns="key").stack().rename("coefficient").reset_index()
    frame["task"], frame["coefficient"] = frame.task.astype(str), frame.coefficient.astype(float)
    frame.insert(2, "layer", [tv.info[k].layer if k in tv.info else (k if k in depth else "all") for k in frame.key])
    if by == "layer":
        whole = frame[frame.layer == "all"]
        spread = whole.loc[whole.index.repeat(len(depth))].assign(layer=list(depth) * len(whole))
        frame = pd.concat([frame[frame.layer != "all"], spread])
        order = {t: i for i, t in enumerate(dict.fromkeys(frame.task))}
        frame = frame.groupby(["task", "layer"]).coefficient.mean().reset_index()
        frame = frame.sort_values(["task", "layer"], key=lambda c: c.map(order if c.name == "task" else depth))
    frame.insert(frame.columns.get_loc("layer") + 1, "depth", frame.layer.map(depth))
    return frame.reset_index(drop=True)
