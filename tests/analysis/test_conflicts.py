"""Cosine and sign conflicts against hand-computed values (vectors in conftest.py)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import explorer as ex
from tests.analysis.conftest import make_tv

R2 = 1 / math.sqrt(2)


def pair(frame: pd.DataFrame, group: str, a: str, b: str, value: str, by: str = "layer") -> float:
    row = frame[(frame[by] == group) & (frame.task_a == a) & (frame.task_b == b)]
    assert len(row) == 1
    return float(row[value].iloc[0])


def test_cosine_whole_model_is_square_and_hand_computed(hand_tv):
    cos = ex.analysis.cosine(hand_tv)
    assert list(cos.index) == list(cos.columns) == ["a", "b", "c"]
    # a.b = 0; a.c = 2, |a|^2 = 5, |c|^2 = 7; b.c = -2
    expected = np.array([[1, 0, 2 / math.sqrt(35)], [0, 1, -2 / math.sqrt(35)],
                         [2 / math.sqrt(35), -2 / math.sqrt(35), 1]])
    np.testing.assert_allclose(cos.to_numpy(), expected, atol=1e-12)


def test_cosine_per_layer(hand_tv):
    cos = ex.analysis.cosine(hand_tv, by="layer")
    assert list(cos.columns) == ["layer", "task_a", "task_b", "cosine"]
    assert list(cos.layer.unique()) == ["embed", "block.0", "block.1"]
    assert len(cos) == 3 * 9
    cases = {("embed", "a", "b"): 0, ("embed", "a", "c"): R2, ("embed", "b", "c"): R2,
             ("block.0", "a", "b"): 1, ("block.0", "a", "c"): -R2, ("block.0", "c", "b"): -R2,
             ("block.1", "a", "b"): -1, ("block.1", "a", "c"): R2, ("block.1", "b", "c"): -R2,
             ("block.1", "c", "c"): 1}
    for (layer, a, b), value in cases.items():
        assert pair(cos, layer, a, b, "cosine") == pytest.approx(value, abs=1e-12)


def test_cosine_per_kind_matches_layers_here(hand_tv):
    """Each layer holds one kind in this model (embedding, attn, mlp), so the numbers must coincide."""
    by_kind = ex.analysis.cosine(hand_tv, by="kind")
    by_layer = ex.analysis.cosine(hand_tv, by="layer")
    assert list(by_kind.columns) == ["kind", "task_a", "task_b", "cosine"]
    assert list(by_kind.kind.unique()) == ["embedding", "attn", "mlp"]
    np.testing.assert_allclose(by_kind.cosine.to_numpy(), by_layer.cosine.to_numpy())


def test_cosine_of_a_zero_layer_is_nan():
    tv = make_tv({"a": [1, 0, 1, 1, 1, -1], "z": [1, 2, 3, 4, 0, 0]})
    cos = ex.analysis.cosine(tv, by="layer")
    assert math.isnan(pair(cos, "block.1", "a", "z", "cosine"))
    assert not cos[cos.layer != "block.1"].cosine.isna().any()


def test_cosine_is_symmetric_and_scale_invariant(tiny_tv):
    cos = ex.analysis.cosine(tiny_tv)
    np.testing.assert_allclose(cos.to_numpy(), cos.to_numpy().T, atol=1e-12)
    np.testing.assert_allclose(np.diag(cos.to_numpy()), 1, atol=1e-6)
    scaled = ex.TaskVectors(tiny_tv.tasks, tiny_tv.base, {n: 3 * d for n, d in tiny_tv.items()})
    np.testing.assert_allclose(ex.analysis.cosine(scaled).to_numpy(), cos.to_numpy(), atol=1e-6)
    flat = tiny_tv.flat().double()
    direct = torch.nn.functional.cosine_similarity(flat[0], flat[1], dim=0)
    assert cos.loc["task0", "task1"] == pytest.approx(float(direct), abs=1e-6)


def test_sign_conflicts_whole_and_per_layer(hand_tv):
    sc = ex.analysis.sign_conflicts(hand_tv)
    # entries non-zero in both: a,b -> 4 with 2 opposite; a,c -> 3 with 1; b,c -> 3 with 2
    expected = np.array([[0, 0.5, 1 / 3], [0.5, 0, 2 / 3], [1 / 3, 2 / 3, 0]])
    np.testing.assert_allclose(sc.to_numpy(), expected, atol=1e-12)
    layered = ex.analysis.sign_conflicts(hand_tv, by="layer")
    assert list(layered.columns) == ["layer", "task_a", "task_b", "conflict"]
    assert math.isnan(pair(layered, "embed", "a", "b", "conflict"))  # no entry non-zero in both
    cases = {("embed", "a", "c"): 0, ("block.0", "a", "b"): 0, ("block.0", "a", "c"): 1,
             ("block.0", "b", "c"): 1, ("block.1", "a", "b"): 1, ("block.1", "a", "c"): 0,
             ("block.1", "b", "c"): 1}
    for (layer, a, b), value in cases.items():
        assert pair(layered, layer, a, b, "conflict") == value


def test_sign_conflicts_top_k():
    tv = make_tv({"a": [4, -3, 2, 1, 0.5, 0.25], "b": [-1, 2, -3, 4, 0.25, 0.5]})
    # TIES' trim keeps floor(topk * 6) + 1 entries (ties at the threshold included).
    # topk 1/6: a keeps entries 0, 1; b keeps 2, 3: nothing shared
    assert math.isnan(ex.analysis.sign_conflicts(tv, topk=1 / 6).loc["a", "b"])
    # topk 2/6: a keeps 0, 1, 2; b keeps 1, 2, 3: shared 1, 2, both opposite
    assert ex.analysis.sign_conflicts(tv, topk=2 / 6).loc["a", "b"] == 1
    top = ex.analysis.sign_disagreement(tv, by=None, topk=2 / 6)
    assert top.shared.tolist() == [2 / 6] and top.disagreement.tolist() == [1]
    # all entries: opposite at 0, 1, 2 of 6
    assert ex.analysis.sign_conflicts(tv).loc["a", "b"] == 0.5


def test_sign_disagreement(hand_tv):
    dis = ex.analysis.sign_disagreement(hand_tv)
    assert list(dis.columns) == ["layer", "shared", "disagreement", "numel"]
    assert dis.shared.tolist() == [1, 1, 1]
    assert dis.disagreement.tolist() == [0, 0.5, 1]
    whole = ex.analysis.sign_disagreement(hand_tv, by=None)
    assert whole.disagreement.tolist() == [0.5] and whole.numel.tolist() == [6]


def test_conflict_profile_unique_pairs_with_depth(hand_tv):
    prof = ex.analysis.conflict_profile(hand_tv)
    assert list(prof.columns) == ["layer", "depth", "pair", "task_a", "task_b", "cosine"]
    assert len(prof) == 3 * 3 and prof.depth.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    assert prof.pair.tolist()[:3] == ["a vs b", "a vs c", "b vs c"]
    assert prof[prof.pair == "a vs b"].cosine.tolist() == pytest.approx([0, 1, -1])
    signs = ex.analysis.conflict_profile(hand_tv, metric="signs")
    assert signs[signs.pair == "b vs c"].conflict.tolist() == [0, 1, 1]


@pytest.mark.parametrize("call, match", [
    (lambda tv: ex.analysis.cosine(tv, by="block"), "by='block'"),
    (lambda tv: ex.analysis.sign_conflicts(tv, topk=20), "fraction"),
    (lambda tv: ex.analysis.conflict_profile(tv, metric="l2"), "metric"),
    (lambda tv: ex.analysis.conflict_profile(tv, topk=0.2), "signs"),
])
def test_bad_arguments_name_the_problem(hand_tv, call, match):
    with pytest.raises(ValueError, match=match):
        call(hand_tv)
