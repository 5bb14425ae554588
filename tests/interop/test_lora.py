"""LoRA adapters in and out: deltas equal PEFT's own merge, merges round-trip through PEFT, the energy is exact."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import explorer as ex
from explorer.interop.lora import LoraAdapter, lora_task_vectors
from explorer.interop.lora_write import write_lora

pytest.importorskip("peft")
from peft import PeftModel  # noqa: E402
from transformers import GPT2LMHeadModel, LlamaForCausalLM  # noqa: E402

from tests.interop.conftest import K0, Q0, V0, adapter  # noqa: E402


def check_deltas(read, truth):
    assert set(read) == set(truth)
    for name, delta in truth.items():
        torch.testing.assert_close(read[name], delta, atol=1e-6, rtol=0)


def reload_merged(cls, base_folder, adapter_folder) -> dict:
    """The weights PEFT gives for `adapter_folder` on `base_folder` after merge_and_unload()."""
    return PeftModel.from_pretrained(cls.from_pretrained(base_folder), adapter_folder).merge_and_unload().state_dict()


@pytest.mark.parametrize("lora, expected", [  # expected: {name: (scaling, rank)}
    ({"target_modules": ["q_proj", "v_proj"]}, {Q0: (8 / 4, 4), V0: (8 / 4, 4)}),
    ({"target_modules": ["q_proj", "v_proj"], "use_rslora": True}, {Q0: (8 / 2, 4), V0: (8 / 2, 4)}),  # / sqrt(r)
    ({"target_modules": ["q_proj", "v_proj"], "rank_pattern": {"v_proj": 2},
      "alpha_pattern": {"layers.1.self_attn.q_proj": 3}},
     {Q0: (8 / 4, 4), V0: (8 / 2, 2), "model.layers.1.self_attn.q_proj.weight": (3 / 4, 4)}),
    ({"target_modules": ["embed_tokens", "q_proj"]}, {"model.embed_tokens.weight": (8 / 4, 4), Q0: (8 / 4, 4)}),
], ids=["plain", "rslora", "patterns", "embedding"])
@pytest.mark.filterwarnings("ignore:Setting `save_embedding_layers`")
def test_adapter_deltas_equal_peft_merge(root, llama, lora, expected):
    folder, truth = adapter(root, llama, f"llama-{len(list(root.iterdir()))}", **lora)
    read = LoraAdapter(folder)
    check_deltas(read, truth)
    for name, (scaling, rank) in expected.items():
        assert (read.factors[name].scaling, read.factors[name].rank) == (pytest.approx(scaling), rank)


def test_gpt2_conv1d_fan_in_fan_out_is_transposed(root, gpt2):
    folder, truth = adapter(root, gpt2, "gpt2-a", cls=GPT2LMHeadModel, target_modules=["c_attn"],
                            fan_in_fan_out=True)
    read, name = LoraAdapter(folder), "transformer.h.0.attn.c_attn.weight"
    assert read[name].shape == gpt2[1][name].shape == (16, 48)  # Conv1D: [in, out]
    check_deltas(read, truth)


def test_modules_to_save_become_deltas_against_the_base(root, llama):
    folder, truth = adapter(root, llama, "llama-mts", target_modules=["q_proj"], modules_to_save=["lm_head"])
    assert "lm_head.weight" in truth
    check_deltas(LoraAdapter(folder, llama[1]), truth)
    with pytest.raises(ValueError, match=r"saves full weights \(modules_to_save: \['lm_head.weight'\]\)"):
        LoraAdapter(folder)

def test_task_vectors_cover_the_union_with_zero_rows(llama, two):
    tv = lora_task_vectors(llama[0], {t: f for t, (f, _) in two.items()}, device="cpu")
    assert tv.tasks == ["a", "b"]
    assert tv.keys() == [n for n in llama[1] if n.split(".")[-2] in ("q_proj", "k_proj", "v_proj")]
    assert not tv[K0][0].any() and not tv[V0][1].any()
    for i, (_, truth) in enumerate(two.values()):
        for name, delta in truth.items():
            torch.testing.assert_close(tv[name][i], delta, atol=1e-6, rtol=0)
    merged = tv.state_dict(tv.task("b"))
    torch.testing.assert_close(merged[K0], llama[1][K0] + two["b"][1][K0], atol=1e-6, rtol=0)
    assert torch.equal(merged["model.norm.weight"], llama[1]["model.norm.weight"])


def test_shape_mismatch_names_the_module_and_shapes(llama, two):
    base = {**llama[1], Q0: torch.zeros(16, 8)}
    with pytest.raises(ValueError, match=r"adapter 'a' module 'model.layers.0.self_attn.q_proj.weight': "
                                         r"base \(16, 8\) vs adapter delta \(16, 16\)"):
        lora_task_vectors(base, {"a": two["a"][0]}, device="cpu")


def test_full_rank_merge_reloads_in_peft_with_the_merged_weights(root, llama, two):
    tv = lora_task_vectors(llama[0], {t: f for t, (f, _) in two.items()}, device="cpu")
    res = ex.merge(tv, "task_arithmetic", scale=1.0)
    torch.testing.assert_close(res.delta[Q0], two["a"][1][Q0] + two["b"][1][Q0], atol=1e-6, rtol=0)
    export = write_lora(res.delta, root / "out-full", rank=16, base_model_name_or_path=str(llama[0]))
    assert export.fraction == pytest.approx(1.0, abs=1e-6) and not export.dropped
    config = json.loads((root / "out-full" / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 16, 16)
    merged = reload_merged(LlamaForCausalLM, llama[0], root / "out-full")
    want = tv.state_dict(res.delta)
    for name in llama[1]:
        torch.testing.assert_close(merged[name], want[name], atol=1e-5, rtol=0)


def test_low_rank_energy_is_the_top_singular_values_share(root, two):
    deltas = {Q0: two["a"][1][Q0] + two["b"][1][Q0], K0: two["b"][1][K0],
              "model.norm.weight": torch.full((16,), 0.5), "model.layers.0.input_layernorm.weight": torch.zeros(16)}
    export = write_lora(deltas, root / "out-r2", rank=2)
    assert export.dropped == {"model.norm.weight": pytest.approx(16 * 0.25)}  # the zero delta is skipped
    kept = total = 0.0
    for name in (Q0, K0):
        s = torch.linalg.svdvals(deltas[name].double())
        module = export.modules[name.removesuffix(".weight")]
        assert module.rank == 2
        assert module.fraction == pytest.approx(float(s[:2].square().sum() / s.square().sum()), rel=1e-5)
        kept, total = kept + float(s[:2].square().sum()), total + float(s.square().sum())
        error = (LoraAdapter(root / "out-r2")[name] - deltas[name]).double().square().sum()  # Eckart-Young
        assert float(error) == pytest.approx(float(s[2:].square().sum()), rel=1e-3)
    assert export.fraction == pytest.approx(kept / (total + 4.0), rel=1e-5)


@pytest.mark.parametrize("edit, message", [
    ({"use_dora": True}, r"use_dora=True cannot be read as a task vector \(DoRA"),
    ({"bias": "all"}, r"bias='all' cannot be read"),
    ({"peft_type": "IA3"}, r"peft_type='IA3' cannot be read .*only LoRA adapters"),
    ({"init_lora_weights": "pissa"}, r"init_lora_weights='pissa' .*rewrites the base weights"),
    ({"rank_pattern": {"q_proj": 2}}, r"module 'model.layers.0.self_attn.q_proj' has factors .* says rank 2"),
])
def test_what_cannot_be_honoured_is_refused(root, two, edit, message):
    folder = root / f"edited-{len(list(root.iterdir()))}"
    shutil.copytree(two["a"][0], folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, **edit}))
    with pytest.raises(ValueError, match=message):
        LoraAdapter(folder)


def test_write_refuses_bad_rank_and_empty_deltas(root):
    with pytest.raises(ValueError, match="rank must be a positive integer, got 0"):
        write_lora({Q0: torch.ones(4, 4)}, root / "bad", rank=0)
    with pytest.raises(ValueError, match=r"nothing to write .*dropped: \['model.norm.weight'\]"):
        write_lora({Q0: torch.zeros(4, 4), "model.norm.weight": torch.ones(4)}, root / "bad", rank=2)


@pytest.mark.filterwarnings("ignore:Setting `save_embedding_layers`")
def test_conv1d_and_embedding_deltas_are_written_in_peft_s_own_form(root, gpt2):
    folder, truth = adapter(root, gpt2, "gpt2-write", cls=GPT2LMHeadModel, target_modules=["c_attn", "wte"],
                            fan_in_fan_out=True)
    assert truth["transformer.wte.weight"].shape == (64, 16)
    export = write_lora(truth, root / "gpt2-out", rank=16, fan_in_fan_out=True)
    assert export.fraction == pytest.approx(1.0, abs=1e-6)
    merged = reload_merged(GPT2LMHeadModel, gpt2[0], root / "gpt2-out")
    for name, delta in truth.items():
        torch.testing.assert_close(merged[name], gpt2[1][name] + delta, atol=1e-5, rtol=0)


def test_an_ia3_adapter_is_refused_naming_its_type(root, llama):
    from peft import IA3Config, get_peft_model

    model = get_peft_model(LlamaForCausalLM.from_pretrained(llama[0]),
                           IA3Config(target_modules=["k_proj", "down_proj"], feedforward_modules=["down_proj"]))
    model.save_pretrained(root / "ia3")
    with pytest.raises(ValueError, match=r"peft_type='IA3' cannot be read as a task vector"):
        LoraAdapter(root / "ia3")
