"""mergekit configs: parsing and refusals, per-tensor numbers checked by hand against mergekit's semantics, run
records written back as configs, and `explorer merge --mergekit` on tiny save_pretrained Llama folders."""
from __future__ import annotations

import json

import pytest
import torch

import explorer as ex
from explorer import cli
from explorer.interop.mergekit import parse_config
from explorer.interop.mergekit_export import record_plan, record_yaml
from explorer.interop.mergekit_merge import merge_state_dicts, registered, task_arithmetic_tensor
from explorer.runs import RunRecord

LINEAR = """  # mergekit's examples/linear.yml
models:
  - model: psmathur/orca_mini_v3_13b
    parameters:
      weight: 1.0
  - model: WizardLM/WizardLM-13B-V1.2
    parameters:
      weight: 0.3
  - model: garage-bAInd/Platypus2-13B
    parameters:
      weight: 0.5
merge_method: linear
dtype: float16
"""
BIO_TIES = """  # mergekit's examples/bio-merge.yml
models:
  - model: mistralai/Mistral-7B-Instruct-v0.2
    parameters:
      density: 0.5
      weight: 0.5
  - model: BioMistral/BioMistral-7B
    parameters:
      density: 0.5
      weight: 0.5
merge_method: ties
base_model: mistralai/Mistral-7B-v0.1
parameters:
  normalize: false
  int8_mask: true
dtype: float16
"""


def config(method: str, a: dict, b: dict, base: str | None = "base", **glob) -> str:
    """A two-model config (models a and b) as mergekit writes them."""
    import yaml

    out = {"merge_method": method, "models": [{"model": "a", "parameters": a}, {"model": "b", "parameters": b}]}
    if base:
        out["base_model"] = base
    if glob:
        out["parameters"] = glob
    return yaml.safe_dump(out)


def row(*values: float) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.float32)


def merged(text: str, a, b, base=None, seed: int = 0) -> torch.Tensor:
    """The merged tensor "w" of models a and b (deltas on top of `base`, or raw weights for linear)."""
    sd = {"a": {"w": a if base is None else base + a}, "b": {"w": b if base is None else base + b}}
    return merge_state_dicts(parse_config(text), sd, None if base is None else {"w": base}, seed=seed)["w"]


# -- parsing ----------------------------------------------------------------------------------------------------


def test_mergekit_examples_parse():
    lin = parse_config(LINEAR)
    assert lin.method == "linear" and lin.base_model is None and lin.dtype == "float16"
    assert [lin.setting(m, "weight") for m in lin.inputs()] == [1.0, 0.3, 0.5]
    ties = parse_config(BIO_TIES)
    assert ties.inputs() == ["mistralai/Mistral-7B-Instruct-v0.2", "BioMistral/BioMistral-7B"]
    assert ties.option("normalize") is False and ties.option("int8_mask") is True and ties.option("lambda") == 1.0
    assert ties.setting("BioMistral/BioMistral-7B", "density") == 0.5


@pytest.mark.parametrize("method, defaults", [
    ("task_arithmetic", {"normalize": False, "rescale": False}), ("ties", {"normalize": True, "rescale": False}),
    ("dare_linear", {"normalize": False, "rescale": True}), ("dare_ties", {"normalize": False, "rescale": True}),
    ("breadcrumbs", {"normalize": False, "rescale": False}),
    ("breadcrumbs_ties", {"normalize": False, "rescale": False}), ("della", {"normalize": True, "rescale": True})])
def test_each_method_parses_with_mergekits_defaults(method, defaults):
    extra = {"gamma": 0.02} if "breadcrumbs" in method else {"epsilon": 0.1} if method == "della" else {}
    plan = parse_config(config(method, {"weight": 0.7, "density": 0.4, **extra}, {"weight": 0.3}, **{"lambda": 2}))
    assert plan.inputs() == ["a", "b"] and plan.base_model == "base" and plan.option("lambda") == 2.0
    assert {k: plan.option(k) for k in defaults} == defaults
    assert plan.setting("a", "density") == 0.4 and plan.setting("b", "density") == 1.0  # mergekit's default
    if extra:
        name = next(iter(extra))
        assert plan.setting("a", name) == extra[name] and plan.setting("b", name) == {"gamma": 0.01,
                                                                                      "epsilon": 0.15}[name]


def test_the_base_listed_among_the_models_is_not_a_task_vector():
    text = config("dare_ties", {"weight": 0.5, "density": 0.5}, {}, base="b")
    assert parse_config(text).inputs() == ["a"]


