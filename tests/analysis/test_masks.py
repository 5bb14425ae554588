"""Mask density, overlaps and usage histograms of hand-built masks.

Flattened masks over the six entries of conftest.py's model (embed | block.0 | block.1):
    a = [1, 1 | 0, 0 | 1, 0]
    b = [1, 0 | 1, 0 | 1, 0]
    c = [1, 0 | 0, 0 | 0, 1]
Tasks keeping each entry: [3, 1 | 1, 0 | 2, 1].
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import explorer as ex
from tests.analysis.conftest import NAMES

MASKS = {"a": [1, 1, 0, 0, 1, 0], "b": [1, 0, 1, 0, 1, 0], "c": [1, 0, 0, 0, 0, 1]}


@pytest.fixture
def masked(hand_tv) -> ex.MergeResult:
    masks = {t: {n: torch.tensor(m[2 * i:2 * i + 2], dtype=torch.bool) for i, n in enumerate(NAMES)}
             for t, m in MASKS.items()}
    delta = {n: d.sum(0) for n, d in hand_tv.items()}
    return ex.MergeResult(tv=hand_tv, delta=delta, masks=masks, method="hand")


def test_density(masked):
    dens = ex.analysis.mask_density(masked)
    assert list(dens.columns) == ["task", "kept", "total", "density"]
    assert dens.kept.tolist() == [3, 3, 2] and dens.total.tolist() == [6, 6, 6]
    assert dens.density.tolist() == pytest.approx([0.5, 0.5, 1 / 3])
    layered = ex.analysis.mask_density(masked, by="layer")
    assert list(layered.columns) == ["layer", "task", "kept", "total", "density"]
    assert layered[layered.task == "a"].kept.tolist() == [2, 0, 1]
    assert layered[layered.task == "c"].density.tolist() == [0.5, 0, 0.5]


def test_overlap_intersection_and_jaccard(masked):
    inter = ex.analysis.mask_overlap(masked, metric="intersection")
    np.testing.assert_array_equal(inter.to_numpy(), [[3, 2, 1], [2, 3, 1], [1, 1, 2]])
    assert list(inter.index) == ["a", "b", "c"]
    jac = ex.analysis.mask_overlap(masked)
    np.testing.assert_allclose(jac.to_numpy(), [[1, 0.5, 0.25], [0.5, 1, 0.25], [0.25, 0.25, 1]])
    layered = ex.analysis.mask_overlap(masked, metric="jaccard", by="layer")
    assert list(layered.columns) == ["layer", "task_a", "task_b", "jaccard"]
    block0 = layered[layered.layer == "block.0"].set_index(["task_a", "task_b"]).jaccard
    assert block0["a", "b"] == 0  # a keeps nothing in block.0, b one entry
    assert np.isnan(block0["a", "c"])  # both empty: undefined


def test_usage_histogram_catastrophic_selfish_shared(masked):
    usage = ex.analysis.mask_usage(masked)
    assert list(usage.columns) == ["n_tasks", "count", "fraction", "category"]
    assert usage.n_tasks.tolist() == [0, 1, 2, 3]
    assert usage["count"].tolist() == [1, 3, 1, 1]
    assert usage.fraction.tolist() == pytest.approx([1 / 6, 3 / 6, 1 / 6, 1 / 6])
    assert usage.category.tolist() == ["catastrophic", "selfish", "shared", "shared"]


def test_usage_per_layer(masked):
    usage = ex.analysis.mask_usage(masked, by="layer")
    assert list(usage.columns) == ["layer", "n_tasks", "count", "fraction", "category"]
    counts = usage.pivot(index="layer", columns="n_tasks", values="count").loc[["embed", "block.0", "block.1"]]
    np.testing.assert_array_equal(counts.to_numpy(), [[0, 1, 0, 1], [1, 1, 0, 0], [0, 1, 1, 0]])
    assert usage.groupby("layer").fraction.sum().tolist() == pytest.approx([1, 1, 1])


def test_usage_of_a_real_ties_merge_adds_up(tiny_tv):
    """Invariant on a real method: the histogram counts every entry once, and the mean number of tasks keeping an
    entry equals the summed densities."""
    res = ex.merge(tiny_tv, "ties", density=0.2)
    usage = ex.analysis.mask_usage(res)
    assert usage["count"].sum() == tiny_tv.numel()
    mean_tasks = (usage.n_tasks * usage.fraction).sum()
    assert mean_tasks == pytest.approx(ex.analysis.mask_density(res).density.sum())


def test_result_without_masks_is_a_clear_error(hand_tv):
    res = ex.MergeResult(tv=hand_tv, delta={n: d.sum(0) for n, d in hand_tv.items()}, method="task_arithmetic")
    with pytest.raises(ValueError, match="task_arithmetic.*no masks.*ties"):
        ex.analysis.mask_usage(res)
    with pytest.raises(ValueError, match="metric"):
        ex.analysis.mask_overlap(res, metric="dice")


def test_selfish_weights_by_hand(masked):
    # entries kept by exactly one task: a's entry 1, b's entry 2, c's entry 5
    frame = ex.analysis.selfish_weights(masked)
    assert list(frame.columns) == ["task", "kept", "selfish", "selfish_fraction"]
    assert frame.task.tolist() == ["a", "b", "c"]
    assert frame.kept.tolist() == [3, 3, 2] and frame.selfish.tolist() == [1, 1, 1]
    assert frame.selfish_fraction.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 2])
    usage = ex.analysis.mask_usage(masked)
    assert frame.selfish.sum() == usage.loc[usage.n_tasks == 1, "count"].item()
