"""Shared helpers for the analyses: parameter groups (whole model / layer / kind) and exact Gram sums."""
from __future__ import annotations

import itertools

import pandas as pd
import torch
from torch import Tensor

from ..taskvec import TaskVectors

BY = (None, "layer", "kind")
KIND_ORDER = ("embedding", "attn", "mlp", "ln", "proj", "other")
_CHUNK = 1 << 22  # columns per matmul chunk: float32 partial sums of 0/1 stay exact below 2**24


def check_by(by: str | None) -> None:
    if by not in BY:
        raise ValueError(f"by={by!r} is not supported; use one of {BY} (None = the whole model)")


def groups(tv: TaskVectors, by: str | None) -> dict[str, list[str]]:
    """Parameter names grouped by `by`: {"all": every name}, one group per layer (model order) or per kind."""
    check_by(by)
    if by is None:
        return {"all": tv.keys()}
    order = tv.layers() if by == "layer" else [k for k in KIND_ORDER if any(i.kind == k for i in tv.info.values())]
    return {g: [n for n in tv.keys() if getattr(tv.info[n], by) == g] for g in order}


def cross(x: Tensor, y: Tensor) -> Tensor:
    """x @ y.T for x, y [T, n] as float64 [T, T], summed in float32 chunks (exact for 0/1 entries)."""
    out = torch.zeros(x.shape[0], y.shape[0], dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[1], _CHUNK):
        out += (x[:, start:start + _CHUNK].float() @ y[:, start:start + _CHUNK].float().T).double()
    return out


def square(matrix: Tensor, tasks: list[str]) -> pd.DataFrame:
    """A [T, T] tensor as a square DataFrame indexed by task names on both axes."""
    frame = pd.DataFrame(matrix.cpu().numpy(), index=list(tasks), columns=list(tasks))
    frame.index.name, frame.columns.name = "task_a", "task_b"
    return frame


def tidy_pairs(per_group: dict[str, Tensor], tasks: list[str], by: str, value: str) -> pd.DataFrame:
    """{group: [T, T]} as rows (by, task_a, task_b, value) over every ordered pair, groups in order."""
    rows = [(g, a, b, float(m[i, j])) for g, m in per_group.items()
            for (i, a), (j, b) in itertools.product(enumerate(tasks), repeat=2)]
    return pd.DataFrame(rows, columns=[by, "task_a", "task_b", value])


def layer_depth(tv: TaskVectors) -> dict[str, int]:
    """Each layer group's position in model order (embed = 0, block.0 = 1, ...)."""
    return {layer: i for i, layer in enumerate(tv.layers())}