@pytest.mark.parametrize("text, key", [
    ("slices: []\nmerge_method: linear\n", "slices"),
    ("modules: {}\nmerge_method: linear\n", "modules"),
    (LINEAR + "tokenizer_source: union\n", "tokenizer_source"),
    (LINEAR + "tokenizer: {source: base}\n", "tokenizer"),
    (LINEAR + "chat_template: chatml\n", "chat_template"),
    (LINEAR + "out_path: x\n", "out_path"),
    (LINEAR.replace("merge_method: linear", "merge_method: slerp"), "merge_method"),
    (LINEAR.replace("weight: 0.3", "weight: [{filter: mlp, value: 0.5}, {value: 0}]"), "models[1].parameters.weight"),
    (LINEAR.replace("weight: 0.3", "density: 0.3"), "models[1].parameters.density"),
    (BIO_TIES.replace("density: 0.5\n      weight: 0.5\n  - model: Bio", "normalize: true\n      weight: 0.5\n"
                      "  - model: Bio"), "models[0].parameters.normalize"),
    (BIO_TIES.replace("base_model: mistralai/Mistral-7B-v0.1\n", ""), "base_model"),
    (BIO_TIES.replace("BioMistral/BioMistral-7B", "BioMistral/BioMistral-7B+some/lora"), "models[1].model"),
    (LINEAR.replace("weight: 0.3", "{}"), "models[1]"),
    (LINEAR.replace("float16", "int4"), "dtype"),
    (BIO_TIES.replace("normalize: false", "normalize: [0, 1]"), "parameters.normalize"),
    (BIO_TIES.replace("normalize: false", "normalize: 1"), "parameters.normalize"),
    (LINEAR.replace("    parameters:\n      weight: 0.3", "    layer_range: [0, 40]"), "models[1].layer_range"),
])
def test_what_cannot_be_honoured_is_refused_in_one_line_naming_the_key(text, key):
    with pytest.raises(ValueError) as err:
        parse_config(text)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"mergekit config: {key}:"), message


def test_a_config_file_is_read_from_its_path(tmp_path):
    (tmp_path / "c.yml").write_text(LINEAR)
    assert parse_config(str(tmp_path / "c.yml")).to_config() == parse_config(LINEAR).to_config()
    with pytest.raises(FileNotFoundError, match="missing.yml"):
        parse_config(str(tmp_path / "missing.yml"))


# -- per-tensor numbers, by hand ---------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize, expected", [(True, [2.5, -1.0]), (False, [10.0, -4.0])])
def test_linear_is_the_weighted_sum_of_the_models(normalize, expected):
    # 1*[1, 2] + 3*[3, -2] = [10, -4]; normalized by 1 + 3
    text = config("linear", {"weight": 1.0}, {"weight": 3.0}, base=None, normalize=normalize)
    assert merged(text, row(1, 2), row(3, -2)).tolist() == [expected]


@pytest.mark.parametrize("normalize, expected", [(False, [6.0, 3.0, -0.5]), (True, [1 + 5 / 1.5, 1 + 2 / 1.5, 0.0])])
def test_task_arithmetic_weights_each_delta_then_scales_by_lambda(normalize, expected):
    # 0.5*[1, -2, 0.5] + 1*[2, 2, -1] = [2.5, 1, -0.75]; lambda 2 -> [5, 2, -1.5]; normalize divides by 1.5
    text = config("task_arithmetic", {"weight": 0.5}, {"weight": 1.0}, normalize=normalize, **{"lambda": 2.0})
    out = merged(text, row(1, -2, 0.5), row(2, 2, -1), base=torch.ones(1, 3))
    assert torch.allclose(out, torch.tensor([expected]))


# a: density 0.5 keeps int(3) entries: 3, 2, -4; b: density 0.34 keeps int(2.04) = 2: -4, -3.
# Weighted (1, 0.5): a' = [3, 0, 2, 0, -4, 0], b' = [-2, 0, 0, -1.5, 0, 0]; their sum [1, 0, 2, -1.5, -4, 0] elects
# [+, +, +, -, -, +] (0 counts as +). Kept: a at 0, 2, 4; b at 3. Sum kept [3, 0, 2, -1.5, -4, 0]; the agreeing
# weights [1, 0 -> 1, 1, 0.5, 1, 0 -> 1] normalize it to [3, 0, 2, -3, -4, 0]. With equal weights position 0 would
# elect - (3 - 4 < 0) and give -4: the weights vote.
A, B = row(3, -1, 2, 0.5, -4, 1), row(-4, 2, 1, -3, 0.2, 1.5)


