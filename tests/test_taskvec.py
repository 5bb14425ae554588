"""TaskVectors: construction from state dicts, layer map, errors, dtypes."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.taskvec import ParamInfo, param_info
from tests.conftest import tiny_state_dicts


def test_deltas_are_expert_minus_base_stacked_in_task_order():
    base, experts = tiny_state_dicts(num_tasks=3)
    tv = ex.task_vectors(base, experts, device="cpu")
    assert tv.tasks == ["task0", "task1", "task2"]
    name = "transformer.resblocks.1.attn.in_proj_weight"
    assert tv[name].shape == (3, *base[name].shape)
    assert torch.allclose(tv[name][2], experts["task2"][name] - base[name])
    assert tv.numel() == sum(v.numel() for v in base.values())
    assert tv.num_blocks == 2


def test_layer_and_kind_map():
    assert param_info("transformer.resblocks.3.attn.in_proj_weight") == ParamInfo("block.3", 3, "attn")
    assert param_info("visual.transformer.resblocks.11.mlp.c_fc.bias") == ParamInfo("block.11", 11, "mlp")
    assert param_info("transformer.resblocks.0.ln_1.weight").kind == "ln"
    assert param_info("conv1.weight") == ParamInfo("embed", None, "embedding")
    assert param_info("ln_pre.bias") == ParamInfo("embed", None, "ln")
    assert param_info("visual.proj") == ParamInfo("post", None, "proj")
    assert param_info("ln_post.weight") == ParamInfo("post", None, "ln")


def test_layers_are_in_model_order(tiny_tv):
    assert tiny_tv.layers() == ["embed", "block.0", "block.1", "post"]


def test_non_float_entries_are_skipped_but_kept_for_state_dicts():
    base = {"w": torch.zeros(3), "step": torch.tensor(7)}
    experts = {"a": {"w": torch.ones(3), "step": torch.tensor(9)}}
    tv = ex.task_vectors(base, experts, device="cpu")
    assert tv.keys() == ["w"]
    sd = tv.state_dict({"w": torch.full((3,), 0.5)})
    assert sd["step"].item() == 7 and sd["w"].tolist() == [0.5, 0.5, 0.5]


def test_mismatched_keys_and_shapes_are_listed():
    base = {"w": torch.zeros(3), "b": torch.zeros(2)}
    experts = {"a": {"w": torch.zeros(4), "c": torch.zeros(2)}}
    with pytest.raises(ValueError) as err:
        ex.task_vectors(base, experts, device="cpu")
    text = str(err.value)
    assert "lacks 1 key(s): ['b']" in text and "['c']" in text and "w: base (3,) vs (4,)" in text


def test_half_precision_on_request_and_subset(tiny_tv):
    base, experts = tiny_state_dicts(num_tasks=3)
    half = ex.task_vectors(base, experts, device="cpu", dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and half.base["conv1.weight"].dtype == torch.float32
    sub = tiny_tv.subset(["task2", "task0"])
    assert sub.tasks == ["task2", "task0"]
    assert torch.equal(sub["proj"][0], tiny_tv["proj"][2])
    with pytest.raises(ValueError, match="dtype 'int8' is not supported"):
        ex.task_vectors(base, experts, device="cpu", dtype="int8")
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        tiny_tv.subset(["nope"])


@pytest.mark.parametrize("name, info", [
    ("model.layers.3.self_attn.q_proj.weight", ParamInfo("block.3", 3, "attn")),
    ("model.layers.0.mlp.down_proj.weight", ParamInfo("block.0", 0, "mlp")),
    ("model.layers.1.input_layernorm.weight", ParamInfo("block.1", 1, "ln")),
    ("model.layers.1.post_attention_layernorm.weight", ParamInfo("block.1", 1, "ln")),
    ("model.embed_tokens.weight", ParamInfo("embed", None, "embedding")),
    ("model.norm.weight", ParamInfo("post", None, "ln")),
    ("lm_head.weight", ParamInfo("post", None, "proj")),
    ("transformer.h.11.attn.c_attn.weight", ParamInfo("block.11", 11, "attn")),
    ("transformer.h.0.mlp.c_fc.bias", ParamInfo("block.0", 0, "mlp")),
    ("transformer.h.0.ln_2.weight", ParamInfo("block.0", 0, "ln")),
    ("transformer.wte.weight", ParamInfo("embed", None, "embedding")),
    ("transformer.wpe.weight", ParamInfo("embed", None, "embedding")),
    ("transformer.ln_f.bias", ParamInfo("post", None, "ln")),
])
def test_decoder_layer_and_kind_map(name, info):
    assert param_info(name) == info


def test_decoder_layers_are_in_model_order():
    names = ["lm_head.weight", "model.layers.10.mlp.up_proj.weight", "model.norm.weight",
             "model.layers.2.self_attn.o_proj.weight", "model.embed_tokens.weight"]
    base = {n: torch.zeros(2) for n in names}
    tv = ex.task_vectors(base, {"a": base}, device="cpu")
    assert tv.layers() == ["embed", "block.2", "block.10", "post"] and tv.num_blocks == 11
