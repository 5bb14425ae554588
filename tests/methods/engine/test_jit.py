"""The numba loops (`jit`) against the PyTorch paths they replace: torch.rand's own stream, DARE's drop, exact
per-row order statistics and Model Breadcrumbs' band, to the bit, on ties, zeros, infinities and NaNs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.methods import sparse
from explorer.methods.engine import jit, kernels
from explorer.methods.engine.thresholds import kth_smallest_abs, kth_smallest_abs_rows

pytestmark = pytest.mark.skipif(jit.njit is None, reason="numba is not installed")


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32)


@pytest.mark.parametrize("seed,before", [(0, 0), (7, 5), (123, 624), (5, 1247)])
def test_stream_draws_what_torch_rand_draws_and_hands_the_generator_back(seed, before):
    """Sizes on both sides of the 624-word twist, from a fresh generator and from one already drawn from."""
    ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    torch.rand(before, generator=ours), torch.rand(before, generator=theirs)
    stream = jit.TorchStream(ours)
    for n in (1, 623, 624, 625, 3000, 1248):
        assert torch.equal(stream.fill(torch.empty(n)), torch.rand(n, generator=theirs))
    stream.sync()
    assert torch.equal(torch.rand(2000, generator=ours), torch.rand(2000, generator=theirs))


@pytest.mark.parametrize("drop", [0.0, 0.3, 0.5, 0.99])
@pytest.mark.parametrize("tasks,n", [(3, 5000), (11, 5000), (3, 3 * jit.CHUNK + 17)])
def test_stream_drop_has_the_bits_of_rand_then_the_eager_formula(drop, tasks, n):
    """x * 1{r >= p} * 1/(1-p) in float32, signed zeros included, the mask packed 8 tasks to a byte; a big tensor
    (uniforms drawn a buffer ahead in another thread) too."""
    gen = torch.Generator().manual_seed(tasks)
    x = torch.randn(tasks, n, generator=gen)
    x[0, :10] = -0.0
    stream, reference = jit.TorchStream(torch.Generator().manual_seed(1)), torch.Generator().manual_seed(1)
    out, packed = stream.drop(x, drop, 1.0 / (1.0 - drop))
    keep = torch.rand(x.shape, generator=reference) >= drop
    assert torch.equal(bits(out), bits(x * keep.to(x.dtype) * (1.0 / (1.0 - drop))))
    assert all(torch.equal(a, b) for a, b in zip(packed, kernels.pack(keep)))


def rows_of(kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(len(kind))
    if kind == "gaussian":
        return torch.randn(6, 30000, generator=gen) * torch.logspace(-3, 3, 6).unsqueeze(1)
    if kind == "ties":  # magnitudes from a few values: ties at every rank
        return torch.randint(-20, 21, (6, 30000), generator=gen).float()
    if kind == "zeros":  # a dropped task vector: most entries exactly 0
        return torch.randn(6, 30000, generator=gen) * (torch.rand(6, 30000, generator=gen) >= 0.7)
    if kind == "skewed":  # the strided sample (every 3rd entry) is not like the row: its brackets miss
        x = torch.randn(6, 30000, generator=gen)
        x[:, ::3] *= torch.tensor([1.0, 1.05, 1.2, 2.0, 10.0, 1000.0]).unsqueeze(1)
        return x
    x = torch.randn(6, 30000, generator=gen)  # "special": a NaN and an inf in some rows
    x[1, 17], x[2, 4], x[3, 9] = float("nan"), float("inf"), -float("inf")
    return x


@pytest.mark.parametrize("kind", ["gaussian", "ties", "zeros", "skewed", "special"])
@pytest.mark.parametrize("k", [1, 2, 9000, 24000, 29999, 30000])
def test_kth_smallest_abs_rows_is_the_counting_kernels_answer(kind, k):
    """The same values as the counting kernel (a NaN counts as the largest |x|; rank 30000 would be the NaN itself,
    which neither path is asked for: merges refuse non-finite task vectors first)."""
    if kind == "special" and k == 30000:
        k = 29999
    x = rows_of(kind)
    values, smaller = kth_smallest_abs_rows(x, k)
    expected, expected_smaller = kth_smallest_abs(lambda: [x], k, x.shape[1])
    assert torch.equal(bits(values), bits(expected)) and torch.equal(smaller, expected_smaller)
    clean = ~(x.isnan() | x.isinf()).any(dim=1)
    reference = np.partition(x[clean].abs().numpy(), k - 1, axis=1)[:, k - 1]
    assert values[clean].tolist() == reference.tolist()


def test_kth_smallest_abs_rows_leaves_rows_with_a_nan_in_reach_to_the_counting_kernel():
    x = rows_of("special")
    _, _, done = jit.kth_smallest_abs_rows(x, 30000)
    assert done.tolist() == [True, False, True, True, True, True]


@pytest.mark.parametrize("n,keep,remove", [(768, 0.15, 0.01), (3072, 0.15, 0.006), (100, 0.5, 0.0), (64, 1.0, 0.0),
                                           (500, 0.2, 0.3), (10, 0.3, 0.1)])
def test_band_edges_give_the_topk_band_on_the_rows_they_do(n, keep, remove):
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(40, n, generator=gen) * torch.logspace(-20, 20, 40).unsqueeze(1)
    n_remove, n_keep = sparse._band_counts(n, keep, remove)
    outer, inner, done = jit.band_edges(x, n_remove, n_keep)
    assert done.all()
    mask = (x.abs() >= outer.unsqueeze(1)) & (x.abs() < inner.unsqueeze(1))
    assert torch.equal(mask, sparse._band_topk(x, n_remove, n_keep))


def test_band_edges_leave_ties_across_an_edge_and_non_finite_rows_to_topk():
    x = torch.arange(1, 101, dtype=torch.float32).repeat(5, 1)  # ranks from the top: 100, 99, ...
    x[1, 0] = 96.0  # a second 96: the 5th and 6th largest tie across the outlier edge (n_remove 5)
    x[2, 0] = 76.0  # a second 76: the 25th and 26th tie across the outer edge (5 + 20)
    x[3, 50], x[4, 50] = float("nan"), float("inf")
    _, _, done = jit.band_edges(x, 5, 20)
    assert done.tolist() == [True, False, False, False, False]


@pytest.fixture
def jit_small(monkeypatch):
    """The compiled loops and the fused kernels (uncompiled) on test-sized tensors."""
    monkeypatch.setattr(kernels, "MODE", "eager")
    monkeypatch.setattr(kernels, "MIN_NUMEL", 64)


@pytest.mark.parametrize("shape", [(4, 37, 29), (4, 64, 96), (3, 2, 5, 700)])
def test_breadcrumb_mask_mixes_band_edges_and_topk_rows_exactly(jit_small, shape):
    gen = torch.Generator().manual_seed(sum(shape))
    d = torch.randint(-6, 7, shape, generator=gen).float()  # many rows tied at an edge
    d[0] = torch.randn(shape[1:], generator=gen)  # and some that are not
    rows = d.reshape(-1, shape[-1])
    n_remove, n_keep = sparse._band_counts(shape[-1], 0.3, 0.05)
    assert not jit.band_edges(rows, n_remove, n_keep)[2].all()
    assert torch.equal(sparse.breadcrumb_mask(d, 0.3, 0.05), sparse._band_topk(d, n_remove, n_keep))


@pytest.mark.parametrize("shape", [(4, 37, 29), (4, 64, 96), (3, 2, 5, 700)])
@pytest.mark.parametrize("remove", [0.0, 0.05])
def test_breadcrumb_sum_through_tied_rows_has_the_bits_of_the_topk_path(jit_small, monkeypatch, shape, remove):
    """Rows tied at an edge reach the fused sum as a copy with topk's left-out entries zeroed: the same sum and
    mask as topk's mask then torch.where and sum."""
    gen = torch.Generator().manual_seed(sum(shape))
    d = torch.randint(1, 9, shape, generator=gen).float() * torch.where(torch.rand(shape, generator=gen) < 0.5, -1, 1)
    d[0] = torch.randn(shape[1:], generator=gen)
    total, mask = sparse.breadcrumb_sum(d, 0.3, remove, kernels.Scratch([d]))
    assert isinstance(mask, kernels.PackedMask)  # the fused pass ran
    monkeypatch.setattr(jit, "njit", None)
    expected_total, expected_mask = sparse.breadcrumb_sum(d, 0.3, remove)
    assert torch.equal(bits(total), bits(expected_total)) and torch.equal(mask.unpack(), expected_mask)


