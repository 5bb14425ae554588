"""Fused per-tensor kernels of the threshold merges (TIES, magnitude): one read of a stacked `[T, n]` tensor
gives the merged row and the kept mask, packed 8 tasks to a byte (compiled stores of a `[T, n]` mask cost
20x a read; `unpack` expands it eagerly), without full-size temporaries. On CPU float32 they run through
`torch.compile` (compiled once, dynamic in n) where a compiler works, else eagerly; both give the bits of the
plain eager blocks, because sums over tasks follow the order of PyTorch's CPU `sum(dim=0)` (see `ordered_sum`)."""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

log = logging.getLogger(__name__)

TAIL = 64  # PyTorch's vectorised column-sum covers whole blocks of 4 x 16 lanes; the rest is summed differently
MIN_NUMEL = 1 << 16  # per stacked tensor: below this the plain eager blocks are as fast
MAX_NUMEL = 1 << 24  # float32 vote totals stay exact integers below this (the global sign election sums them)

# "auto": compile where a compiler works; "eager": the same kernels without compiling; "off": plain blocks only.
MODE = os.environ.get("EXPLORER_FUSED", "auto")


def ordered_sum(terms: list[Tensor]) -> Tensor:
    """sum_t terms[t] in the order of PyTorch's CPU `stack(terms).sum(dim=0)` on a column of a `[T, n]` tensor
    (ATen's `multi_row_sum`: a cascade whose first level adds 16 rows), so a fused sum keeps its bits."""
    count = len(terms)
    power = max(4, (count - 1).bit_length() // 4)
    step, mask = 1 << power, (1 << power) - 1
    zero = torch.zeros_like(terms[0])
    acc = [zero] * 4
    i = 0
    while i + step <= count:
        for _ in range(step):
            acc[0] = acc[0] + terms[i]
            i += 1
        for j in range(1, 4):
            acc[j], acc[j - 1] = acc[j] + acc[j - 1], zero
            if i & (mask << (j * power)):
                break
    while i < count:
        acc[0] = acc[0] + terms[i]
        i += 1
    total = acc[0]
    for j in range(1, 4):
        total = total + acc[j]
    return total


def _pack(masks: list[Tensor]) -> list[Tensor]:
    """Bool masks, one per task, as one uint8 per entry for every 8 tasks (bit i: task 8g + i)."""
    return [functools.reduce(torch.bitwise_or, [m.to(torch.int32) << i for i, m in enumerate(masks[g:g + 8])])
            .to(torch.uint8) for g in range(0, len(masks), 8)]


class PackedMask:
    """A `[T, ...]` bool mask kept as `_pack` packed it (one byte per entry for every 8 tasks): a merge result
    holds its masks in 1/8 of the memory, and a view pays for unpacking only the task it reads (`mask[t]`)."""

    def __init__(self, packed: list[Tensor], tasks: int, shape: tuple[int, ...]):
        self.packed, self.tasks, self.entry_shape = packed, tasks, tuple(shape)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.tasks, *self.entry_shape))

    def __len__(self) -> int:
        return self.tasks

    def __getitem__(self, task: int) -> Tensor:
        if not -self.tasks <= task < self.tasks:
            raise IndexError(f"task index {task} out of range for {self.tasks} tasks")
        group, bit = divmod(task % self.tasks, 8)
        return ((self.packed[group] >> bit) & 1).view(torch.bool).reshape(self.entry_shape)

    def unpack(self) -> Tensor:
        """The whole `[T, ...]` bool mask."""
        out = torch.empty((self.tasks, *self.packed[0].shape), dtype=torch.bool)
        for g, p in enumerate(self.packed):
            size = min(8, self.tasks - 8 * g)
            shifts = torch.arange(size, dtype=torch.uint8).reshape(-1, *[1] * p.dim())
            out[8 * g:8 * g + size] = ((p.unsqueeze(0) >> shifts) & 1).view(torch.bool)
        return out.reshape(self.shape)


