"""The fused threshold merges (`fused`, `kernels`, `thresholds`) against the plain blocks they replace:
the same bits for ties in |tau|, all-zero tensors, density 0 and 1, both scopes, and T on both sides of 16."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.methods import blocks
from explorer.methods.engine import kernels
from explorer.methods.engine.fused import Drop, drop_one, masked_sum_fused, ties_fused
from explorer.methods.engine.kernels import ordered_sum
from explorer.methods.engine.thresholds import kth_smallest_abs, topk_rows


@pytest.fixture(autouse=True)
def eager_small(monkeypatch):
    """The kernels, uncompiled, on test-sized tensors (the compiled ones are checked in bench/)."""
    monkeypatch.setattr(kernels, "MODE", "eager")
    monkeypatch.setattr(kernels, "MIN_NUMEL", 64)


def plain(fn, *args, **kwargs):
    """The reference: the same block with the fused path switched off."""
    mode = kernels.MODE
    kernels.MODE = "off"
    try:
        return fn(*args, **kwargs)
    finally:
        kernels.MODE = mode


def deltas(tasks: int, seed: int = 0, ties: bool = False, zero: bool = False) -> dict[str, torch.Tensor]:
    """Tensors with column counts off the 64-column blocks; `ties`: magnitudes from a few values with mixed
    signs (exact zero votes); `zero`: one all-zero tensor."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {"a": (37, 29), "b": (300,), "c": (5, 64), "d": (3,)}
    out = {}
    for name, shape in shapes.items():
        if ties:
            x = torch.randint(-3, 4, (tasks, *shape), generator=gen).float() * 0.25
        else:
            spread = torch.logspace(-2, 1, tasks).reshape(-1, *[1] * len(shape))
            x = torch.randn((tasks, *shape), generator=gen) * spread
        out[name] = x
    if zero:
        out["c"] = torch.zeros_like(out["c"])
    return out


def same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    a = {n: kernels.as_bool(x) for n, x in a.items()}  # the fused path keeps big masks packed
    for n in a:
        assert a[n].dtype == b[n].dtype and torch.equal(a[n], b[n]), n
        assert torch.equal(a[n].view(torch.uint8) if a[n].dtype != torch.bool else a[n],
                           b[n].view(torch.uint8) if b[n].dtype != torch.bool else b[n]), f"{n}: bits differ"


CASES = [(t, ties, zero) for t in (1, 3, 8, 17) for ties, zero in ((False, False), (True, False), (True, True))]


@pytest.mark.parametrize("tasks,ties,zero", CASES)
@pytest.mark.parametrize("scope", ["global", "tensor"])
@pytest.mark.parametrize("density", [0.0, 0.2, 0.5, 1.0])
def test_ties_fused_matches_plain_blocks(tasks, ties, zero, scope, density):
    d = deltas(tasks, seed=tasks, ties=ties, zero=zero)
    for sign, aggregate in (("mass", "mean"), ("count", "sum")):
        got = ties_fused(d, density, sign, aggregate, scope)
        want = plain(blocks.ties_vector, d, density, sign, aggregate, scope)
        same(got[0], want[0])
        same(got[1], want[1])


@pytest.mark.parametrize("tasks,ties,zero", CASES)
@pytest.mark.parametrize("density", [0.0, 0.5, 1.0])
def test_ties_over_a_drop_matches_ties_over_the_dropped_task_vectors(tasks, ties, zero, density):
    """DARE + TIES reads x * 1{kept} * factor through the packed keep masks (`fused.Drop`), in the kernels, their
    tails and the threshold's samples and candidates: the plain blocks on the dropped task vectors, to the bit."""
    d = deltas(tasks, seed=tasks + 1, ties=ties, zero=zero)
    gen, factor = torch.Generator().manual_seed(tasks), 1.0 / 0.6
    keep = {n: kernels.pack((torch.rand(x.shape, generator=gen) >= 0.4).reshape(tasks, -1)) for n, x in d.items()}
    dropped = {n: x * kernels.PackedMask(keep[n], tasks, x.shape[1:]).unpack().to(x.dtype) * factor
               for n, x in d.items()}
    for sign, aggregate in (("mass", "sum"), ("count", "mean")):
        got = ties_fused(d, density, sign, aggregate, "global", Drop(keep, factor))
        want = plain(blocks.ties_vector, dropped, density, sign, aggregate, "global")
        same(got[0], want[0])
        same(got[1], want[1])


