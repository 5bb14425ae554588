"""The numba-compiled loops behind `jit`, for the two things PyTorch's CPU ops do slowly and a fused `torch.compile`
kernel cannot express: exact per-row order statistics of |x| (a selection, not a sort; Model Breadcrumbs' band
edges) and PyTorch's own CPU random stream (MT19937) fused with DARE's drop. Only the loops live here, on numpy
arrays; `jit` decides when they run, takes the lock around the parallel ones and turns tensors into arrays and
back. Without numba `_jit` leaves them plain Python functions (never called then: `jit.available` is False)."""
from __future__ import annotations

import math

import numpy as np

try:
    from numba import njit, prange
except ImportError:  # the PyTorch paths give the same bits, slower
    njit = prange = None

N, M = 624, 397  # MT19937's state words and its twist offset
UPPER, LOWER, MATRIX = np.uint32(0x80000000), np.uint32(0x7FFFFFFF), np.uint32(0x9908B0DF)


def _jit(**options):
    """njit with an on-disk cache (a fresh process compiles once per machine), or nothing without numba."""
    return (lambda fn: fn) if njit is None else njit(cache=True, nogil=True, **options)


# ---- exact per-row order statistics -------------------------------------------------------------------------

@_jit()
def _select(v, count, k):
    """The k-th smallest (0-based) of v[:count], reordering v in place: by counting for a few values (no branch to
    mispredict), else quickselect with a median-of-three pivot."""
    if count <= 48:
        for i in range(count):
            less, equal = 0, 0
            for j in range(count):
                less += v[j] < v[i]
                equal += v[j] == v[i]
            if less <= k < less + equal:
                return v[i]
    lo, hi = 0, count - 1
    while hi > lo:
        a, b, c = v[lo], v[(lo + hi) >> 1], v[hi]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = lo, hi
        while i <= j:
            while v[i] < pivot:
                i += 1
            while v[j] > pivot:
                j -= 1
            if i <= j:
                v[i], v[j] = v[j], v[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return v[k]
    return v[k]


@_jit()
def _compact(a, lower, upper, cands):
    """The |a| in (lower, upper] into `cands` (room for all of `a`); how many. By blocks of 64: a vectorised count
    skips the blocks without one (most, for a narrow bracket); the others are compacted without a branch."""
    n, found = a.size, 0
    whole = n - n % 64
    for base in range(0, whole, 64):
        hits = np.int32(0)
        for j in range(64):
            v = abs(a[base + j])
            hits += np.int32(v > lower) & np.int32(v <= upper)
        if hits != 0:
            for j in range(64):
                v = abs(a[base + j])
                cands[found] = v
                found += (v > lower) & (v <= upper)
    for i in range(whole, n):
        v = abs(a[i])
        cands[found] = v
        found += (v > lower) & (v <= upper)
    return found


@_jit()
def _kth_of_row(a, k, sample_step, cands):
    """(k-th smallest |a| (1-based), how many |a| are smaller, done): a sorted strided sample brackets the value (a
    narrow bracket, a wide one where counting shows it missed) and cuts the bracket in eight; one vectorised pass
    counts below each cut; the eighth holding the k-th value is compacted into `cands` (room for all of `a`) and a
    selection among those gives it. Not done where the wide bracket missed too or a NaN is in reach."""
    n = a.size
    sample = np.sort(np.abs(a[::sample_step]))
    m = sample.size
    if np.isnan(sample[m - 1]):
        return np.float32(0.0), 0, False
    q = (k - 0.5) / n
    spread = math.sqrt(m * q * (1.0 - q))
    cuts = np.empty(8, np.float32)  # the eighths' tops; the last is the bracket's
    counts = np.empty(8, np.int64)
    for margin in (2.5 * spread + 8.0, 8.0 * spread + 32.0):
        lo, hi = int(math.floor(q * m - margin)), int(math.ceil(q * m + margin))
        low = sample[lo] if lo >= 0 else np.float32(0.0)
        for j in range(8):
            index = lo + (hi - lo) * (j + 1) // 8
            cuts[j] = sample[index] if 0 <= index < m else np.float32(np.inf if index >= m else 0.0)
        c0, c1, c2, c3, c4, c5, c6, c7 = cuts[0], cuts[1], cuts[2], cuts[3], cuts[4], cuts[5], cuts[6], cuts[7]
        below, at = np.int32(0), np.int32(0)
        n0 = n1 = n2 = n3 = n4 = n5 = n6 = n7 = np.int32(0)
        for i in range(n):  # counts only: vectorised
            v = abs(a[i])
            below += np.int32(v < low)
            at += np.int32(v == low)
            n0 += np.int32(v <= c0)
            n1 += np.int32(v <= c1)
            n2 += np.int32(v <= c2)
            n3 += np.int32(v <= c3)
            n4 += np.int32(v <= c4)
            n5 += np.int32(v <= c5)
            n6 += np.int32(v <= c6)
            n7 += np.int32(v <= c7)
        if below < k <= n7:
            break
    if not below < k <= n7:
        return np.float32(0.0), 0, False
    if k <= below + at:  # the k-th value is `low` itself
        return low, int(below), True
    counts[0], counts[1], counts[2], counts[3] = n0, n1, n2, n3
    counts[4], counts[5], counts[6], counts[7] = n4, n5, n6, n7
    floor, lower, upper = int(below + at), low, cuts[7]
    for j in range(8):  # the first eighth with k values at or below its top
        if counts[j] >= k:
            upper = cuts[j]
            break
        floor, lower = int(counts[j]), cuts[j]
    found = _compact(a, lower, upper, cands)
    chosen = _select(cands, found, k - floor - 1)
    smaller = floor
    for i in range(found):
        smaller += cands[i] < chosen
    return chosen, smaller, True


@_jit(parallel=True)
def kth_rows(rows, k, sample_step, values, smaller, ok):
    """`_kth_of_row` of every row of `rows [R, n]` into values, smaller and ok, rows in parallel."""
    for r in prange(rows.shape[0]):
        cands = np.empty(rows.shape[1], np.float32)
        values[r], smaller[r], ok[r] = _kth_of_row(rows[r], k, sample_step, cands)


BINS, BIN_SHIFT = 256, np.uint32(19)  # the band's histogram: 8 bins per octave of |x| below the row's largest
MAGNITUDE, INF_BITS = np.uint32(0x7FFFFFFF), np.uint32(0x7F800000)


@_jit()
def _band_of_row(a, n_remove, n_keep, hist, cands, inner_cands):
    """Model Breadcrumbs' band edges of one row of float32 bit patterns `a`: (outer, inner, done) as |x| bit
    patterns (non-negative floats order as their bits), the mask being outer <= |x| < inner. A histogram of
    |x| over 8 bins per octave gives each edge's bin, one pass compacts those two bins, a selection in each; a tie
    across an edge shows as more entries at or above it than its rank.
    Not done where a tie crosses an edge (topk chooses among the tied) or the row holds an inf or a NaN."""
    n = a.size
    largest = np.uint32(0)
    for i in range(n):
        largest = max(largest, a[i] & MAGNITUDE)
    if largest >= INF_BITS:  # an infinity or a NaN: left to topk
        return np.uint32(0), np.uint32(0), False
    top, last = largest >> BIN_SHIFT, np.uint32(BINS - 1)
    hist[:] = 0
    quarter = n - n % 4
    for i in range(0, quarter, 4):  # four histograms: no chain of increments to one counter
        hist[0, min(top - ((a[i] & MAGNITUDE) >> BIN_SHIFT), last)] += 1
        hist[1, min(top - ((a[i + 1] & MAGNITUDE) >> BIN_SHIFT), last)] += 1
        hist[2, min(top - ((a[i + 2] & MAGNITUDE) >> BIN_SHIFT), last)] += 1
        hist[3, min(top - ((a[i + 3] & MAGNITUDE) >> BIN_SHIFT), last)] += 1
    for i in range(quarter, n):
        hist[0, min(top - ((a[i] & MAGNITUDE) >> BIN_SHIFT), last)] += 1
    outer_rank, inner_rank = n_remove + n_keep, n_remove  # counted from the largest
    above, b = 0, 0
    outer_bin, outer_above, inner_bin, inner_above = BINS - 1, 0, BINS - 1, 0
    found_inner = inner_rank == 0
    while b < BINS:
        count = hist[0, b] + hist[1, b] + hist[2, b] + hist[3, b]
        if not found_inner and above + count >= inner_rank:
            inner_bin, inner_above, found_inner = b, above, True
        if above + count >= outer_rank:
            outer_bin, outer_above = b, above
            break
        above += count
        b += 1
    outer_key, inner_key = top - np.uint32(outer_bin), top - np.uint32(inner_bin)
    # the last bin holds everything below it: an edge there takes those keys too
    outer_floor = outer_key if outer_bin < BINS - 1 else np.uint32(0)
    inner_floor = inner_key if inner_bin < BINS - 1 else np.uint32(0)
    if inner_rank == 0:
        inner_key, inner_floor = outer_key, outer_floor
    found = 0
    if outer_bin < BINS - 1:  # one compaction for both edges' bins (two keys: the common case, cheaper)
        for i in range(n):
            w = a[i] & MAGNITUDE
            key = w >> BIN_SHIFT
            cands[found] = w
            found += (key == outer_key) | (key == inner_key)
    else:
        for i in range(n):
            w = a[i] & MAGNITUDE
            key = w >> BIN_SHIFT
            cands[found] = w
            found += ((key <= outer_key) & (key >= outer_floor)) | ((key <= inner_key) & (key >= inner_floor))
    n_outer, n_inner = 0, 0
    for i in range(found):  # split them (in place for the outer edge's: it writes behind what it reads)
        w = cands[i]
        key = w >> BIN_SHIFT
        if key <= inner_key and key >= inner_floor:
            inner_cands[n_inner] = w
            n_inner += 1
        if key <= outer_key and key >= outer_floor:
            cands[n_outer] = w
            n_outer += 1
    outer = _select(cands, n_outer, n_outer - (outer_rank - outer_above))
    at_least_outer = outer_above
    for i in range(n_outer):
        at_least_outer += cands[i] >= outer
    inner, at_least_inner = np.uint32(0xFFFFFFFF), 0  # above every float: no outliers
    if inner_rank > 0:
        inner = _select(inner_cands, n_inner, n_inner - (inner_rank - inner_above))
        at_least_inner = inner_above
        for i in range(n_inner):
            at_least_inner += inner_cands[i] >= inner
    return outer, inner, at_least_outer == outer_rank and at_least_inner == inner_rank


@_jit(parallel=True)
def band_rows(rows, n_remove, n_keep, outer, inner, ok, chunks):
    """`_band_of_row` of every row of `rows [R, n]` (float32 bit patterns) into outer, inner and ok, `chunks` chunks
    of rows in parallel."""
    count, n = rows.shape
    per = -(-count // chunks)
    for c in prange(chunks):  # buffers once per chunk of rows
        hist = np.empty((4, BINS), np.int32)
        cands, inner_cands = np.empty(n, np.uint32), np.empty(n, np.uint32)
        for r in range(c * per, min(count, (c + 1) * per)):
            outer[r], inner[r], ok[r] = _band_of_row(rows[r], n_remove, n_keep, hist, cands, inner_cands)


# ---- PyTorch's CPU random stream -----------------------------------------------------------------------------

@_jit(inline="always")
def _twist_pair(a, b, c):
    y = (a & UPPER) | (b & LOWER)
    return c ^ (y >> np.uint32(1)) ^ ((np.uint32(0) - (b & np.uint32(1))) & MATRIX)


@_jit()
def _twist(st):
    """MT19937's next 624 state words, in place (ATen's `mt19937_engine::next_state`)."""
    for i in range(N - M):
        st[i] = _twist_pair(st[i], st[i + 1], st[i + M])
    for i in range(N - M, N - 1):
        st[i] = _twist_pair(st[i], st[i + 1], st[i + M - N])
    st[N - 1] = _twist_pair(st[N - 1], st[0], st[M - 1])


@_jit()
def temper(st, block):
    """`torch.rand`'s float32 values of all 624 state words into `block`: the tempered word's low 24 bits / 2^24
    (a fixed count: the loop vectorises)."""
    scale = np.float32(1.0 / 16777216.0)
    for j in range(N):
        y = st[j]
        y ^= y >> np.uint32(11)
        y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
        y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
        y ^= y >> np.uint32(18)
        block[j] = np.float32(y & np.uint32(0xFFFFFF)) * scale


@_jit()
def _next(st, block, p):
    """The position to read from, twisting and tempering the next block when this one is used up."""
    if p == N:
        _twist(st)
        temper(st, block)
        return 0
    return p


@_jit(parallel=True)
def _apply_drop(x, out, packed, r, drop, factor, shift):
    """out = x * 1{r >= drop} * factor and packed |= 1{r >= drop} << shift over 1-D slices of one row, by all
    threads (a fresh output's pages fault in on first touch: a thread alone pays for all of them)."""
    n = x.size
    for b in prange((n + 4095) // 4096):
        lo, hi = b * 4096, min(n, b * 4096 + 4096)
        xb, ob, pb, rb = x[lo:hi], out[lo:hi], packed[lo:hi], r[lo:hi]
        for j in range(hi - lo):  # slices, not x[lo + j]: no negative-index check, so the loop vectorises
            ob[j] = (xb[j] * np.float32(rb[j] >= drop)) * factor
        for j in range(hi - lo):
            pb[j] |= np.uint8(rb[j] >= drop) << shift


@_jit()
def keep_rows(st, block, pos, rows, n, drop, packed):
    """The keep mask 1{r >= drop} of `[rows, n]` with the stream's next rows*n uniforms, packed 8 rows to a byte,
    straight from the tempered block (it stays in cache); returns the new position."""
    p = pos
    for t in range(rows):
        ps, shift = packed[t // 8], np.uint8(t % 8)
        i = 0
        while i < n:
            p = _next(st, block, p)
            count = min(N - p, n - i)
            pb, rb = ps[i:i + count], block[p:p + count]
            for j in range(count):
                pb[j] |= np.uint8(rb[j] >= drop) << shift
            i += count
            p += count
    return p


@_jit()
def drop_rows(st, block, pos, x, drop, factor, out, packed, r):
    """DARE's drop of `x [T, n]` with the stream's next T*n uniforms (row-major, as torch.rand fills `[T, n]`),
    drawn a buffer `r` at a time: out = x * 1{r >= drop} * factor and the keep mask packed 8 rows to a byte;
    returns the new position."""
    rows, n = x.shape
    p = pos
    for t in range(rows):
        for start in range(0, n, r.size):
            stop = min(n, start + r.size)
            p = fill(st, block, p, r[:stop - start])
            _apply_drop(x[t, start:stop], out[t, start:stop], packed[t // 8, start:stop], r[:stop - start], drop,
                        factor, np.uint8(t % 8))
    return p


@_jit()
def fill(st, block, pos, out):
    """The stream's next out.size uniforms into `out` (1-D); returns the new position."""
    p, i, n = pos, 0, out.size
    while i < n:
        p = _next(st, block, p)
        count = min(N - p, n - i)
        out[i:i + count] = block[p:p + count]
        i += count
        p += count
    return p
