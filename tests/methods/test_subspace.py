"""Subspace merges (TSV, Iso-C, Iso-CTS, CART): hand-computed cases and the invariants their papers rest on."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.methods import spectral
from explorer.methods.subspace import iso_cts_sizes
from tests.conftest import tiny_state_dicts


def matrices(num_tasks: int, m: int = 12, n: int = 9, seed: int = 0) -> ex.TaskVectors:
    """float64 task vectors of one matrix `w` [m, n] and one bias `b` [m] (base = 0)."""
    gen = torch.Generator().manual_seed(seed)
    deltas = {"w": torch.randn(num_tasks, m, n, generator=gen, dtype=torch.float64),
              "b": torch.randn(num_tasks, m, generator=gen, dtype=torch.float64)}
    return ex.TaskVectors([f"t{i}" for i in range(num_tasks)], {n: torch.zeros(d.shape[1:]) for n, d in
                                                                 deltas.items()}, deltas)


def float64(tv: ex.TaskVectors) -> ex.TaskVectors:
    return ex.TaskVectors(tv.tasks, tv.base, {n: d.double() for n, d in tv.items()})


def singular_values(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(x)


@pytest.mark.parametrize("mode", [{"rank_mode": "fixed", "rank": 1.0}, {"rank_mode": "auto"}])
def test_tsv_with_one_task_and_full_rank_returns_that_task_vector(mode):
    tv = matrices(1)
    res = ex.merge(tv, "tsv", scale=1.0, **mode)
    assert torch.allclose(res.delta["w"], tv["w"][0], atol=1e-12)
    assert torch.allclose(res.delta["b"], tv["b"][0])


def test_tsv_merged_singular_values_are_exactly_the_tasks_kept_ones():
    tv = matrices(3)  # r = 9, k = int(9 / 3) = 3 per task
    res = ex.merge(tv, "tsv", scale=1.0)
    kept = torch.cat([singular_values(tv["w"][t])[:3] for t in range(3)]).sort(descending=True).values
    assert torch.allclose(singular_values(res.delta["w"]), kept, atol=1e-12)


def test_tsv_equals_the_official_zero_padded_buffers_and_scales_the_averaged_vectors():
    tv = matrices(4, m=10, n=7)  # r = 7, k = 1: three of the seven slots stay zero, as in the official code
    U, S, Vh = torch.linalg.svd(tv["w"], full_matrices=False)
    sum_u, sum_s, sum_v = torch.zeros(10, 7, dtype=torch.float64), torch.zeros(7, dtype=torch.float64), \
        torch.zeros(7, 7, dtype=torch.float64)
    for t in range(4):
        sum_u[:, t], sum_s[t], sum_v[t] = U[t, :, 0], S[t, 0], Vh[t, 0]
    uu, _, vu = torch.linalg.svd(sum_u, full_matrices=False)
    uv, _, vv = torch.linalg.svd(sum_v, full_matrices=False)
    expected = uu @ vu @ torch.diag(sum_s) @ uv @ vv
    res = ex.merge(tv, "tsv", scale=0.7)
    assert torch.allclose(res.delta["w"], 0.7 * expected, atol=1e-12)
    assert torch.allclose(res.delta["b"], 0.7 * tv["b"].mean(dim=0))


def test_iso_c_flattens_the_spectrum_and_keeps_the_nuclear_norm_of_the_sum():
    tv = matrices(3)
    res = ex.merge(tv, "iso_c", scale=1.0)
    s = singular_values(res.delta["w"])
    total = tv["w"].sum(dim=0)
    assert torch.allclose(s, s.mean().expand_as(s), atol=1e-12)
    assert torch.allclose(s.sum(), singular_values(total).sum())
    assert torch.allclose(res.delta["b"], tv["b"].mean(dim=0))


def test_iso_cts_with_common_one_equals_iso_c():
    tv = matrices(3)
    cts = ex.merge(tv, "iso_cts", scale=1.3, common=1.0).delta
    iso = ex.merge(tv, "iso_c", scale=1.3).delta
    assert all(torch.allclose(cts[n], iso[n], atol=1e-12) for n in iso)


@pytest.mark.parametrize("r,tasks,common,expected", [
    (768, 8, 0.8, (616, 19)), (512, 8, 0.8, (408, 13)), (50, 8, 0.8, (42, 1)),
    (1024, 8, 0.8, (816, 26)), (257, 8, 0.8, (209, 6)),  # 6.5 rounds to 6 (banker's rounding)
    (64, 5, 0.0, (4, 12)),  # the official rounding would give c < 0 here; the tasks get r // T instead
])
def test_iso_cts_subspace_sizes_follow_the_official_rounding(r, tasks, common, expected):
    c, d = iso_cts_sizes(r, tasks, common)
    assert (c, d) == expected and tasks * d + c == r


def test_iso_cts_keeps_each_task_a_direction_outside_the_common_subspace():
    tv = matrices(3)
    res = ex.merge(tv, "iso_cts", scale=1.0, common=0.5)  # r = 9: c = 3, d = 2
    s = singular_values(res.delta["w"])
    assert torch.allclose(s, s.mean().expand_as(s), atol=1e-12)  # isotropic too
    assert not torch.allclose(res.delta["w"], ex.merge(tv, "iso_c", scale=1.0).delta["w"])


@pytest.mark.parametrize("scale", [0.0, 1.0, 2.5])
def test_cart_with_full_rank_is_the_weight_average_for_any_lambda(scale):
    base, experts = tiny_state_dicts(num_tasks=3)
    tv = float64(ex.task_vectors(base, experts, device="cpu"))
    res = ex.merge(tv, "cart", rank=1.0, scale=scale)
    for name, d in tv.items():
        assert torch.allclose(res.delta[name], d.mean(dim=0), atol=1e-12), name


def test_cart_is_the_average_plus_lambda_times_the_low_rank_deviations():
    base, experts = tiny_state_dicts(num_tasks=3)
    tv = float64(ex.task_vectors(base, experts, device="cpu"))
    res = ex.merge(tv, "cart", rank=0.25, scale=2.0)
    name = "transformer.resblocks.0.mlp.c_fc.weight"  # [32, 16]: r = 16, k = 4
    d = tv[name]
    mean = d.mean(dim=0)
    lr = 0
    for t in range(3):
        U, S, Vh = torch.linalg.svd(d[t] - mean, full_matrices=False)
        lr = lr + U[:, :4] @ torch.diag(S[:4]) @ Vh[:4]
    assert torch.allclose(res.delta[name], mean + 2.0 * lr, atol=1e-12)
    assert torch.allclose(res.delta["positional_embedding"], tv["positional_embedding"].mean(dim=0))
    assert torch.allclose(res.delta["transformer.resblocks.0.attn.in_proj_bias"],
                          tv["transformer.resblocks.0.attn.in_proj_bias"].mean(dim=0))


def test_changing_scale_reuses_the_cached_svds(monkeypatch):
    tv = matrices(3)
    calls = []
    real = torch.linalg.svd
    monkeypatch.setattr(torch.linalg, "svd", lambda *a, **k: calls.append(1) or real(*a, **k))
    for method in ("tsv", "iso_c", "iso_cts"):
        ex.merge(tv, method, scale=1.0)
        first = len(calls)
        ex.merge(tv, method, scale=2.0)
        assert len(calls) == first, method
    before = len(calls)
    ex.merge(tv, "iso_cts", scale=1.0, common=0.5)  # a new `common`: the residuals' SVDs, not the sum's again
    assert len(calls) - before == 3  # the residuals (one batched call) and the two polar factors
    spectral.clear_cache(tv)
    ex.merge(tv, "iso_c", scale=1.0)
    assert len(calls) - before == 4  # the sum's SVD again


def test_bad_parameters_name_the_range():
    tv = matrices(2)
    with pytest.raises(ValueError, match="common"):
        ex.merge(tv, "iso_cts", common=1.5)
    with pytest.raises(ValueError, match="rank_mode"):
        ex.merge(tv, "tsv", rank_mode="half")


@pytest.mark.parametrize("m,n", [(12, 9), (6, 11), (8, 8)])  # tall, wide (the complement shortcut), square
def test_iso_cts_equals_the_official_steps(m, n):
    tv = matrices(3, m=m, n=n)
    d, r, T = tv["w"], min(m, n), 3
    c, k = iso_cts_sizes(r, T, 0.5)
    U, S, Vh = torch.linalg.svd(d.sum(dim=0), full_matrices=False)
    cu, cs, cv = torch.zeros(m, r, dtype=d.dtype), torch.zeros(r, dtype=d.dtype), torch.zeros(r, n, dtype=d.dtype)
    for t in range(T):
        u, s, vh = torch.linalg.svd(d[t] - U[:, :c] @ U[:, :c].T @ d[t], full_matrices=False)
        cu[:, t * k:(t + 1) * k], cs[t * k:(t + 1) * k], cv[t * k:(t + 1) * k] = u[:, :k], s[:k], vh[:k]
    cu[:, T * k:], cs[T * k:], cv[T * k:] = U[:, :c], S[:c], Vh[:c]

    def polar(a):
        p, _, q = torch.linalg.svd(a, full_matrices=False)
        return p @ q

    expected = cs.mean() * polar(cu) @ polar(cv)
    assert torch.allclose(ex.merge(tv, "iso_cts", scale=1.0, common=0.5).delta["w"], expected, atol=1e-12)