class Scratch:
    """One reusable buffer, the size of the biggest of `tensors`, for a merge's per-tensor temporaries: filling a
    fresh 75 MB tensor costs 2 to 4 times filling a reused one (its pages fault in on first touch). The buffer is
    allocated at the first `like`, so a merge that never needs it pays nothing."""

    def __init__(self, tensors: list[Tensor]):
        self.biggest = max(tensors, key=Tensor.numel)
        self.buffer: Tensor | None = None

    def like(self, t: Tensor) -> Tensor:
        """An uninitialised tensor shaped as `t` over the buffer (a fresh one where dtype or device differ); its
        contents last until the next call."""
        if t.dtype != self.biggest.dtype or t.device != self.biggest.device:
            return torch.empty_like(t)
        if self.buffer is None:
            self.buffer = torch.empty(self.biggest.numel(), dtype=t.dtype, device=t.device)
        return self.buffer[:t.numel()].view(t.shape)


def as_bool(mask: Tensor | PackedMask) -> Tensor:
    """A stacked mask as a `[T, ...]` bool tensor, whichever way it is stored."""
    return mask.unpack() if isinstance(mask, PackedMask) else mask


def pack(mask: Tensor) -> list[Tensor]:
    """A `[T, n]` bool tensor packed as `_pack` packs the kernels' masks."""
    return _pack(list(mask))


