"""Fisher merging, RegMean and RegMean++ on hand-computed cases and on a tiny in-memory zoo."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import explorer as ex
from explorer.methods import stats_passes as S
from explorer.methods.closed_form import fisher_weights, regmean_solve
from explorer.methods.runner import Progress
from explorer.runs import RunRecord
from tests.conftest import tiny_tower
from tests.tinyzoo import TinyZoo, one_thread  # noqa: F401  (autouse fixture)


@pytest.fixture(autouse=True)
def fresh_cache():
    S.clear()
    yield
    S.clear()


def assert_same_delta(a, b, **tol):
    for name in a.delta:
        torch.testing.assert_close(a.delta[name], b.delta[name], **tol)


# --- Fisher ---------------------------------------------------------------------------------------------------
def test_fisher_of_one_linear_map_by_hand():
    """logits = w x with x = 1 and w = (ln 3, 0): p = (3/4, 1/4), dL/dlogit_j = sqrt(p_j) - p_j sum_y sqrt(p_y)."""
    model = nn.Linear(1, 2, bias=False)
    weights = {"weight": torch.tensor([[math.log(3.0)], [0.0]])}
    root = math.sqrt(0.75) + math.sqrt(0.25)
    g = torch.tensor([[math.sqrt(0.75) - 0.75 * root], [math.sqrt(0.25) - 0.25 * root]])
    one = S.fisher_pass(model, nn.Identity(), weights, ["weight"], [(torch.ones(1, 1), None)])
    torch.testing.assert_close(one["weight"], g.square())
    # the quirk of the reference code: the batch-summed gradient is squared, so a batch of two equal examples
    # gives (2g)^2 / 2 = 2 g^2 per example, where a per-example Fisher would give g^2
    two = S.fisher_pass(model, nn.Identity(), weights, ["weight"], [(torch.ones(2, 1), None)])
    torch.testing.assert_close(two["weight"], 2 * g.square())
    split = S.fisher_pass(model, nn.Identity(), weights, ["weight"], [(torch.ones(1, 1), None)] * 2)
    torch.testing.assert_close(split["weight"], g.square())


def test_fisher_weights_by_hand():
    fishers = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # [T=2, 2 entries]
    torch.testing.assert_close(fisher_weights(fishers, 0.0 + 1e-12)[:, 0], torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(fisher_weights(fishers, 1.0)[:, 1], torch.tensor([0.5, 0.5]))  # eps decides
    norms = torch.tensor([1.0, 3.0])  # c_t ~ 1/norm_t: (1 * 1, 1/3 * 3) -> equal weights on entry 0
    torch.testing.assert_close(fisher_weights(fishers, 0.0 + 1e-12, norms)[:, 0], torch.tensor([0.5, 0.5]))


def _constant_fishers(monkeypatch, value_of_task):
    def fake(model, head, weights, names, data, tick=None):
        index = fake.calls
        fake.calls += 1
        return {n: value_of_task(index, n, weights[n]) for n in names}

    fake.calls = 0
    monkeypatch.setattr(S, "fisher_pass", fake)


@pytest.mark.parametrize("normalize", [True, False])
def test_fisher_with_equal_fishers_is_averaging(tv, monkeypatch, normalize):
    _constant_fishers(monkeypatch, lambda i, n, w: torch.full_like(w, 0.7))
    res = ex.merge(tv, "fisher", normalize=normalize)
    assert_same_delta(res, ex.merge(tv, "average"))
    assert res.coefficients.to_numpy() == pytest.approx(1 / 3)


def test_fisher_with_one_hot_fishers_picks_that_expert(tv, monkeypatch):
    _constant_fishers(monkeypatch, lambda i, n, w: torch.full_like(w, float(i == 1)))
    res = ex.merge(tv, "fisher", normalize=False, eps=0.0)
    for name in tv.keys():
        torch.testing.assert_close(res.delta[name], tv[name][1])
    assert res.coefficients.loc["task1"].to_numpy() == pytest.approx(1.0)


def test_fisher_share_per_layer(tv):
    res = ex.merge(tv, "fisher", examples=16)
    share = ex.analysis.fisher_share(res)
    assert list(share.columns) == ["layer", "depth", "task", "share"]
    assert share.groupby("layer").share.sum().to_numpy() == pytest.approx(1.0)
    assert list(dict.fromkeys(share.layer)) == tv.layers() and set(share.task) == set(tv.tasks)
    # entries weighted by size: the layer's share is the mean weight over all its entries
    names = [n for n in tv.keys() if tv.info[n].layer == "block.0"]
    sizes = torch.tensor([float(tv[n][0].numel()) for n in names])
    expected = (torch.tensor(res.coefficients[names].to_numpy()) * sizes).sum(1) / sizes.sum()
    got = share[share.layer == "block.0"].set_index("task").share.loc[tv.tasks].to_numpy()
    assert got == pytest.approx(expected.numpy())


# --- RegMean ----------------------------------------------------------------------------------------------------
def test_regmean_with_identity_grams_is_averaging_of_the_weights():
    rows = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    grams = torch.eye(4).expand(3, 4, 4)
    torch.testing.assert_close(regmean_solve(grams, rows, 0.95), rows.double().mean(0))


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.95])
def test_regmean_shrinks_the_off_diagonal_entries(alpha):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 10, 4, generator=gen, dtype=torch.float64)
    grams, rows = x.transpose(1, 2) @ x / 10, torch.randn(3, 4, 2, generator=gen, dtype=torch.float64)
    shrunk = [alpha * g + (1 - alpha) * torch.diag(torch.diagonal(g)) for g in grams]
    expected = torch.linalg.inv(sum(shrunk)) @ sum(g @ w for g, w in zip(shrunk, rows))
    torch.testing.assert_close(regmean_solve(grams, rows, alpha), expected)
    if alpha == 0.0:  # diagonal Gram matrices: a weighted average of each input feature's row
        d = torch.diagonal(grams, dim1=1, dim2=2).unsqueeze(-1)  # [T, in, 1]
        torch.testing.assert_close(regmean_solve(grams, rows, 0.0), (d * rows).sum(0) / d.sum(0))


def test_regmean_on_one_linear_layer_is_the_stacked_least_squares():
    """min_W sum_t ||X_t W - X_t W_t||^2 over equally many examples per task: lstsq of the stacked problem."""
    gen = torch.Generator().manual_seed(1)
    model = nn.Linear(4, 3)
    xs = [torch.randn(20, 4, generator=gen) @ torch.randn(4, 4, generator=gen) for _ in range(3)]
    ws = [torch.randn(3, 4, generator=gen) for _ in range(3)]
    grams = [S.gram_pass(model, {"weight": w, "bias": torch.zeros(3)}, ["weight"], [(x[:8], None), (x[8:], None)])
             for x, w in zip(xs, ws)]
    assert all(g.rows["weight"] == 20 for g in grams)
    solved = regmean_solve(torch.stack([g.gram("weight") for g in grams]), torch.stack([w.T for w in ws]), 1.0)
    lstsq = torch.linalg.lstsq(torch.cat(xs).double(), torch.cat([x @ w.T for x, w in zip(xs, ws)]).double())
    torch.testing.assert_close(solved, lstsq.solution)


def test_regmean_with_identity_grams_through_the_method_is_averaging(tv, monkeypatch):
    def identity(model, weights, names, data, stop=False, tick=None):
        maps = S.linear_maps(model)
        sums = {n: 7.0 * torch.eye(maps[n].rows(weights[n]).shape[0], dtype=torch.float64) for n in names}
        return S.Grams(sums, {n: 7 for n in names})

    monkeypatch.setattr(S, "gram_pass", identity)
    assert_same_delta(ex.merge(tv, "regmean"), ex.merge(tv, "average"), atol=1e-6, rtol=1e-5)


def test_every_attention_in_proj_and_out_proj_is_merged(tv):
    res = ex.merge(tv, "regmean", examples=8)
    maps = res.info["linear_maps"]
    blocks = range(tv.num_blocks)
    for i in blocks:
        for leaf in ("attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"):
            assert f"transformer.resblocks.{i}.{leaf}" in maps
    assert len(maps) == 4 * tv.num_blocks + 2 and {"conv1.weight", "proj"} <= set(maps)
    assert set(res.info["averaged"]) == set(tv.keys()) - set(maps)
    # the hook-only approach would have missed them: out_proj's forward is never called, in_proj is no Linear
    model, fired = tiny_tower(), []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            module.register_forward_pre_hook(lambda m, a, name=name: fired.append(name))
    model(torch.randn(2, 3, 16, 16))
    mlp = [f"transformer.resblocks.{i}.mlp.{k}" for i in blocks for k in ("c_fc", "c_proj")]
    assert sorted(set(fired)) == sorted(mlp)


def test_captured_inputs_reproduce_each_linear_map():
    """The inputs the capture records are the real ones: applying each map to them gives the layer's output."""
    model = tiny_tower().eval()
    block = model.transformer.resblocks[0]
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        context = S.attention_context(block.attn, block.ln_1(x))
        torch.testing.assert_close(block.attn.out_proj(context), block.attention(block.ln_1(x)))
    seen = {}
    with torch.no_grad(), S.capture(model, list(S.linear_maps(model)), lambda n, v: seen.setdefault(n, v)):
        features = model(images := torch.randn(2, 3, 16, 16))
    torch.testing.assert_close(seen["proj"] @ model.proj, features)
    patches = seen["conv1.weight"] @ S.linear_maps(model)["conv1.weight"].rows(model.conv1.weight)
    torch.testing.assert_close(patches, model.conv1(images).flatten(2).transpose(1, 2).reshape(-1, 16))


