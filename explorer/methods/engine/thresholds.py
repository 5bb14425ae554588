"""Exact order statistics of |tau| without sorting every value: a strided sample brackets the k-th smallest
magnitude, one counting pass finds how many lie below the bracket and gathers the few inside it, and a
selection among those gives the exact value. Works over parts read one at a time (a streamed zoo)."""
from __future__ import annotations

import functools
import math
from typing import Callable, Iterable

import torch
from torch import Tensor

from . import jit
from .kernels import Dropped, count_dropped_kernel, count_kernel

SAMPLE = 1 << 18  # at most this many sampled magnitudes per row
STEP = 64  # else every STEP-th magnitude (the bracket then holds ~ 8 sqrt(total) values), short rows more densely
Parts = Callable[[], Iterable["Tensor | Dropped"]]  # each call yields the `[rows, n_i]` parts again, in order


def _sample(parts: Parts, total: int) -> Tensor:
    """Every `step`-th column of each part, at most about SAMPLE per row and at least 4096: `[rows, S]` float32."""
    step = max(1, min(STEP, total // 4096), total // SAMPLE)
    return torch.cat([(p.cols(0, None, step).dense() if isinstance(p, Dropped) else p[:, ::step]).abs().float()
                      for p in parts()], dim=1)


def _bracket(sample: Tensor, k: int, total: int, widen: float) -> tuple[Tensor, Tensor]:
    """Per row, magnitudes [low, high] that hold the k-th smallest with high probability (widen: margin factor)."""
    size = sample.shape[1]
    q = (k - 0.5) / total
    margin = widen * (4 * math.sqrt(size * q * (1 - q)) + 16)
    lo, hi = math.floor(q * size - margin), math.ceil(q * size + margin)
    rows = sample.shape[0]
    low = sample.kthvalue(lo + 1, dim=1).values if lo >= 0 else torch.zeros(rows)
    high = sample.kthvalue(hi + 1, dim=1).values if hi < size else torch.full((rows,), math.inf)
    return low.unsqueeze(1), high.unsqueeze(1)


def _unpack(packed: list[Tensor], rows: int) -> tuple[Tensor, Tensor]:
    """(row, column) of every entry set in a mask packed 8 rows to a byte (`kernels.pack`), row by row: only the
    columns where some row is set are read."""
    cols = functools.reduce(torch.bitwise_or, packed).nonzero().squeeze(1)
    bits = torch.cat([(group[cols].unsqueeze(0) >> torch.arange(min(8, rows - 8 * g), dtype=torch.uint8)
                       .unsqueeze(1)) & 1 for g, group in enumerate(packed)])
    where, index = bits.nonzero(as_tuple=True)
    return where, cols[index]


def kth_smallest_abs(parts: Parts, k: int, total: int) -> tuple[Tensor, Tensor]:
    """Per row of the `[rows, total]` matrix the parts form side by side: the k-th smallest |x| (1-based, as
    numpy's partition; NaNs count as largest) and how many |x| are strictly smaller. Exact for any sample:
    a bracket that misses is widened, at worst to every value. The bracket's low end is counted, not gathered:
    when it is the k-th value (a tie at 0 of millions of dropped entries) no candidate is gathered at all."""
    sample = _sample(parts, total)
    rows = sample.shape[0]
    for widen in (1.0, 16.0, math.inf):
        low, high = (torch.zeros(rows, 1), torch.full((rows, 1), math.inf)) \
            if widen == math.inf else _bracket(sample, k, total, widen)
        below, at = torch.zeros(rows, dtype=torch.int64), torch.zeros(rows, dtype=torch.int64)
        inside: list[list[Tensor]] = [[] for _ in range(rows)]
        for p in parts():
            if isinstance(p, Dropped):
                count, tied, packed = count_dropped_kernel(p.x, p.keep, p.factor, low, high)
            else:
                p = p if p.dtype == torch.float32 else p.float()
                count, tied, packed = count_kernel(p, low.to(p.dtype), high.to(p.dtype))
            below, at = below + count, at + tied
            where, cols = _unpack(packed, rows)
            found = p.at(where, cols) if isinstance(p, Dropped) else p[where, cols]
            values = found.abs().split(torch.bincount(where, minlength=rows).tolist())
            for r, v in enumerate(values):  # row-major: rows in turn
                inside[r].append(v)
        cands = [torch.cat(c) for c in inside]
        rank = (k - below - at).tolist()  # the k-th value's rank among the candidates; <= 0: it is `low`
        if all(int(below[r]) < k and rank[r] <= c.numel() for r, c in enumerate(cands)):
            break
    values = torch.stack([low[r, 0] if rank[r] <= 0 else c.kthvalue(rank[r]).values for r, c in enumerate(cands)])
    smaller = torch.stack([below[r] if rank[r] <= 0 else below[r] + at[r] + (c < values[r]).sum()
                           for r, c in enumerate(cands)])
    return values, smaller


def kth_smallest_abs_rows(rows: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """`kth_smallest_abs` of one in-memory `[rows, n]` tensor: the compiled per-row selection (`jit`) where it
    applies, the sampled bracket and counting kernel for the rows it leaves (a NaN in reach) or without numba."""
    if not (jit.available(rows) and rows.is_contiguous()):
        return kth_smallest_abs(lambda: [rows], k, rows.shape[1])
    values, smaller, done = jit.kth_smallest_abs_rows(rows, k)
    if not bool(done.all()):
        rest = (~done).nonzero().squeeze(1)
        values[rest], smaller[rest] = kth_smallest_abs(lambda: [rows[rest]], k, rows.shape[1])
    return values, smaller


def topk_rows(rows: Tensor, density: float) -> Tensor:
    """Per row of `[T, n]`, a mask of exactly int(density * n) entries, the largest |x| (torch.topk picks among
    equal magnitudes), as PEFT's `magnitude_based_pruning` and mergekit's `magnitude` sparsification. Unsorted:
    CPU topk selects the same entries either way (partial sort or nth_element, then an optional sort)."""
    k = int(density * rows.shape[1])
    mask = torch.zeros_like(rows, dtype=torch.bool)
    if k > 0:
        mask.scatter_(1, rows.abs().topk(k, dim=1, sorted=False).indices, True)
    return mask