def dropped_rows(x: Tensor, keep: list[Tensor], factor: Tensor) -> list[Tensor]:
    """The rows of DARE's dropped `x [T, n]`, x * 1{kept} * factor in float32 (the drop's own formula), the keep bits
    read from the mask packed 8 rows to a byte (`pack`)."""
    return [x[t] * ((keep[t // 8] >> (t % 8)) & 1).to(x.dtype) * factor for t in range(x.shape[0])]


@dataclass(frozen=True)
class Dropped:
    """Rows `[T, n]` of DARE's dropped task vectors as x, the keep mask packed (`pack`) and the factor: a kernel
    recomputes the dropped values as it reads x, so no dropped copy is written (a fresh copy's page faults cost
    more than the drop itself); small pieces (tails, samples, candidates) are computed eagerly."""

    x: Tensor
    keep: list[Tensor]
    factor: Tensor

    def cols(self, start: int, stop: int | None = None, step: int = 1) -> "Dropped":
        return Dropped(self.x[:, start:stop:step], [k[start:stop:step] for k in self.keep], self.factor)

    def dense(self) -> Tensor:
        """The dropped values `[T, n]`."""
        return torch.stack(dropped_rows(self.x, self.keep, self.factor))

    def at(self, rows: Tensor, cols: Tensor) -> Tensor:
        """The dropped values at (rows[i], cols[i])."""
        bits = (torch.stack(self.keep)[rows // 8, cols] >> (rows % 8).to(torch.uint8)) & 1
        return self.x[rows, cols] * bits.to(self.x.dtype) * self.factor


def _ties_kernel(x: Tensor, thresh: Tensor, majority: Tensor, count_votes: bool,
                 mean: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """TIES on `x [T, n]`, n whole blocks of TAIL columns (the caller merges the rest eagerly; slicing the blocks off
    in here splits the compiled loop in two and costs 5x): trim below `thresh [T]`, elect sign (zero vote ->
    `majority`), disjoint sum/mean. Returns (merged [n], kept [T, n] packed, sum of the vote signs, count of
    zero-vote columns with a non-zero trimmed entry: their result depends on `majority`)."""
    return _ties_rows([x[t] for t in range(x.shape[0])], thresh, majority, count_votes, mean)


def _ties_rows(rows: list[Tensor], thresh: Tensor, majority: Tensor, count_votes: bool,
               mean: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`_ties_kernel` on the task rows as a list (each may be an expression of other inputs: it is fused in)."""
    zero = torch.zeros((), dtype=rows[0].dtype)
    trimmed = [torch.where(r.abs() >= thresh[t], r, zero) for t, r in enumerate(rows)]
    vote = ordered_sum([tr.sign() for tr in trimmed] if count_votes else trimmed).sign()
    sign = torch.where(vote == 0, majority, vote)
    keep = [torch.where(sign > 0, tr > 0, tr < 0) for tr in trimmed]
    total = ordered_sum([torch.where(k, tr, zero) for k, tr in zip(keep, trimmed)])
    if mean:
        count = functools.reduce(torch.add, [k.to(torch.int32) for k in keep])
        total = total / count.clamp(min=1).to(rows[0].dtype)
    nonzero = functools.reduce(torch.logical_or, [tr != 0 for tr in trimmed])
    return total, _pack(keep), vote.sum(), ((vote == 0) & nonzero).sum()


def _masked_sum_kernel(x: Tensor, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    """sum_t x_t * 1{low_t <= |x_t| < high_t} over `x [T, r, n]` (bounds `[T, r, 1]`) and the mask, packed."""
    zero = torch.zeros((), dtype=x.dtype)
    keep = [(x[t].abs() >= low[t]) & (x[t].abs() < high[t]) for t in range(x.shape[0])]
    return ordered_sum([torch.where(k, x[t], zero) for t, k in enumerate(keep)]), _pack(keep)


def _count_kernel(x: Tensor, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Per row of `x [T, n]` (bounds `[T, 1]`): how many |x| < low, how many |x| == low, and the mask of
    low < |x| <= high, packed. Counting the ties at `low` apart keeps a value shared by millions of entries
    (the zeros of a dropped task vector) out of the gathered candidates."""
    a = x.abs()
    return (a < low).sum(dim=1), (a == low).sum(dim=1), _pack(list((a > low) & (a <= high)))


def _ties_dropped_kernel(x: Tensor, keep: list[Tensor], factor: Tensor, thresh: Tensor, majority: Tensor,
                         count_votes: bool, mean: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`_ties_kernel` on DARE's dropped rows, recomputed from x and the packed keep mask as they are read."""
    return _ties_rows(dropped_rows(x, keep, factor), thresh, majority, count_votes, mean)


def _count_dropped_kernel(x: Tensor, keep: list[Tensor], factor: Tensor, low: Tensor,
                          high: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
    """`_count_kernel` on DARE's dropped rows, recomputed from x and the packed keep mask as they are read (row by
    row: no stacked copy)."""
    a = [r.abs() for r in dropped_rows(x, keep, factor)]
    below = torch.stack([(v < low[t]).sum() for t, v in enumerate(a)])
    at = torch.stack([(v == low[t]).sum() for t, v in enumerate(a)])
    return below, at, _pack([(v > low[t]) & (v <= high[t]) for t, v in enumerate(a)])


def _drop_kernel(x: Tensor, r: Tensor, drop: Tensor, factor: Tensor) -> tuple[Tensor, list[Tensor]]:
    """DARE's drop of `x [T, n]` given its uniform draws `r [T, n]`: x * 1{r >= drop} * factor in one pass (the
    eager formula's bits: its Python scalars become float32 too), and the keep mask packed."""
    keep = r >= drop
    return x * keep.to(x.dtype) * factor, _pack(list(keep))


def _tall_kernel(x: Tensor, shared: Tensor, lam: Tensor, k: int) -> tuple[Tensor, list[Tensor]]:
    """TALL masks m_t = |x_t| > lam_t |shared - x_t| over `x [T, n]` (packed) and Consensus' 1{sum_t m_t >= k} *
    shared: elementwise and integer counts only, so any order gives the plain blocks' bits."""
    keep = [x[t].abs() > lam[t] * (shared - x[t]).abs() for t in range(x.shape[0])]
    count = functools.reduce(torch.add, [m.to(torch.int32) for m in keep])
    return (count >= k).to(x.dtype) * shared, _pack(keep)


def emr_given(x: Tensor, total: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
    """EMR over `x [T, n]` given sum_t x_t: gamma = sign(total) (0 -> -1), the agree masks x_t gamma > 0 (packed),
    tau_uni = gamma max_t |x_t| 1[agree], and |agree_t tau_uni| `[T, n]` (its per-task means are EMR's rescaler
    denominators, taken by the caller with PyTorch's own mean for the same bits)."""
    gamma = (total > 0).to(x.dtype) * 2 - 1
    agree = [x[t] * gamma > 0 for t in range(x.shape[0])]
    zero = torch.zeros((), dtype=x.dtype)
    uni = gamma * functools.reduce(torch.maximum, [torch.where(a, x[t].abs(), zero) for t, a in enumerate(agree)])
    picked = torch.stack([torch.where(a, uni.abs(), zero) for a in agree])
    return uni, _pack(agree), picked


def _emr_kernel(x: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
    """`emr_given` with the sum over tasks in `torch.sum(dim=0)`'s order (whole blocks of columns only)."""
    return emr_given(x, ordered_sum(list(x)))


def import_compiler_quietly() -> None:
    """Import torch's C++-extension helper (torch.compile imports it) with its "No CUDA runtime is found" warning
    silenced: a CPU merge on a machine that has a CUDA toolkit but no GPU is fine, not a line in every notebook."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension  # noqa: F401
    finally:
        logger.setLevel(level)


class _Kernel:
    """A kernel run compiled when MODE allows, the tensor is big enough to repay it and a compiler works (tried
    once), else eagerly."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.compiled: Callable | None = None
        self.failed = False

    def __call__(self, x: Tensor, *args):
        if MODE == "auto" and not self.failed and x.numel() >= MIN_NUMEL:
            try:
                if self.compiled is None:
                    import_compiler_quietly()
                    self.compiled = torch.compile(self.fn, dynamic=True)
                return self.compiled(x, *args)
            except Exception as err:  # no working compiler here: the eager kernel gives the same bits
                log.warning("torch.compile failed (%s); the fused kernels run eagerly", err)
                self.failed = True
        return self.fn(x, *args)


ties_kernel = _Kernel(_ties_kernel)
masked_sum_kernel = _Kernel(_masked_sum_kernel)
count_kernel = _Kernel(_count_kernel)
tall_kernel = _Kernel(_tall_kernel)
drop_kernel = _Kernel(_drop_kernel)
ties_dropped_kernel = _Kernel(_ties_dropped_kernel)
count_dropped_kernel = _Kernel(_count_dropped_kernel)
emr_kernel = _Kernel(_emr_kernel)


def applies(tensors: list[Tensor]) -> bool:
    """Whether the fused kernels take these stacked tensors: CPU float32, and not all small (MODE != "off")."""
    return (MODE != "off" and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and all(t[0].numel() < MAX_NUMEL for t in tensors) and max(t.numel() for t in tensors) >= MIN_NUMEL)


def fused(stacked: Tensor) -> bool:
    """Whether one stacked tensor goes through a kernel (big enough), rather than the plain eager blocks."""
    return stacked.numel() >= MIN_NUMEL and stacked[0].numel() >= TAIL


def warm(tasks: int) -> None:
    """Compile the kernels for `tasks` stacked task vectors now (once per task count: the sizes are dynamic),
    so the first merge of a big zoo does not wait for the compiler. The input is a view, as a merge's rows are."""
    cols = TAIL * max(64, -(-MIN_NUMEL // (tasks * TAIL)))
    x = torch.linspace(-1, 1, tasks * cols).reshape(tasks, 2, cols // 2).reshape(tasks, cols)
    low, high = torch.full((tasks, 1), 0.5), torch.full((tasks, 1), 0.7)
    count_kernel(x, low, high)
    ties_kernel(x, low[:, 0], torch.ones(()), False, True)
    masked_sum_kernel(x.unsqueeze(1), low.unsqueeze(1), high.unsqueeze(1))
    tall_kernel(x, x[0], low[:, 0], 1)
    drop_kernel(x, x.abs(), low[0, 0], high[0, 0])
    emr_kernel(x)
    keep, factor = pack(x > 0), torch.tensor(2.0)
    count_dropped_kernel(x, keep, factor, low, high)
    ties_dropped_kernel(x, keep, factor, low[:, 0], torch.ones(()), False, False)
    per_row = torch.full((tasks, 2, 1), 0.5), torch.full((tasks, 2, 1), 0.7)  # bounds per row (Breadcrumbs)
    masked_sum_kernel(x.reshape(tasks, 2, -1), *per_row)