def test_regmean_statistics_are_cached_so_alpha_remerges_without_data(tv, monkeypatch):
    calls = []
    real = S.forward
    monkeypatch.setattr(S, "forward", lambda *a: calls.append(1) or real(*a))
    first = ex.merge(tv, "regmean", examples=16, alpha=0.9)
    n = len(calls)
    assert n == 3 and not first.info["data"]["cached"]  # 16 examples per task: one batch each
    second = ex.merge(tv, "regmean", examples=16, alpha=0.5)
    assert len(calls) == n and second.info["data"]["cached"]
    assert any(not torch.equal(first.delta[k], second.delta[k]) for k in first.info["linear_maps"])
    ex.merge(tv, "regmean", examples=8, alpha=0.5)  # another example count: read again
    assert len(calls) == 2 * n
    fisher = ex.merge(tv, "fisher", examples=16)
    again = ex.merge(tv, "fisher", examples=16, eps=1e-3)
    assert not fisher.info["data"]["cached"] and again.info["data"]["cached"]


def test_regmean_records_the_split_and_the_examples(tv):
    res = ex.merge(tv, "regmean", examples=10)
    assert res.info["data"]["split"] == "train"
    assert res.info["data"]["examples_per_task"] == {t: 10 for t in tv.tasks}
    assert RunRecord.of(res).data["examples_per_task"] == {t: 10 for t in tv.tasks}
    big = ex.merge(tv, "fisher", examples=1000)  # more than the split holds: all 32
    assert RunRecord.of(big).data == {"split": "train", "examples_per_task": {t: 32 for t in tv.tasks},
                                      "cached": False}


