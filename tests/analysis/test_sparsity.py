"""TIES' steps and Breadcrumbs' bands on hand-made task vectors, every number worked out by hand."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from tests.analysis.conftest import NAMES, make_tv

# Distinct magnitudes, so the trim is unambiguous. At density 0.5 each task keeps its 3 largest of 6 (|x| >= 3):
#   a = [4, 1 | 3, -2 | 5, -6]  ->  [4, 0 | 3, 0 | 5, -6]
#   b = [-2, 3 | 1, 4 | -6, 5]  ->  [0, 3 | 0, 4 | -6, 5]
#   c = [1, -5 | -4, 2 | 3, 6]  ->  [0, -5 | -4, 0 | 3, 6]
VECTORS = {"a": [4, 1, 3, -2, 5, -6], "b": [-2, 3, 1, 4, -6, 5], "c": [1, -5, -4, 2, 3, 6]}


def _cells(frame, step):
    rows = frame[frame.step == step]
    return {(r.row, r.entry): r.value for r in rows.itertuples()}


def test_ties_steps_by_hand():
    frame = ex.analysis.ties_steps(make_tv(VECTORS), NAMES[2], entries=[0, 1], density=0.5)
    assert list(frame.columns) == ["step", "row", "entry", "value"]
    assert list(dict.fromkeys(frame.step)) == ["task vectors", "trim", "elect", "merge"]
    assert _cells(frame, "task vectors")[("b", 0)] == -6
    assert _cells(frame, "trim") == {("a", 0): 5, ("a", 1): -6, ("b", 0): -6, ("b", 1): 5, ("c", 0): 3, ("c", 1): 6}
    elect = _cells(frame, "elect")
    assert elect[("elected sign", 0)] == 1 and elect[("elected sign", 1)] == 1  # sums 2 and 5
    assert elect[("b", 0)] == 0 and elect[("a", 1)] == 0  # the entries against the elected sign are dropped
    assert elect[("a", 0)] == 5 and elect[("c", 1)] == 6
    merge = _cells(frame, "merge")
    assert merge[("TIES", 0)] == pytest.approx(4) and merge[("TIES", 1)] == pytest.approx(5.5)  # (5+3)/2, (5+6)/2
    assert merge[("plain mean", 0)] == pytest.approx(2 / 3) and merge[("plain mean", 1)] == pytest.approx(5 / 3)
    assert frame.attrs == {"name": NAMES[2], "density": 0.5}


def test_ties_steps_matches_the_method_and_picks_entries():
    tv = make_tv(VECTORS)
    frame = ex.analysis.ties_steps(tv, NAMES[1], entries=2, density=0.5)
    merged = ex.merge(tv, "ties", density=0.5, scale=1.0).delta[NAMES[1]]  # sums [-1, 4]: gamma = [-, +]
    assert _cells(frame, "merge")[("TIES", 0)] == pytest.approx(float(merged[0])) == pytest.approx(-4)
    assert _cells(frame, "merge")[("TIES", 1)] == pytest.approx(float(merged[1])) == pytest.approx(4)
    one = ex.analysis.ties_steps(tv, NAMES[2], entries=1, density=0.5)
    assert set(one.entry) == {0}  # both entries keep 3 tasks: the first index wins
    with pytest.raises(KeyError, match="unknown parameter"):
        ex.analysis.ties_steps(tv, "nope.weight")


def _row_tv(rows: dict[str, list[float]]) -> ex.TaskVectors:
    name = "transformer.resblocks.0.mlp.c_fc.weight"
    base = {name: torch.zeros(1, 4)}
    experts = {t: {name: torch.tensor([r], dtype=torch.float32)} for t, r in rows.items()}
    return ex.task_vectors(base, experts, device="cpu")


def test_breadcrumb_bands_by_hand():
    # one row of 4 per task; remove 1/4 -> 1 outlier, keep 1/2 -> the next 2, the rest is small
    #   a = [1, 10, 100, 1000]: small 1 (log 0), kept 10, 100 (log 1, 2), outlier 1000 (log 3)
    #   b = [1000, 0, 10, 1]:   outlier 1000, kept 10 and 1, small 0 (zero: not counted)
    frame = ex.analysis.breadcrumb_bands(_row_tv({"a": [1, 10, 100, 1000], "b": [1000, 0, 10, 1]}), keep=0.5,
                                         remove=0.25, bins=3)
    assert list(frame.columns) == ["band", "bin_left", "bin_right", "count", "fraction"]
    counts = frame.pivot(index="band", columns="bin_left", values="count")
    assert counts.loc["small (dropped)"].tolist() == [1, 0, 0]
    assert counts.loc["middle band (kept)"].tolist() == [1, 2, 1]
    assert counts.loc["outliers (dropped)"].tolist() == [0, 0, 2]
    assert frame.fraction.sum() == pytest.approx(1) and frame["count"].sum() == 7
    assert sorted(set(frame.bin_left)) == pytest.approx([0, 1, 2])
    only_b = ex.analysis.breadcrumb_bands(_row_tv({"a": [1, 10, 100, 1000], "b": [1000, 0, 10, 1]}), keep=0.5,
                                          remove=0.25, bins=3, task="b")
    assert only_b.groupby("band", sort=False)["count"].sum().tolist() == [0, 2, 1]
    assert only_b.attrs["task"] == "b"


def test_breadcrumb_bands_agree_with_the_method(tiny_tv):
    frame = ex.analysis.breadcrumb_bands(tiny_tv, keep=0.2, remove=0.05)
    res = ex.merge(tiny_tv, "breadcrumbs", keep=0.2, remove=0.05)
    kept = sum(int(m.sum()) for t in res.tasks for m in res.masks[t].values())
    nonzero_kept = kept - sum(int(((tiny_tv[n] == 0) & torch.stack([res.masks[t][n] for t in res.tasks])).sum())
                              for n in tiny_tv)
    assert frame[frame.band == "middle band (kept)"]["count"].sum() == nonzero_kept
