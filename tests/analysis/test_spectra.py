"""Spectral analyses on task vectors built so the answers are known: shared or orthogonal singular subspaces,
flat or rank-one spectra."""
from __future__ import annotations

import math

import pytest
import torch

import explorer as ex
from explorer import analysis as A
from explorer import plots


def orthonormal(m: int, k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(m, k, generator=gen, dtype=torch.float64)).Q


def tv_of(*matrices: torch.Tensor) -> ex.TaskVectors:
    deltas = {"w": torch.stack(matrices), "b": torch.ones(len(matrices), matrices[0].shape[0], dtype=torch.float64)}
    return ex.TaskVectors([f"t{i}" for i in range(len(matrices))], {n: torch.zeros(d.shape[1:]) for n, d in
                                                                    deltas.items()}, deltas)


def test_same_output_directions_overlap_fully_though_the_weights_are_orthogonal():
    # tau_a = u v_a^T and tau_b = u v_b^T with v_a orthogonal to v_b: weight cosine 0, the same left subspace
    u, v = orthonormal(6, 1, 0), orthonormal(5, 2, 1)
    tv = tv_of(u @ v[:, :1].T, u @ v[:, 1:].T)
    cos = float(A.cosine(ex.TaskVectors(tv.tasks, {"w": tv.base["w"]}, {"w": tv["w"]})).iloc[0, 1])
    assert abs(cos) < 1e-6  # the cosine analysis sums in float32
    overlap = A.subspace_overlap(tv, k=1)
    assert overlap.iloc[0, 1] == pytest.approx(1.0) and overlap.iloc[0, 0] == pytest.approx(1.0)
    assert overlap.attrs["chance"] == pytest.approx(1 / 6)


def test_orthogonal_output_subspaces_do_not_overlap_and_have_no_singular_interference():
    q, v = orthonormal(8, 4, 2), orthonormal(6, 4, 3)
    a = q[:, :2] @ torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)) @ v[:, :2].T
    b = q[:, 2:] @ torch.diag(torch.tensor([2.0, 0.5], dtype=torch.float64)) @ v[:, 2:].T
    tv = tv_of(a, b)
    assert A.subspace_overlap(tv, k=2).iloc[0, 1] == pytest.approx(0.0, abs=1e-12)
    sti = A.interference(tv, k=2).set_index("param")
    assert sti.loc["w", "before"] == pytest.approx(0.0, abs=1e-10)


def test_interference_of_shared_directions_vanishes_after_orthogonalisation():
    u, v = orthonormal(8, 3, 4), orthonormal(6, 3, 5)
    shared = u[:, :1] @ v[:, :1].T
    tv = tv_of(shared + 0.5 * u[:, 1:2] @ v[:, 1:2].T, shared + 0.5 * u[:, 2:3] @ v[:, 2:3].T)
    sti = A.interference(tv).set_index("param")  # r = 6, k = r / T = 3 per task
    assert sti.loc["w", "before"] > 1.0
    assert sti.loc["w", "after"] == pytest.approx(0.0, abs=1e-10)
    assert sti.loc["w", "top_k"] == 3 and list(sti.index) == ["w"]  # the bias is not a matrix


def test_effective_rank_of_flat_and_rank_one_spectra():
    assert A.spectra.effective_rank(torch.ones(7)) == pytest.approx(7.0)
    assert A.spectra.effective_rank(torch.tensor([2.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert A.spectra.effective_rank(torch.zeros(3)) == 0.0


def test_spectrum_and_summary_give_the_singular_values_and_the_top_k_energy():
    q, v = orthonormal(6, 3, 6), orthonormal(4, 3, 7)
    a = q @ torch.diag(torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)) @ v.T
    tv = tv_of(a, 2 * a)
    res = ex.merge(tv, "task_arithmetic", scale=1.0)
    spec = A.spectrum(tv, "w", res)
    assert list(spec.columns) == ["t0", "t1", "merged"] and list(spec.index) == [1, 2, 3, 4]
    assert spec["t0"].tolist() == pytest.approx([4.0, 2.0, 1.0, 0.0], abs=1e-9)
    assert spec["merged"].tolist() == pytest.approx([12.0, 6.0, 3.0, 0.0], abs=1e-5)
    summary = A.spectral_summary(tv, res, top=0.25).set_index("task")  # k = int(0.25 * 4) = 1
    assert summary.loc["t0", "energy_top"] == pytest.approx(16 / 21)
    assert summary.loc["t1", "effective_rank"] == pytest.approx(summary.loc["t0", "effective_rank"])
    p = torch.tensor([4.0, 2.0, 1.0]) / 7
    assert summary.loc["merged", "effective_rank"] == pytest.approx(math.exp(-float((p * p.log()).sum())), rel=1e-5)


def test_per_layer_overlap_and_bad_names(tiny_tv):
    per_layer = A.subspace_overlap(tiny_tv, by="layer")
    assert set(per_layer.layer) == {"embed", "block.0", "block.1", "post"}
    diagonal = per_layer.query("task_a == task_b").overlap.tolist()
    assert diagonal == pytest.approx([1.0] * len(diagonal), rel=1e-5)  # float32 singular vectors
    with pytest.raises(ValueError, match="not a matrix"):
        A.spectrum(tiny_tv, "ln_post.weight")
    with pytest.raises(KeyError, match="no parameter"):
        A.spectrum(tiny_tv, "nope")


def test_spectral_figures_draw_the_tables(tiny_tv):
    res = ex.merge(tiny_tv, "tsv")
    fig = plots.spectrum_lines(A.spectrum(tiny_tv, "transformer.resblocks.0.mlp.c_fc.weight", res))
    assert [t.name for t in fig.data] == tiny_tv.tasks + ["merged"] and fig.layout.yaxis.type == "log"
    assert fig.data[-1].line.dash == "dash"
    overlap = plots.subspace_overlap_map(A.subspace_overlap(tiny_tv))
    assert "random subspaces" in overlap.layout.title.text
    sti = plots.singular_interference(A.interference(tiny_tv))
    assert [t.name for t in sti.data] == ["tasks' singular vectors as they are", "after TSV's orthogonalisation"]
    ranks = plots.effective_ranks(A.spectral_summary(tiny_tv, res))
    assert [t.name for t in ranks.data] == tiny_tv.tasks + ["merged"]
    assert ranks.data[0].x[0] == "positional_embedding" and "0.attn.in_proj" in ranks.data[0].x
