"""Numba-compiled loops (defined in `jit_loops`) for the two things PyTorch's CPU ops do slowly and a fused
`torch.compile` kernel cannot express: exact per-row order statistics of |x| (a selection, not a sort) and PyTorch's
own CPU random stream (MT19937, drawn serially under a lock by `torch.rand`) fused with DARE's drop. This module is
what callers use: whether the loops apply (`available`), the functions on tensors and the stream, the lock the
parallel loops run under, and `warm`. Every function gives the bits of the PyTorch path it replaces; rows where that
cannot be guaranteed cheaply (a tie at a band edge, an inf or NaN, a sample that misses) are reported, and the caller
runs the PyTorch path on them. Without numba (or with EXPLORER_FUSED=off) callers keep the PyTorch path."""
from __future__ import annotations

import threading

import numpy as np
import torch
from torch import Tensor

from . import jit_loops as loops
from . import kernels
from .jit_loops import N, njit

CHUNK = 1 << 18  # DARE's drop draws this many uniforms at a time
SAMPLE_STEP_MIN = 8192  # the bracket's sample holds about this many magnitudes per row (at least)
# numba's fallback threading layer (workqueue, where neither TBB nor OpenMP is found) must not be entered from two
# threads at once: a dashboard serves merges from worker threads, so the parallel loops take turns
PARALLEL = threading.Lock()


def available(*tensors: Tensor) -> bool:
    """Whether the compiled loops take these tensors: numba imports, MODE allows, CPU float32."""
    return (njit is not None and kernels.MODE != "off"
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors))


def kth_smallest_abs_rows(rows: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per row of a contiguous `[R, n]` CPU float32 tensor: (the k-th smallest |x|, how many are smaller, whether
    the row was done here; the others need `thresholds.kth_smallest_abs`). About one read of each row, where
    topk or kthvalue sort most of it."""
    count, n = rows.shape
    values, smaller = np.zeros(count, np.float32), np.zeros(count, np.int64)
    ok = np.zeros(count, np.bool_)
    with PARALLEL:
        loops.kth_rows(rows.numpy(), k, max(1, n // SAMPLE_STEP_MIN), values, smaller, ok)
    return torch.from_numpy(values), torch.from_numpy(smaller), torch.from_numpy(ok)


def band_edges(rows: Tensor, n_remove: int, n_keep: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per row of a contiguous `[R, n]` CPU float32 tensor, Model Breadcrumbs' band (0 < n_keep <= n - n_remove):
    (outer, inner, done) with outer <= |x| < inner exactly the |x| ranked (n_remove, n_remove + n_keep] from the
    largest (inner = inf without outliers). Rows not done (a tie across an edge, an inf or NaN) take the topk path."""
    count = rows.shape[0]
    outer, inner = np.zeros(count, np.uint32), np.zeros(count, np.uint32)
    ok = np.zeros(count, np.bool_)
    with PARALLEL:
        loops.band_rows(rows.numpy().view(np.uint32), n_remove, n_keep, outer, inner, ok, max(1, min(count, 256)))
    inner[inner == 0xFFFFFFFF] = 0x7F800000  # +inf
    return torch.from_numpy(outer.view(np.float32)), torch.from_numpy(inner.view(np.float32)), torch.from_numpy(ok)


class TorchStream:
    """A CPU `torch.Generator`'s MT19937 stream, continued here: `fill` gives the values `torch.rand(..., generator=
    gen)` would, `drop` fuses them into DARE's drop, and `sync` writes the advanced state back to the generator.
    ATen's CPU state (`CPUGeneratorImplState`): seed u64, left i32, seeded i32, next u64, state u64[624], ..."""

    def __init__(self, gen: torch.Generator):
        self.gen = gen
        self.raw = gen.get_state().numpy().copy()
        left = int(self.raw[8:12].view(np.int32)[0])
        self.state = self.raw[24:24 + 8 * N].view(np.uint64).astype(np.uint32)
        self.block = np.empty(N, np.float32)  # the uniforms of the current state words
        self.pos = N if left == 1 else int(self.raw[16:24].view(np.uint64)[0])  # left 1: the next draw twists
        self.buffer = np.empty(CHUNK, np.float32)  # the uniforms drawn at a time, reused (its pages stay in)
        if self.pos < N:
            loops.temper(self.state, self.block)

    def fill(self, out: Tensor) -> Tensor:
        """`out` (contiguous CPU float32) filled as `torch.rand(out.shape, generator=gen, out=out)` would."""
        self.pos = loops.fill(self.state, self.block, self.pos, out.view(-1).numpy())
        return out

    def drop(self, x: Tensor, drop: float, factor: float) -> tuple[Tensor, list[Tensor]]:
        """DARE's drop of a contiguous `[T, n]` float32 tensor with the next T*n uniforms: (x * 1{r >= drop} * factor
        in float32, the keep mask packed as `kernels.pack` packs it)."""
        out = torch.empty_like(x)
        packed = np.zeros((-(-x.shape[0] // 8), x.shape[1]), np.uint8)
        with PARALLEL:
            self.pos = loops.drop_rows(self.state, self.block, self.pos, x.numpy(), np.float32(drop),
                                       np.float32(factor), out.numpy(), packed, self.buffer)
        return out, list(torch.from_numpy(packed))

    def keep(self, x: Tensor, drop: float) -> list[Tensor]:
        """The keep mask 1{r >= drop} of `drop` on the next T*n uniforms for a `[T, n]` tensor, packed, without the
        dropped values (the uniforms are drawn for x's shape; its values are not read)."""
        packed = np.zeros((-(-x.shape[0] // 8), x.shape[1]), np.uint8)
        self.pos = loops.keep_rows(self.state, self.block, self.pos, x.shape[0], x.shape[1], np.float32(drop), packed)
        return list(torch.from_numpy(packed))

    def sync(self) -> None:
        """Write the advanced state back, so the generator goes on where this stream stopped."""
        raw = self.raw.copy()
        raw[8:12].view(np.int32)[0] = 1 if self.pos == N else N + 1 - self.pos
        raw[16:24].view(np.uint64)[0] = self.pos
        raw[24:24 + 8 * N].view(np.uint64)[:] = self.state
        self.gen.set_state(torch.from_numpy(raw))


def warm() -> None:
    """Compile (or load from numba's on-disk cache) every loop of `jit_loops` now, on tiny inputs."""
    if njit is None:
        return
    rows = torch.linspace(-1, 1, 4 * 256).reshape(4, 256)
    kth_smallest_abs_rows(rows, 100)
    band_edges(rows, 3, 40)
    stream = TorchStream(torch.Generator().manual_seed(0))
    stream.drop(rows, 0.5, 2.0)
    stream.fill(torch.empty(8))