@pytest.mark.parametrize("normalize, lam, expected", [(True, 1.0, [3, 0, 2, -3, -4, 0]),
                                                       (False, 1.0, [3, 0, 2, -1.5, -4, 0]),
                                                       (True, 0.5, [1.5, 0, 1, -1.5, -2, 0])])
def test_ties_with_per_model_weights_and_densities(normalize, lam, expected):
    text = config("ties", {"weight": 1.0, "density": 0.5}, {"weight": 0.5, "density": 0.34}, normalize=normalize,
                  **{"lambda": lam})
    out = merged(text, A, B, base=torch.ones(1, 6))
    assert out.tolist() == [[1 + v for v in expected]]


def test_ties_with_equal_weights_elects_by_the_plain_sum():
    # equal densities 0.5: b keeps -4, -3, 2; sum [-1, 2, 2, -3, -4, 0] -> [-, +, +, -, -, +]; mean of the agreeing
    text = config("ties", {"weight": 1.0, "density": 0.5}, {"weight": 1.0, "density": 0.5})
    assert merged(text, A, B, base=torch.zeros(1, 6)).tolist() == [[-4, 2, 2, -3, -4, 0]]


def test_our_registered_methods_run_where_they_equal_mergekits_arithmetic():
    gen = torch.Generator().manual_seed(0)
    base, deltas = torch.randn(8, 16, generator=gen), [torch.randn(8, 16, generator=gen) for _ in range(3)]
    for method, glob, density in (("task_arithmetic", {"lambda": 0.7}, 1.0), ("ties", {}, 0.3),
                                  ("ties", {"normalize": False, "lambda": 0.5}, 0.3)):
        plan = parse_config(config(method, {"weight": 0.8}, {"weight": 0.8}, **glob))
        params = [{"weight": 0.8, "density": density}] * 3
        ours = registered(plan, "w", base, deltas, params)
        kept = deltas if density == 1 else [d * (d.abs() >= d.abs().flatten().kthvalue(128 - 38 + 1).values)
                                             for d in deltas]  # the int(0.3 * 128) = 38 largest
        assert ours is not None and torch.allclose(ours, task_arithmetic_tensor(plan, base, kept, [0.8] * 3))
    plan = parse_config(config("ties", {"weight": 1.0}, {"weight": 0.5}))
    assert registered(plan, "w", base, deltas[:2], [{"weight": 1.0, "density": 1.0}, {"weight": 0.5,
                                                                                       "density": 1.0}]) is None


def test_breadcrumbs_drops_the_largest_gamma_then_keeps_density():
    delta = row(10, -9, 8, -7, 6, -5, 4, -3, 2, -1)
    text = config("breadcrumbs", {"weight": 1.0, "density": 0.5, "gamma": 0.2}, {"weight": 2.0, "density": 0.9,
                                                                                   "gamma": 0.2})
    # a: drop int(2) outliers (10, -9), keep the next int(5): 8 .. 4. b: 9 kept leave room for 1 outlier only.
    a = [0, 0, 8, -7, 6, -5, 4, 0, 0, 0]
    b = [0, -9, 8, -7, 6, -5, 4, -3, 2, -1]
    out = merged(text, delta, delta, base=torch.zeros(1, 10))
    assert out.tolist() == [[x + 2 * y for x, y in zip(a, b)]]


def test_rescale_matches_each_sparsified_delta_to_its_l1_norm():
    delta = row(10, -9, 8, -7, 6, -5, 4, -3, 2, -1)  # |delta|_1 = 55; the kept band 8 .. 4 has 30
    text = config("breadcrumbs", {"weight": 1.0, "density": 0.5, "gamma": 0.2}, {"weight": 0.0}, rescale=True)
    out = merged(text, delta, delta, base=torch.zeros(1, 10))
    assert torch.allclose(out, torch.tensor([[0, 0, 8, -7, 6, -5, 4, 0, 0, 0]]) * 55 / 30)