@pytest.mark.parametrize("tasks,ties,zero", CASES)
@pytest.mark.parametrize("scope", ["global", "tensor"])
@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_magnitude_fused_matches_plain_blocks(tasks, ties, zero, scope, density):
    d = deltas(tasks, seed=tasks + 1, ties=ties, zero=zero)
    total, masks = masked_sum_fused(d, density, scope)
    ref_masks = plain(blocks.keep_topk, d, density, scope)
    same(masks, ref_masks)
    same(total, plain(blocks.task_sum, plain(blocks.apply_masks, d, ref_masks)))
    same(blocks.keep_topk(d, density, scope), ref_masks)


def test_negative_majority_re_merges_zero_votes():
    """Zero votes take the model's majority sign: with a negative majority the fused pass (run with +1) must
    re-merge the tensor where a tie of +a and -a decides which entries survive."""
    x = -torch.ones(2, 200)
    x[0, :3], x[1, :3] = 2.0, -2.0  # exact zero votes, a non-zero trimmed entry each
    d = {"w": x}
    got = ties_fused(d, 1.0, "mass", "sum", "global")
    want = plain(blocks.ties_vector, d, 1.0, "mass", "sum", "global")
    same(got[0], want[0])
    assert got[0]["w"][:3].tolist() == [-2.0] * 3


@pytest.mark.parametrize("tasks", [1, 2, 8, 15, 16, 17, 20, 33, 64])
def test_ordered_sum_has_the_bits_of_torch_sum_dim0(tasks):
    gen = torch.Generator().manual_seed(tasks)
    x = torch.randn(tasks, 4096, generator=gen) * torch.logspace(-4, 4, tasks).unsqueeze(1)
    assert torch.equal(ordered_sum(list(x)), x.sum(dim=0))


@pytest.mark.parametrize("k", [1, 7, 500, 999, 1000])
def test_kth_smallest_abs_is_exact_with_ties_and_across_parts(k):
    gen = torch.Generator().manual_seed(k)
    parts = [torch.randint(-20, 21, (3, n), generator=gen).float() for n in (400, 1, 599)]
    values, smaller = kth_smallest_abs(lambda: parts, k, 1000)
    flat = torch.cat(parts, dim=1).abs().numpy()
    expected = np.partition(flat, k - 1, axis=1)[:, k - 1]
    assert values.tolist() == expected.tolist()
    assert smaller.tolist() == (flat < expected[:, None]).sum(axis=1).tolist()


@pytest.mark.parametrize("k", [1, 5999, 6000, 6001, 6002, 10000])
def test_kth_smallest_abs_is_exact_when_most_entries_are_zero(k):
    """A dropped task vector is 60 % exact zeros: the k-th value is 0 up to rank 6000 (counted, not gathered),
    then the smallest non-zero magnitudes."""
    gen = torch.Generator().manual_seed(k)
    x = torch.randn(2, 10000, generator=gen) * (torch.rand(2, 10000, generator=gen) >= 0.6)
    x[:, :6000], x[:, 6000:] = 0.0, x[:, 6000:] + torch.where(x[:, 6000:] >= 0, 1e-3, -1e-3)
    values, smaller = kth_smallest_abs(lambda: [x[:, :3000], x[:, 3000:]], k, 10000)
    flat = x.abs().numpy()
    expected = np.partition(flat, k - 1, axis=1)[:, k - 1]
    assert values.tolist() == expected.tolist()
    assert smaller.tolist() == (flat < expected[:, None]).sum(axis=1).tolist()
    assert (values == 0).all() == (k <= 6000)


