"""Hand-computed cases and invariants for the data-free merge methods."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.methods.sparse import _band_sorted, breadcrumb_mask

TAU = torch.tensor([
    [1.0, -2.0, 0.5, 3.0, -0.1, 1.0],
    [-1.0, -1.0, 0.2, -3.0, 0.4, 2.0],
    [2.0, 1.0, -0.3, 1.0, -0.2, -3.0],
])


def tv_from(rows: torch.Tensor, name: str = "w") -> ex.TaskVectors:
    """TaskVectors with one parameter `name` whose task vectors are the given rows (base = 0)."""
    base = {name: torch.zeros(rows.shape[1:])}
    experts = {f"t{i}": {name: r.clone()} for i, r in enumerate(rows)}
    return ex.task_vectors(base, experts, device="cpu")


@pytest.mark.parametrize("aggregate,expected", [
    ("mean", [1.5, -1.5, 0.0, 2.0, 0.0, 1.5]),
    ("sum", [3.0, -3.0, 0.0, 4.0, 0.0, 3.0]),
])
def test_ties_hand_computed_with_zero_sum_tie(aggregate, expected):
    # density 0.5 keeps |tau| >= the 3rd smallest (=1 in every row); column 5 sums to 1 + 2 - 3 = 0,
    # so its sign is the majority sign sign(+1 -1 +0 +1 +0 +0) = +, and only the positive entries merge.
    res = ex.merge(tv_from(TAU), "ties", density=0.5, scale=1.0, aggregate=aggregate)
    assert torch.allclose(res.delta["w"], torch.tensor(expected))
    assert res.masks["t0"]["w"].tolist() == [True, True, False, True, False, True]
    assert res.masks["t1"]["w"].tolist() == [False, True, False, False, False, True]
    assert res.masks["t2"]["w"].tolist() == [True, False, False, True, False, False]


def test_ties_count_sign_and_scale():
    res = ex.merge(tv_from(TAU), "ties", density=0.5, scale=0.5, aggregate="sum", sign="count")
    assert torch.allclose(res.delta["w"], 0.5 * torch.tensor([3.0, -3.0, 0.0, 4.0, 0.0, 3.0]))


def test_ties_tensor_scope_trims_each_tensor_separately():
    base = {"a": torch.zeros(4), "b": torch.zeros(4)}
    experts = {"t0": {"a": torch.tensor([10.0, 20.0, 30.0, 40.0]), "b": torch.tensor([1.0, 2.0, 3.0, 4.0])}}
    tv = ex.task_vectors(base, experts, device="cpu")
    glob = ex.merge(tv, "ties", density=0.5, scope="global", aggregate="sum", scale=1.0)
    tens = ex.merge(tv, "ties", density=0.5, scope="tensor", aggregate="sum", scale=1.0)
    # global: threshold = the (8 - 4)-th smallest |tau| of all 8 values = 4, and |tau| >= 4 is kept
    # (the official convention keeps entries equal to the threshold)
    assert glob.delta["b"].tolist() == [0, 0, 0, 4.0]
    assert glob.delta["a"].tolist() == [10.0, 20.0, 30.0, 40.0]
    # per tensor (PEFT, mergekit): exactly int(0.5 * 4) = 2 entries of each tensor
    assert tens.delta["b"].tolist() == [0, 0, 3.0, 4.0]
    assert tens.delta["a"].tolist() == [0, 0, 30.0, 40.0]


# Three tasks, one tensor of 5 entries, density 0.4: scope=tensor keeps int(0.4 * 5) = 2 entries per task.
TAU5 = torch.tensor([[3.0, -1.0, 2.0, -5.0, 0.5],    # keeps 3 (idx 0) and -5 (idx 3)
        [-2.0, 4.0, 1.0, 1.0, -3.0],    # keeps 4 (idx 1) and -3 (idx 4)
        [1.0, 1.0, -6.0, 2.0, 2.5]])  # keeps -6 (idx 2) and 2.5 (idx 4)


def test_ties_tensor_scope_keeps_exactly_int_density_n_by_hand():
    tv = tv_from(TAU5)
    res = ex.merge(tv, "ties", density=0.4, scope="tensor", scale=1.0)
    # trimmed sum [3, 4, -6, -5, -0.5] elects [+, +, -, -, -]; at idx 4 only -3 agrees (2.5 does not)
    assert res.delta["w"].tolist() == [3.0, 4.0, -6.0, -5.0, -3.0]
    assert [int(res.masks[t]["w"].sum()) for t in ("t0", "t1", "t2")] == [2, 2, 1]
    mag = ex.merge(tv, "magnitude", density=0.4, scope="tensor", scale=1.0)
    assert mag.delta["w"].tolist() == [3.0, 4.0, -6.0, -5.0, -0.5]
    assert all(int(m["w"].sum()) == 2 for m in mag.masks.values())
    # scope=global keeps |tau| >= the 3rd smallest |tau| (2 for t0): 3 entries, one more than int(0.4 * 5)
    assert int(ex.merge(tv, "magnitude", density=0.4, scope="global").masks["t0"]["w"].sum()) == 3


def test_ties_tensor_scope_breaks_a_zero_vote_towards_plus_as_peft():
    tv = tv_from(torch.tensor([[2.0, 1.0], [-2.0, 3.0]]))  # entry 0: +2 and -2 cancel exactly
    assert ex.merge(tv, "ties", density=1.0, scope="tensor", scale=1.0).delta["w"].tolist() == [2.0, 2.0]


def peft_ties(task_tensors: list, density: float, majority: str = "total") -> torch.Tensor:
    """PEFT's `merge_utils.ties` with unit weights, as written there: magnitude_based_pruning (torch.topk of
    exactly int(density * numel)), calculate_majority_sign_mask (vote >= 0 -> +1) and disjoint_merge."""
    pruned = []
    for tensor in task_tensors:
        mask = torch.zeros_like(tensor).reshape(-1)
        k = int(density * tensor.numel())
        top_k = torch.topk(tensor.abs().reshape(-1), k=k, largest=True)
        mask[top_k[1]] = 1
        pruned.append(tensor * mask.reshape(tensor.shape))
    stacked = torch.stack(pruned)
    sign = stacked.sign()
    magnitude = stacked.sum(dim=0) if majority == "total" else sign.sum(dim=0)
    majority_sign = torch.where(magnitude >= 0, 1, -1)
    keep = sign == majority_sign
    return (stacked * keep).sum(dim=0) / torch.clamp(keep.sum(dim=0), min=1.0)


@pytest.mark.parametrize("density", [0.1, 0.3, 0.5, 0.77, 1.0])
@pytest.mark.parametrize("sign,majority", [("mass", "total"), ("count", "frequency")])
def test_ties_tensor_scope_equals_peft(tiny_tv, density, sign, majority):
    res = ex.merge(tiny_tv, "ties", density=density, scope="tensor", sign=sign, scale=1.0)
    for name, d in tiny_tv.items():
        expected = peft_ties(list(d), density, majority)
        assert torch.allclose(res.delta[name], expected, atol=1e-7), name


def test_ties_one_task_density_one_equals_task_arithmetic(tiny_tv):
    one = tiny_tv.subset(["task1"])
    ties = ex.merge(one, "ties", density=1.0, scale=0.7)
    ta = ex.merge(one, "task_arithmetic", scale=0.7)
    for name in one.keys():
        assert torch.allclose(ties.delta[name], ta.delta[name])


def test_average_and_task_arithmetic(tiny_tv):
    avg = ex.merge(tiny_tv, "average")
    ta = ex.merge(tiny_tv, "task_arithmetic", scale=1 / 3)
    for name in tiny_tv.keys():
        assert torch.allclose(avg.delta[name], tiny_tv[name].mean(0), atol=1e-7)
        assert torch.allclose(ta.delta[name], avg.delta[name], atol=1e-7)
    assert avg.coefficients.loc["task0", "all"] == pytest.approx(1 / 3)


def test_dare_without_drop_equals_its_base(tiny_tv):
    for base, extra in (("task_arithmetic", {}), ("ties", {"density": 0.3, "aggregate": "mean"})):
        dare = ex.merge(tiny_tv, "dare", drop=0.0, base=base, scale=0.4, **extra)
        ref = ex.merge(tiny_tv, base, scale=0.4, **extra)
        for name in tiny_tv.keys():
            assert torch.allclose(dare.delta[name], ref.delta[name], atol=1e-7)


def test_dare_drops_the_expected_fraction_and_rescales():
    rows = torch.ones(2, 20000)
    res = ex.merge(tv_from(rows), "dare", drop=0.3, scale=1.0, seed=3)
    kept = res.masks["t0"]["w"]
    assert abs(kept.float().mean().item() - 0.7) < 0.02
    # each surviving entry is 1 / 0.7; the sum of two tasks is 0, 1/0.7 or 2/0.7
    values = set(torch.round(res.delta["w"] * 0.7, decimals=4).unique().tolist())
    assert values <= {0.0, 1.0, 2.0}
    again = ex.merge(tv_from(rows), "dare", drop=0.3, scale=1.0, seed=3)
    assert torch.equal(again.delta["w"], res.delta["w"])
    other = ex.merge(tv_from(rows), "dare", drop=0.3, scale=1.0, seed=4)
    assert not torch.equal(other.delta["w"], res.delta["w"])


def test_dare_ties_masks_are_the_entries_kept_by_both_the_drop_and_ties():
    """DARE + TIES' mask of task t is drop mask AND TIES' agree mask on the dropped vectors (TIES' agreeing entries
    are non-zero, so they lie inside the drop mask)."""
    gen = torch.Generator().manual_seed(5)
    rows = torch.randn(3, 4000, generator=gen)
    res = ex.merge(tv_from(rows), "dare", drop=0.4, base="ties", density=0.5, scale=1.0, seed=7)
    drop = torch.rand(rows.shape, generator=torch.Generator().manual_seed(7)) >= 0.4
    ties = ex.merge(tv_from(rows * drop.float() * (1 / 0.6)), "ties", density=0.5, aggregate="sum", sign="mass",
                    scope="global")
    for i, t in enumerate(res.tasks):
        assert torch.equal(res.masks[t]["w"], drop[i] & ties.masks[t]["w"])
        assert 0 < int(res.masks[t]["w"].sum()) < int(drop[i].sum())


def test_magnitude_prunes_then_adds():
    res = ex.merge(tv_from(TAU), "magnitude", density=0.5, scale=1.0)
    pruned = torch.tensor([[1.0, -2.0, 0, 3.0, 0, 1.0], [-1.0, -1.0, 0, -3.0, 0, 2.0], [2.0, 1.0, 0, 1.0, 0, -3.0]])
    assert torch.allclose(res.delta["w"], pruned.sum(0))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("keep,remove", [(0.15, 0.01), (0.3, 0.1), (0.5, 0.0), (0.2, 0.25), (0.01, 0.004)])
def test_breadcrumb_mask_is_the_sorted_topk_band(ties, keep, remove):
    """The unsorted two-topk mask equals the band of one sorted topk, also when magnitudes tie at either boundary
    (few distinct values: the tied rows take the sorted topk's choice)."""
    gen = torch.Generator().manual_seed(11)
    for shape in ((3, 40, 97), (2, 5, 6, 300)):
        d = torch.randint(-4, 5, shape, generator=gen).float() if ties else torch.randn(shape, generator=gen)
        n = shape[-1]
        n_remove, n_keep = int(n * remove), min(int(n * keep), n - int(n * remove))
        assert torch.equal(breadcrumb_mask(d, keep, remove), _band_sorted(d.abs(), n_remove, n_keep))


def test_breadcrumbs_one_row():
    row = torch.tensor([[10.0, -9.0, 8.0, -7.0, 6.0, -5.0, 4.0, -3.0, 2.0, -1.0]])
    mask = breadcrumb_mask(row, keep=0.3, remove=0.1)
    assert mask[0].tolist() == [False, True, True, True] + [False] * 6
    res = ex.merge(tv_from(row), "breadcrumbs", keep=0.3, remove=0.1, scale=2.0)
    assert res.delta["w"].tolist() == [0.0, -18.0, 16.0, -14.0] + [0.0] * 6


def test_breadcrumbs_small_gamma_removes_nothing_and_keeps_0d():
    row = torch.tensor([[10.0, -9.0, 8.0, -7.0, 6.0, -5.0, 4.0, -3.0, 2.0, -1.0]])
    assert breadcrumb_mask(row, keep=0.3, remove=0.05)[0].tolist() == [True, True, True] + [False] * 7
    scalar = torch.tensor([0.5, -0.25])  # a 0-d parameter stacked over 2 tasks
    assert breadcrumb_mask(scalar, keep=0.1, remove=0.1).all()
    # rows of a 2-D tensor are handled independently
    mat = torch.tensor([[[1.0, 5.0, 3.0, 2.0], [9.0, 1.0, 2.0, 8.0]]])  # [T=1, 2 rows, 4]
    assert breadcrumb_mask(mat, keep=0.5, remove=0.25)[0].tolist() == [[False, False, True, True],
                                                                         [False, False, True, True]]


def tall_tv() -> ex.TaskVectors:
    return tv_from(torch.tensor([[1.0, 0.1, -1.0], [1.0, -1.0, 0.2]]))


def test_tall_masks_two_tasks():
    # tau_MTL = [2, -0.9, -0.8]; m_t = |tau_t| > 0.5 |tau_MTL - tau_t| = 0.5 |tau_other|
    res = ex.merge(tall_tv(), "tall_masks", lam=0.5, lam_select="fixed")
    assert res.per_task
    assert res.masks["t0"]["w"].tolist() == [True, False, True]
    assert res.masks["t1"]["w"].tolist() == [True, True, False]
    assert torch.allclose(res.task_delta("t0")["w"], torch.tensor([2.0, 0.0, -0.8]))
    assert torch.allclose(res.task_delta("t1")["w"], torch.tensor([2.0, -0.9, 0.0]))
    assert torch.allclose(res.state_dict(task="t1")["w"], torch.tensor([2.0, -0.9, 0.0]))
    with pytest.raises(ValueError, match="one model per task"):
        res.state_dict()


def test_tall_masks_without_zoo_falls_back_to_fixed_lambda():
    res = ex.merge(tall_tv(), "tall_masks", lam=0.5)
    assert res.info["lam"] == {"t0": 0.5, "t1": 0.5}
    assert "fixed lam" in res.info["note"]


def test_consensus_hand_computed_and_k0_is_mtl():
    # with lam 0.5 the masks use [2, 1, 1] tasks per weight; k = 2 keeps only weight 0
    res = ex.merge(tall_tv(), "consensus", k=2, lam=0.5, scale=1.0)
    assert torch.allclose(res.delta["w"], torch.tensor([2.0, 0.0, 0.0]))
    all_kept = ex.merge(tall_tv(), "consensus", k=0, scale=1.0)
    assert torch.allclose(all_kept.delta["w"], torch.tensor([2.0, -0.9, -0.8]))


def test_lines_alpha_one_beta_zero_is_identity(tiny_tv):
    res = ex.merge(tiny_tv, "lines", alpha_mode="fixed", alpha=1.0, beta=0.0)
    for name in tiny_tv.keys():
        assert torch.allclose(res.delta[name], tiny_tv[name].sum(0))


def test_lines_scales_blocks_linearly(tiny_tv):
    res = ex.merge(tiny_tv, "lines", alpha_mode="fixed", alpha=0.2, beta=0.6)
    total = {n: tiny_tv[n].sum(0) for n in tiny_tv.keys()}
    first = "transformer.resblocks.0.mlp.c_fc.weight"
    last = "transformer.resblocks.1.mlp.c_fc.weight"
    assert torch.allclose(res.delta[first], 0.2 * total[first])
    assert torch.allclose(res.delta[last], 0.8 * total[last])
    assert torch.allclose(res.delta["conv1.weight"], 0.2 * total["conv1.weight"])
    assert res.coefficients.loc["all", "block.1"] == pytest.approx(0.8)


def test_lines_auto_alpha_for_task_arithmetic_is_one_over_t(tiny_tv):
    res = ex.merge(tiny_tv, "lines", beta=0.0)
    assert res.info["alpha"] == pytest.approx(1 / 3)


def test_emr_hand_computed():
    tv = tv_from(torch.tensor([[2.0, -1.0, 0.0, 1.0], [1.0, 3.0, 0.0, -1.0]]))
    res = ex.merge(tv, "emr")
    # gamma = sign of the sum with 0 -> -1: [+, +, -, -]; tau_uni = gamma * max agreeing |tau|
    assert res.delta["w"].tolist() == [2.0, 3.0, 0.0, -1.0]
    assert res.masks["t0"]["w"].tolist() == [True, False, False, False]
    assert res.masks["t1"]["w"].tolist() == [True, True, False, True]
    # s_0 = mean|tau_0| / mean|M_0 tau_uni| = 1.0 / 0.5; s_1 = 1.25 / 1.5
    assert res.task_scales["t0"] == pytest.approx(2.0)
    assert res.task_scales["t1"] == pytest.approx(1.25 / 1.5)
    assert torch.allclose(res.task_delta("t0")["w"], torch.tensor([4.0, 0.0, 0.0, 0.0]))