@pytest.mark.parametrize("rescale", [True, False])
def test_dare_keeps_about_density_and_rescales_the_kept_entries(rescale):
    text = config("dare_linear", {"weight": 1.0, "density": 0.3}, {"weight": 0.0}, rescale=rescale)
    ones = torch.ones(100, 100)
    out = merged(text, ones, ones, base=torch.zeros(100, 100), seed=3)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.3) < 0.02  # 10,000 draws: the standard deviation is 0.0046
    # rescale matches the L1 norm: every kept 1 becomes n / kept, about 1 / density
    value = ones.numel() / kept.sum().item() if rescale else 1.0
    assert torch.allclose(out[kept], torch.tensor(value)) and (not rescale or abs(value - 1 / 0.3) < 0.25)
    again = merged(text, ones, ones, base=torch.zeros(100, 100), seed=3)
    other = merged(text, ones, ones, base=torch.zeros(100, 100), seed=4)
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_dare_in_float16_draws_and_rescales_in_float32_then_casts_back():
    text = config("dare_linear", {"weight": 1.0, "density": 0.5}, {"weight": 0.0}) + "dtype: float16\n"
    ones = torch.ones(10, 10)
    out = merged(text, ones, ones, base=torch.zeros(10, 10))
    kept = out != 0
    assert out.dtype == torch.float16
    assert torch.allclose(out[kept].float(), torch.tensor(100 / kept.sum().item()), rtol=1e-3)


def test_della_keeps_about_density_and_the_larger_entries_more_often():
    # probabilities run from density - epsilon (smallest |delta| of a row) to density + epsilon (largest)
    text = config("della_linear", {"weight": 1.0, "density": 0.5, "epsilon": 0.4}, {"weight": 0.0}, rescale=False)
    delta = torch.arange(1.0, 101.0).repeat(200, 1)  # 200 rows of 1 .. 100
    out = merged(text, delta, delta, base=torch.zeros(200, 100))
    kept = (out != 0).float()
    assert abs(kept.mean().item() - 0.5) < 0.02 and torch.equal(out[out != 0], delta[out != 0])
    assert abs(kept[:, 0].mean().item() - 0.1) < 0.06 and abs(kept[:, -1].mean().item() - 0.9) < 0.06


def test_out_dtype_casts_the_merged_tensors():
    text = config("task_arithmetic", {"weight": 1.0}, {"weight": 1.0}) + "out_dtype: bfloat16\n"
    assert merged(text, row(1, 2), row(3, 4), base=row(0, 0)).dtype == torch.bfloat16


def test_a_gradient_is_read_along_the_layers():
    plan = parse_config(config("task_arithmetic", {"weight": [0.0, 1.0]}, {"weight": 0.0}))
    names = ["model.embed_tokens.weight", "model.layers.0.w", "model.layers.1.w", "model.layers.2.w"]
    base = {n: torch.zeros(2) for n in names}
    out = merge_state_dicts(plan, {"a": {n: torch.ones(2) for n in names}, "b": base}, base)
    assert [out[n][0].item() for n in names] == [0.0, 0.0, 0.5, 1.0]  # t = 0 outside the layers, i / (L - 1) in


# -- run records back to configs ---------------------------------------------------------------------------------


def test_yaml_plan_yaml_keeps_the_meaning():
    for text in (LINEAR, BIO_TIES, config("breadcrumbs_ties", {"weight": [0.2, 0.8], "gamma": 0.05}, {"weight": 1},
                                          density=0.3, **{"lambda": 1.5})):
        plan = parse_config(text)
        assert parse_config(plan.to_yaml()) == plan
        record = RunRecord("mergekit", {"config": plan.to_config(), "seed": 0}, plan.inputs())
        assert record_plan(record)[0] == plan


@pytest.mark.parametrize("method, params", [("task_arithmetic", {"scale": 0.4}), ("average", {}),
                                            ("ties", {"density": 0.5, "scale": 1.2, "scope": "tensor"}),
                                            ("ties", {"density": 0.5, "scale": 0.6, "scope": "tensor",
                                                      "aggregate": "sum"})])
def test_an_exported_run_merges_to_the_same_numbers_with_mergekits_semantics(method, params):
    gen = torch.Generator().manual_seed(1)
    base = {"x": torch.randn(4, 8, generator=gen), "y": torch.randn(8, generator=gen)}
    experts = {t: {k: v + torch.randn(v.shape, generator=gen) for k, v in base.items()} for t in ("p", "q", "r")}
    result = ex.merge(ex.task_vectors(base, experts), method, **params)
    record = RunRecord(method, dict(result.params), result.tasks)
    plan = parse_config(record_yaml(record))
    ours = result.state_dict()
    theirs = merge_state_dicts(plan, experts, base)
    assert all(torch.allclose(ours[k], theirs[k], atol=1e-6) for k in base)


