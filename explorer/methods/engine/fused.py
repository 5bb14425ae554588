"""Threshold merges at a few read passes: exact magnitude thresholds from `thresholds`, then one fused kernel
per tensor (`kernels`). Bit-identical to the plain blocks in `methods/blocks.py`, which stay the reference and the
path for small, non-float32 or non-CPU task vectors. Deltas may be any mapping, so a streamed zoo works too."""
from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

import torch
from torch import Tensor

from .kernels import (
    TAIL,
    Dropped,
    PackedMask,
    Scratch,
    drop_kernel,
    emr_given,
    emr_kernel,
    fused,
    masked_sum_kernel,
    pack,
    tall_kernel,
    ties_dropped_kernel,
    ties_kernel,
)
from .thresholds import kth_smallest_abs, kth_smallest_abs_rows, topk_rows

Stacked = Mapping[str, Tensor]


def _rows(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


@dataclass(frozen=True)
class Drop:
    """DARE's drop of every stacked tensor, not applied: the keep masks packed (name -> byte groups, `pack`) and
    the factor the kept entries are multiplied by. TIES reads the dropped values through it (`Dropped`)."""

    keep: Mapping[str, list[Tensor]]
    factor: float

    def rows(self, name: str, d: Tensor) -> Dropped:
        """Tensor `name`'s dropped rows `[T, n]`."""
        return Dropped(_rows(d), [k.reshape(-1) for k in self.keep[name]], torch.tensor(self.factor, dtype=d.dtype))


Ordered = Callable[[], Tensor]  # [T, D]: each task's |tau| over the whole task vector, sorted (NaN last)


def global_threshold(deltas: Stacked, density: float, drop: Drop | None = None,
                     ordered: Ordered | None = None) -> Tensor:
    """Per task, TIES' global magnitude threshold: the (D - floor(density*D))-th smallest |tau| over the whole
    task vector (0 when everything is kept), as `blocks._kth_threshold` on the concatenation (of the dropped task
    vectors, given a `drop`). `ordered` gives the magnitudes sorted once for these deltas: the threshold of any
    density is then one look-up (a slider moving the density re-merges without a selection pass)."""
    first = next(iter(deltas.values()))
    total = sum(d[0].numel() for d in deltas.values())
    k = total - int(total * density)
    if k <= 0:
        return torch.zeros(first.shape[0], dtype=first.dtype)
    if ordered is not None and drop is None:
        return ordered()[:, k - 1].to(first.dtype)

    def parts() -> Iterable[Tensor | Dropped]:
        return (drop.rows(n, d) if drop is not None else _rows(d) for n, d in deltas.items())
    return kth_smallest_abs(parts, k, total)[0].to(first.dtype)


Found = Callable[[Scratch | None], "tuple[Tensor, Tensor] | None"]  # rows' thresholds, once topk has chosen


def _row_threshold_start(rows: Tensor, density: float, pool: Executor | None) -> Found:
    """Per row of `[T, n]`, (thresholds, rows') such that `|rows'| >= threshold` is torch.topk's mask of
    int(density*n) entries: rows' is `rows`, or a copy (in the scratch given) in which the entries at a tied
    boundary that topk leaves out are 0; None where keep is 0 or n, or a tie sits at magnitude 0. In two steps:
    the thresholds now, topk's choice on the tied rows alone in `pool` (else when asked); the function returned
    waits for that choice and builds rows'."""
    n = rows.shape[1]
    keep = int(density * n)
    if not 0 < keep < n:
        return lambda scratch: None
    values, smaller = kth_smallest_abs_rows(rows, n - keep + 1)
    values = values.to(rows.dtype)
    tied = (n - smaller != keep).nonzero().squeeze(1).tolist()
    if not tied:
        return lambda scratch: (values, rows)
    if any(float(values[r]) == 0 for r in tied):
        return lambda scratch: None
    sub = rows[tied]  # topk on the tied rows alone, in one call: each row's choice is its own
    chosen = pool.submit(topk_rows, sub, density) if pool is not None else None

    def finish(scratch: Scratch | None) -> tuple[Tensor, Tensor]:
        kept = chosen.result() if chosen is not None else topk_rows(sub, density)
        left_out = (sub.abs() == values[tied].unsqueeze(1)) & ~kept
        copy = rows.clone() if scratch is None else scratch.like(rows).copy_(rows)
        copy[tied] = sub.masked_fill_(left_out, 0)
        return values, copy
    return finish


def thresholds_ahead(deltas: Stacked, density: float, pool: Executor) -> dict[str, Found]:
    """The per-row thresholds of every fused tensor, started before the first is merged: torch.topk chooses among
    the tied entries in `pool`'s thread (it runs a thread per row, so one tied row would leave a core idle) while
    the compiled selections go on with the next tensors."""
    return {name: _row_threshold_start(_rows(d), density, pool) for name, d in deltas.items() if fused(_rows(d))}


def _ties_eager(x: Tensor, trim: Tensor, majority: Tensor, count_votes: bool,
                mean: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The plain-block TIES of `x [T, n]` given its trim mask: (merged, kept, vote-sign sum, ambiguous count)."""
    zero = torch.zeros((), dtype=x.dtype)
    trimmed = torch.where(trim, x, zero)
    vote = (trimmed.sign() if count_votes else trimmed).sum(dim=0).sign()
    keep = torch.where(torch.where(vote == 0, majority, vote).unsqueeze(0) > 0, trimmed > 0, trimmed < 0)
    total = torch.where(keep, trimmed, zero).sum(dim=0)
    if mean:
        total = total / keep.sum(dim=0).clamp(min=1).to(x.dtype)
    return total, keep, vote.sum(), ((vote == 0) & (trimmed != 0).any(dim=0)).sum()


def _ties_tensor(x: Tensor, thresh: Tensor | None, trim: Tensor | None, majority: Tensor, count_votes: bool,
                 mean: bool, dropped: Dropped | None = None) -> tuple[Tensor, Tensor | list[Tensor], Tensor, Tensor]:
    """TIES of one `[T, n]` tensor (its dropped rows, given `dropped`): the fused kernel over whole blocks of
    columns and the plain blocks over the rest (PyTorch sums those in another order), kept mask packed; or the
    plain blocks alone given a topk trim mask (kept mask as bool)."""
    if thresh is None or not fused(x):
        x = dropped.dense() if dropped is not None else x
        trim = trim if trim is not None else x.abs() >= thresh.unsqueeze(1)
        return _ties_eager(x, trim, majority, count_votes, mean)
    start = x.shape[1] - x.shape[1] % TAIL
    if dropped is None:
        merged, kept, votes, ambiguous = ties_kernel(x[:, :start], thresh, majority, count_votes, mean)
    else:
        head = dropped.cols(0, start)
        merged, kept, votes, ambiguous = ties_dropped_kernel(head.x, head.keep, head.factor, thresh, majority,
                                                             count_votes, mean)
    if start < x.shape[1]:
        tail = dropped.cols(start).dense() if dropped is not None else x[:, start:].contiguous()
        m, k, v, a = _ties_eager(tail, tail.abs() >= thresh.unsqueeze(1), majority, count_votes, mean)
        merged = torch.cat([merged, m])
        kept = [torch.cat([group, bits]) for group, bits in zip(kept, pack(k))]
        votes, ambiguous = votes + v, ambiguous + a
    return merged, kept, votes, ambiguous


def _stacked_mask(kept: Tensor | list[Tensor], shape: torch.Size) -> Tensor | PackedMask:
    """A kernel's packed mask (a list of byte groups) as a PackedMask, a plain bool mask reshaped, to `shape`."""
    return PackedMask(kept, shape[0], shape[1:]) if isinstance(kept, list) else kept.reshape(shape)


def ties_one(d: Tensor, density: float, sign: str, aggregate: str, scope: str, thresh: Tensor | None,
             majority: Tensor, scratch: Scratch | None = None, found: Found | None = None,
             dropped: Dropped | None = None) -> tuple[Tensor, Tensor | PackedMask, Tensor, Tensor]:
    """TIES of one stacked parameter `[T, ...]` given the global threshold (scope "global") and the zero-vote sign:
    (merged, kept mask, sum of its vote signs, count of zero votes where `majority` matters). `found`: its per-row
    thresholds, started ahead (scope "tensor"); `dropped`: merge its dropped rows instead (scope "global")."""
    x, t, trim = _trim(_rows(d), density, scope, thresh, scratch, found)
    m, k, v, a = _ties_tensor(x, t, trim, majority, sign == "count", aggregate == "mean", dropped)
    return m.reshape(d.shape[1:]), _stacked_mask(k, d.shape), v, a


def ties_fused(deltas: Stacked, density: float, sign: str, aggregate: str, scope: str,
               drop: Drop | None = None, ordered: Ordered | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """`blocks.ties_vector` tensor by tensor (of the dropped task vectors, given a `drop`: scope "global" only):
    trim, elect, disjoint merge in one pass per tensor. The global scope's zero votes take the model's majority
    sign, known only at the end: the few tensors where it matters are merged again."""
    if drop is not None and scope != "global":
        raise ValueError("TIES over dropped task vectors takes scope 'global' (DARE's TIES base)")
    thresh = global_threshold(deltas, density, drop, ordered) if scope == "global" and density > 0 else None
    plus, scratch = torch.ones(()), Scratch(list(deltas.values()))

    def dropped(name: str, d: Tensor) -> Dropped | None:
        return drop.rows(name, d) if drop is not None else None

    merged, kept, votes, again = {}, {}, [], []
    with ThreadPoolExecutor(1) as pool:
        ahead = thresholds_ahead(deltas, density, pool) if scope == "tensor" and density > 0 else {}
        for name, d in deltas.items():
            merged[name], kept[name], v, a = ties_one(d, density, sign, aggregate, scope, thresh, plus, scratch,
                                                      ahead.get(name), dropped(name, d))
            votes.append(v)
            if int(a) > 0:
                again.append(name)
    majority = _majority(votes) if scope == "global" else plus
    if float(majority) != 1.0:
        for name in again:
            merged[name], kept[name], _, _ = ties_one(deltas[name], density, sign, aggregate, scope, thresh, majority,
                                                      dropped=dropped(name, deltas[name]))
    return merged, kept


def ties_streamed(deltas: Stacked, density: float, sign: str, aggregate: str,
                  scope: str) -> Iterator[tuple[str, Tensor]]:
    """`ties_fused` over deltas read on each access (a streamed zoo): the threshold and the zero votes' sign
    first (a vote pass, for scope "global"), then (name, merged) tensor by tensor, each merged once."""
    thresh = global_threshold(deltas, density) if scope == "global" and density > 0 else None
    plus = torch.ones(())
    majority = _majority([ties_one(d, density, sign, "sum", scope, thresh, plus)[2] for d in deltas.values()]) \
        if scope == "global" else plus
    for name, d in deltas.items():
        yield name, ties_one(d, density, sign, aggregate, scope, thresh, majority)[0]


def _majority(votes: list[Tensor]) -> Tensor:
    """The sign a zero vote takes under scope "global": the model's majority, sign(sum of all vote signs)."""
    return torch.stack(votes).sum().sign()


def _trim(x: Tensor, density: float, scope: str, thresh: Tensor | None, scratch: Scratch | None = None,
          found: Found | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(x', threshold [T], None) when `|x'| >= threshold` is the trim (x' = x, or a copy with topk's left-out
    ties at the boundary zeroed: the same trimmed values), else (x, None, the topk trim mask)."""
    if density <= 0:
        return x, torch.full((x.shape[0],), torch.inf, dtype=x.dtype), None
    if scope == "global":
        return x, thresh, None
    if found is None and fused(x):
        found = _row_threshold_start(x, density, None)
    rows = found(scratch) if found is not None else None
    if rows is None:
        return x, None, topk_rows(x, density)
    return rows[1], rows[0], None


def masked_sum_one(d: Tensor, density: float, scope: str, thresh: Tensor | None, scratch: Scratch | None = None,
                   found: Found | None = None) -> tuple[Tensor, Tensor | PackedMask]:
    """sum_t topk(tau_t) of one stacked parameter `[T, ...]` and its mask (scope "global": above `thresh`;
    `found`: its per-row thresholds, started ahead)."""
    x, t, trim = _trim(_rows(d), density, scope, thresh, scratch, found)
    if t is None or not fused(x):
        keep = trim if trim is not None else x.abs() >= t.unsqueeze(1)
        s = torch.where(keep, x, torch.zeros((), dtype=x.dtype)).sum(dim=0)
        return s.reshape(d.shape[1:]), _stacked_mask(keep, d.shape)
    return band_sum_one(x.reshape(d.shape), t.reshape(-1, 1), None)


def band_sum_one(d: Tensor, low: Tensor, high: Tensor | None) -> tuple[Tensor, PackedMask]:
    """sum_t d_t * 1{low <= |d_t| < high} of one stacked parameter `[T, ..., n]` and its mask (packed), in one
    fused pass, given bounds per row `[T, ..., 1]` or per task `[T, 1]` (high None: no upper bound). The last
    columns past the whole blocks are summed again eagerly, in the order `torch.sum` gives them."""
    count = d.shape[0]
    n = d.shape[-1] if low.numel() > count else d[0].numel()  # bounds per task: one row of all entries
    x = d.reshape(count, -1, n)
    low = low.reshape(count, -1, 1)
    upper = torch.full_like(low, torch.inf) if high is None else high.reshape(count, -1, 1)
    s, keep = masked_sum_kernel(x, low, upper)
    s, keep = s.reshape(-1), [group.reshape(-1) for group in keep]
    start = s.numel() - s.numel() % TAIL
    if start < s.numel():
        tail = x.reshape(count, -1)[:, start:]
        row = (torch.arange(start, s.numel()) // n).clamp(max=low.shape[1] - 1)  # per task: row 0
        tail_keep = tail.abs() >= low[:, row, 0]
        if high is not None:
            tail_keep &= tail.abs() < upper[:, row, 0]
        s[start:] = torch.where(tail_keep, tail, torch.zeros((), dtype=x.dtype)).sum(dim=0)
    return s.reshape(d.shape[1:]), _stacked_mask(keep, d.shape)


def masked_sum_fused(deltas: Stacked, density: float, scope: str,
                     ordered: Ordered | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """sum_t topk(tau_t) and the masks (`keep_topk` then `task_sum`), one fused pass per tensor."""
    total, masks = {}, {}
    for name, s, mask in masked_sums(deltas, density, scope, held=True, ordered=ordered):
        total[name], masks[name] = s, mask
    return total, masks


def masked_sums(deltas: Stacked, density: float, scope: str, held: bool = False,
                ordered: Ordered | None = None) -> Iterator[tuple[str, Tensor, Tensor | PackedMask]]:
    """(name, sum_t topk(tau_t), mask) tensor by tensor after the global threshold's passes. `held`: the deltas
    are in memory, so temporaries share one buffer and per-row thresholds start ahead (else each is read once)."""
    thresh = global_threshold(deltas, density, ordered=ordered) if scope == "global" and density > 0 else None
    scratch = Scratch(list(deltas.values())) if held else None
    with ThreadPoolExecutor(1) as pool:
        ahead = thresholds_ahead(deltas, density, pool) if held and scope == "tensor" and density > 0 else {}
        for name, d in deltas.items():
            yield name, *masked_sum_one(d, density, scope, thresh, scratch, ahead.get(name))


def tall_one(d: Tensor, shared: Tensor, lam: Tensor, k: int) -> tuple[Tensor, PackedMask]:
    """One stacked parameter `[T, ...]` in one pass: (1{sum_t m_t >= k} * shared, the TALL masks
    m_t = |tau_t| > lam_t |shared - tau_t| packed), lam `[T]`, as `blocks.tall_mask` and `consensus_vector`."""
    out, packed = tall_kernel(_rows(d), shared.reshape(-1), lam, k)
    return out.reshape(shared.shape), PackedMask(packed, d.shape[0], d.shape[1:])


def emr_one(d: Tensor) -> tuple[Tensor, PackedMask, Tensor]:
    """EMR of one stacked parameter `[T, ...]` in one pass: (tau_uni, the agree masks packed, |agree_t tau_uni|);
    columns past the whole blocks take their sign from `torch.sum` itself (it sums those in another order)."""
    x = _rows(d)
    uni, packed, picked = emr_kernel(x)
    start = x.shape[1] - x.shape[1] % TAIL
    if start < x.shape[1]:
        tail = x[:, start:].contiguous()
        uni[start:], tail_packed, picked[:, start:] = emr_given(tail, tail.sum(dim=0))
        for group, bits in zip(packed, tail_packed):
            group[start:] = bits
    return uni.reshape(d.shape[1:]), PackedMask(packed, d.shape[0], d.shape[1:]), picked.reshape(d.shape)


def drop_one(d: Tensor, draw: Tensor, drop: float, factor: float,
             fuse: bool) -> tuple[Tensor, Tensor | PackedMask]:
    """DARE's drop of one stacked parameter `[T, ...]` given its uniform draws: (d * 1{draw >= drop} * factor, the
    keep mask), one fused pass where `fuse` and the tensor is big (mask packed), else PyTorch's own ops; same bits."""
    if not (fuse and fused(_rows(d))):
        keep = draw >= drop
        return d * keep.to(d.dtype) * factor, keep
    drop_at, factor_by = torch.tensor(drop, dtype=d.dtype), torch.tensor(factor, dtype=d.dtype)
    out, packed = drop_kernel(_rows(d), _rows(draw), drop_at, factor_by)
    return out.reshape(d.shape), PackedMask(packed, d.shape[0], d.shape[1:])