def test_regmean_reports_progress_and_cancel_gives_the_average(tv):
    seen: list[Progress] = []
    ex.merge(tv, "regmean", examples=20, callback=seen.append)
    assert [p.step for p in seen] == list(range(1, 4)) and all(p.total == 3 for p in seen)
    assert all(p.stage == "Gram matrices" and math.isnan(p.loss) for p in seen)
    S.clear()
    res = ex.merge(tv, "regmean", examples=20, cancel=lambda: True)
    assert res.info["cancelled"]
    assert_same_delta(res, ex.merge(tv, "average"))
    assert not ex.merge(tv, "regmean", examples=20).info["data"]["cached"]  # nothing partial was kept


def test_fisher_seeds_pick_other_examples(tv):
    a = ex.merge(tv, "fisher", examples=8, seed=0)
    b = ex.merge(tv, "fisher", examples=8, seed=0)
    c = ex.merge(tv, "fisher", examples=8, seed=1)
    assert a.coefficients.equals(b.coefficients) and not a.coefficients.equals(c.coefficients)


# --- RegMean++ --------------------------------------------------------------------------------------------------
class OneBlockZoo(TinyZoo):
    """A one-block tower whose experts differ from the base only inside the block."""

    def __init__(self):
        super().__init__(3)
        self.base = {k: v.clone() for k, v in tiny_tower(0, layers=1).state_dict().items()}
        gen = torch.Generator().manual_seed(5)
        self.experts = {t: {k: v + 0.2 * torch.randn(v.shape, generator=gen) if k.startswith("transformer.") else v
                            for k, v in self.base.items()} for t in self.tasks}

    def build_model(self):
        return tiny_tower(100, layers=1)