def merge_bits(method: str, tv, **params):
    """(delta bits, unpacked masks) of one merge."""
    import explorer as ex
    result = ex.merge(tv, method, **params)
    masks = {t: {n: kernels.as_bool(m) if not isinstance(m, torch.Tensor) else m for n, m in tm.items()}
             for t, tm in (result.masks or {}).items()}
    return {n: bits(v) for n, v in result.delta.items()}, masks


def assert_same(a, b):
    assert a[0].keys() == b[0].keys() and all(torch.equal(a[0][n], b[0][n]) for n in a[0])
    assert all(torch.equal(torch.as_tensor(a[1][t][n]), torch.as_tensor(b[1][t][n])) for t in a[1] for n in a[1][t])


@pytest.mark.parametrize("method,params", [
    ("breadcrumbs", {"keep": 0.15, "remove": 0.01}),
    ("breadcrumbs", {"keep": 0.5, "remove": 0.0}),
    ("dare", {"drop": 0.5, "base": "ties", "density": 0.5}),
    ("dare", {"drop": 0.3, "base": "task_arithmetic", "seed": 3}),
    ("ties", {"density": 0.2, "scope": "tensor"}),
])
def test_merges_with_the_compiled_loops_have_the_bits_of_the_pytorch_paths(jit_small, monkeypatch, tv, method,
                                                                          params):
    ours = merge_bits(method, tv, **params)
    monkeypatch.setattr(jit, "njit", None)  # as without numba
    assert_same(ours, merge_bits(method, tv, **params))