def test_packed_mask_reads_each_task_and_the_whole_mask():
    """A PackedMask gives back every task's bool mask (T on both sides of 8) and the whole stack."""
    gen = torch.Generator().manual_seed(3)
    for tasks in (1, 8, 11):
        mask = torch.rand((tasks, 4, 5), generator=gen) > 0.5
        packed = kernels.PackedMask(kernels.pack(mask.reshape(tasks, -1)), tasks, (4, 5))
        assert packed.shape == mask.shape and torch.equal(packed.unpack(), mask)
        for t in range(tasks):
            assert torch.equal(packed[t], mask[t])
        with pytest.raises(IndexError):
            packed[tasks]


def test_results_keep_big_masks_packed_and_their_views_are_the_plain_masks():
    """TIES' and magnitude's results hold the fused masks packed (1/8 of the bool bytes); each task's view reads
    the same masks as the plain blocks give."""
    import explorer as ex
    from explorer.taskvec import TaskVectors

    d = deltas(3)
    tv = TaskVectors(["a", "b", "c"], {n: torch.zeros(x.shape[1:]) for n, x in d.items()}, d)
    for method in ("ties", "magnitude"):
        got, ref = ex.merge(tv, method, density=0.3), plain(ex.merge, tv, method, density=0.3)
        assert isinstance(got.masks["a"].stacked["a"], kernels.PackedMask)
        for t in tv.tasks:
            assert got.masks[t].keys() == ref.masks[t].keys()
            for n in d:
                assert torch.equal(got.masks[t][n], ref.masks[t][n]), (method, t, n)


@pytest.mark.parametrize("tasks,ties,zero", CASES)
def test_emr_tall_and_consensus_fused_match_plain_blocks(tasks, ties, zero):
    """EMR's unified vector, masks and rescalers, TALL's masks (a lambda per task) and Consensus' kept vector: the
    same bits through the one-pass kernels as through the plain blocks (ties and zero sums included)."""
    import explorer as ex
    from explorer.taskvec import TaskVectors

    d = deltas(tasks, ties=ties, zero=zero)
    tv = TaskVectors([f"t{i}" for i in range(tasks)], {n: torch.zeros(x.shape[1:]) for n, x in d.items()}, d)
    got, ref = ex.merge(tv, "emr"), plain(ex.merge, tv, "emr")
    same(got.delta, ref.delta)
    assert got.task_scales == ref.task_scales
    for t in tv.tasks:
        same(dict(got.masks[t]), dict(ref.masks[t]))
    shared = blocks.task_sum(d)
    lams = torch.linspace(0.2, 0.6, tasks)
    same(blocks.tall_mask(d, shared, lams), plain(blocks.tall_mask, d, shared, lams))
    for k in (1, 2):
        kept, masks = blocks.consensus_vector(d, shared, 0.4, k)
        ref_kept, ref_masks = plain(blocks.consensus_vector, d, shared, 0.4, k)
        same(kept, ref_kept)
        same(masks, ref_masks)