@pytest.mark.parametrize("method, params, words", [
    ("ties", {"density": 0.2, "scale": 1.0, "sign": "mass", "aggregate": "mean", "scope": "global"}, "scope=tensor"),
    ("dare", {"drop": 0.5, "rescale": "inverse", "base": "ties", "scale": 0.3, "density": 0.5, "aggregate": "sum",
              "seed": 0}, "density=1"),
    ("tall_masks", {}, "no mergekit equivalent")])
def test_runs_mergekit_cannot_repeat_are_refused(method, params, words):
    with pytest.raises(ValueError, match=words):
        record_yaml(RunRecord(method, params, ["p", "q"]))


def test_dare_and_breadcrumbs_export_with_notes_on_what_differs():
    dare = RunRecord("dare", {"drop": 0.7, "rescale": "inverse", "base": "task_arithmetic", "scale": 0.3,
                              "density": 1.0, "aggregate": "sum", "seed": 0}, ["p", "q"], zoo="demo")
    text = record_yaml(dare, {"base": "org/base", "p": "/models/p"})
    plan = parse_config(text)
    assert (plan.method, plan.base_model, plan.inputs()) == ("dare_linear", "org/base", ["/models/p", "q"])
    assert plan.parameters == {"weight": 1.0, "density": 0.3, "rescale": True, "lambda": 0.3}
    assert "# note: mergekit draws its own random masks" in text
    crumbs = RunRecord("breadcrumbs", {"keep": 0.15, "remove": 0.01, "scale": 0.4}, ["p", "q"])
    plan = parse_config(record_yaml(crumbs))
    assert plan.method == "breadcrumbs" and plan.parameters == {"weight": 1.0, "density": 0.15, "gamma": 0.01,
                                                                "lambda": 0.4}


# -- the CLI on tiny Llama folders -------------------------------------------------------------------------------


@pytest.fixture
def llama_folders(tmp_path, monkeypatch):
    """A tiny random Llama base and two experts (base + noise) written by save_pretrained; one expert sharded."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=64)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(tmp_path / "base")
    sds = {"base": {k: v.clone() for k, v in model.state_dict().items()}}
    for name, shard in (("math", "1GB"), ("code", "20KB")):
        sds[name] = {k: v + 0.05 * torch.randn_like(v) for k, v in sds["base"].items()}
        model.load_state_dict(sds[name])
        model.save_pretrained(tmp_path / name, max_shard_size=shard)
    return tmp_path, sds


def test_cli_merges_a_mergekit_config_of_folders_and_exports_it_back(llama_folders, capsys):
    from transformers import AutoModelForCausalLM

    root, sds = llama_folders
    assert (root / "code" / "model.safetensors.index.json").is_file()
    text = (f"merge_method: ties\nbase_model: {root / 'base'}\nparameters: {{density: 0.5, lambda: 0.9}}\n"
            f"models:\n  - model: {root / 'math'}\n    parameters: {{weight: 1.0}}\n"
            f"  - model: {root / 'code'}\n    parameters: {{weight: 0.6, density: 0.7}}\n")
    (root / "ties.yml").write_text(text)
    assert cli.main(["merge", "--mergekit", str(root / "ties.yml"), "--out", str(root / "out")]) == 0
    loaded = AutoModelForCausalLM.from_pretrained(root / "out").state_dict()
    plan = parse_config(text)
    expected = merge_state_dicts(plan, {str(root / n): sds[n] for n in ("math", "code")}, sds["base"])
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(loaded[name], sds["base"][name])
    assert (root / "out" / "mergekit_config.yml").is_file()
    record = json.loads((root / "out" / "run.json").read_text())
    assert record["method"] == "mergekit" and record["merge_path"] == "streamed"
    assert cli.main(["export", "--mergekit", str(root / "out" / "run.json"), "-o", str(root / "back.yml")]) == 0
    assert parse_config(str(root / "back.yml")) == plan
    capsys.readouterr()


def test_cli_refuses_mergekit_mixed_with_zoo_flags(tmp_path, capsys):
    (tmp_path / "c.yml").write_text(LINEAR)
    assert cli.main(["merge", "--mergekit", str(tmp_path / "c.yml"), "--zoo", "demo", "--out", "x"]) == 2
    assert "drop --zoo" in capsys.readouterr().err
    assert cli.main(["merge", "--mergekit", str(tmp_path / "c.yml"), "--out", str(tmp_path / "o")]) == 2
    assert "psmathur/orca_mini_v3_13b" in capsys.readouterr().err  # a hub id, not a local folder
    assert cli.main(["merge", "--method", "ties"]) == 2
    assert "give --zoo, or --base with two or more --lora" in capsys.readouterr().err