def test_regmean_plus_plus_on_one_block_equals_regmean():
    """Nothing merged comes before the block, so its inputs are each expert's own, as in RegMean."""
    tv = ex.task_vectors(OneBlockZoo(), device="cpu")
    plain, plus = ex.merge(tv, "regmean", examples=16), ex.merge(tv, "regmean", examples=16, inputs="merged")
    assert_same_delta(plain, plus, atol=1e-6, rtol=1e-5)
    assert any(plain.delta[n].abs().max() > 1e-3 for n in plain.info["linear_maps"])


def test_regmean_plus_plus_reads_through_the_merged_earlier_layers(tv, monkeypatch):
    calls = []
    real = S.gram_pass
    monkeypatch.setattr(S, "gram_pass", lambda model, weights, names, *a, **k:
                        calls.append((dict(weights), list(names))) or real(model, weights, names, *a, **k))
    plus = ex.merge(tv, "regmean", examples=16, inputs="merged")
    merged = plus.state_dict()
    block1 = [(w, names) for w, names in calls if all(".resblocks.1." in n for n in names)]
    assert len(block1) == tv.num_tasks
    for i, (weights, _) in enumerate(block1):
        for name in tv.keys():
            layer = tv.info[name].layer
            expected = merged[name] if layer in ("embed", "block.0") else tv.base[name] + tv[name][i]
            torch.testing.assert_close(weights[name], expected)
    plain = ex.merge(tv, "regmean", examples=16)
    assert any(not torch.allclose(plain.delta[n], plus.delta[n]) for n in plain.info["linear_maps"])


class NoTrainingData(TinyZoo):
    """A zoo whose task "dtd" keeps its data in image folders (as a real zoo) that are not on disk."""

    def __init__(self, root):
        super().__init__(2, names=["dtd", "b"])
        self.root = root

    def dataset(self, task, split):
        from explorer.zoo.datasets import task_dataset, task_spec

        return task_dataset(task_spec("dtd"), self.root, split) if task == "dtd" else super().dataset(task, split)


@pytest.mark.parametrize("method", ["fisher", "regmean"])
def test_a_zoo_without_training_data_names_the_task_and_the_folder(tmp_path, method):
    from explorer.zoo.datasets import DataMissing

    tv = ex.task_vectors(NoTrainingData(tmp_path), device="cpu")
    with pytest.raises(DataMissing, match=rf"{method} reads 256 train examples of task 'dtd': DTD \(train\) is "
                                          rf"missing under {tmp_path}.*no folder {tmp_path}/dtd/train"):
        ex.merge(tv, method)