def test_compiling_on_a_cpu_machine_with_a_cuda_toolkit_prints_no_cuda_warning(tmp_path):
    """With CUDA_HOME set and no GPU, torch warns "No CUDA runtime is found" when the compiler's C++ helper is
    imported; the kernels import it quietly, so notebooks' outputs stay clean."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "CUDA_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    plain = "import torch.utils.cpp_extension"
    quiet = ("from explorer.methods.engine import kernels; kernels.import_compiler_quietly(); "
             "import torch.utils.cpp_extension")
    root = Path(__file__).resolve().parents[3]
    runs = {code: subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                                 cwd=root) for code in (plain, quiet)}
    assert "No CUDA runtime is found" in runs[plain].stderr  # the warning this guards against is real here
    assert "No CUDA runtime is found" not in runs[quiet].stderr


@pytest.mark.parametrize("drop", [0.0, 0.3, 0.5, 0.9, 0.99])
def test_dare_drop_kernel_has_the_bits_of_the_eager_formula(drop):
    """The fused drop keeps d * 1{r >= p} * 1/(1-p) to the bit, signed zeros included, with the mask packed (the
    kernel's function here; `bench/bench_threshold_merges.py --check` compares the compiled one at full size)."""
    gen = torch.Generator().manual_seed(int(drop * 100))
    d, draw = torch.randn(3, 40000, generator=gen), torch.rand(3, 40000, generator=gen)
    factor = 1.0 / (1.0 - drop)
    out, mask = drop_one(d, draw, drop, factor, True)
    keep = draw >= drop
    assert isinstance(mask, kernels.PackedMask) and torch.equal(mask.unpack(), keep)
    assert torch.equal(out.view(torch.int32), (d * keep.to(d.dtype) * factor).view(torch.int32))


@pytest.mark.parametrize("n,density", [(1000, 0.01), (6400, 0.015), (6400, 0.2), (50000, 0.5)])
def test_topk_rows_keeps_the_entries_a_sorted_topk_keeps_among_ties(n, density):
    """topk_rows asks for an unsorted topk; on heavily tied rows it keeps exactly the entries PEFT's sorted
    torch.topk keeps, on both sides of CPU topk's switch from partial sort to nth_element (k * 64 <= n)."""
    x = torch.randint(-5, 6, (3, n), generator=torch.Generator().manual_seed(n)).float()
    k = int(density * n)
    expected = torch.zeros_like(x, dtype=torch.bool).scatter_(1, x.abs().topk(k, dim=1).indices, True)
    assert torch.equal(topk_rows(x, density), expected)


def sorted_magnitudes(d: dict[str, torch.Tensor]):
    tasks = next(iter(d.values())).shape[0]
    return lambda: torch.cat([x.reshape(tasks, -1).abs() for x in d.values()], dim=1).sort(dim=1).values


@pytest.mark.parametrize("tasks,ties,zero", CASES)
@pytest.mark.parametrize("density", [0.0, 0.01, 0.2, 0.5, 0.99, 1.0])
def test_the_threshold_from_sorted_magnitudes_is_the_selected_one(tasks, ties, zero, density):
    """A slider re-merge looks the global threshold up in magnitudes sorted once: TIES and magnitude pruning get
    the bits of the selection pass, ties at the threshold included."""
    d = deltas(tasks, seed=tasks + 2, ties=ties, zero=zero)
    ordered = sorted_magnitudes(d)
    for sign, aggregate in (("mass", "mean"), ("count", "sum")):
        got, want = ties_fused(d, density, sign, aggregate, "global", ordered=ordered), \
            ties_fused(d, density, sign, aggregate, "global")
        same(got[0], want[0])
        same(got[1], {n: kernels.as_bool(m) for n, m in want[1].items()})
    total, masks = masked_sum_fused(d, density, "global", ordered)
    ref_total, ref_masks = masked_sum_fused(d, density, "global")
    same(total, ref_total)
    same(masks, {n: kernels.as_bool(m) for n, m in ref_masks.items()})


def test_ties_and_magnitude_keep_the_sorted_magnitudes_of_small_zoos_only(tiny_tv, monkeypatch):
    import explorer as ex
    from explorer.methods import sparse

    assert sparse.ordered_magnitudes(tiny_tv) is not None
    first = ex.merge(tiny_tv, "ties", density=0.3)
    monkeypatch.setattr(sparse, "ORDERED_MAX", 0)
    assert sparse.ordered_magnitudes(tiny_tv) is None
    again = ex.merge(tiny_tv, "ties", density=0.3)
    assert all(torch.equal(first.delta[n], again.delta[n]) for n in first.delta)
