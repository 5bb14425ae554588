"""Checkpoint formats: detection, HF <-> open_clip conversion, key checks, pickled modules only on opt-in."""
from __future__ import annotations

import pytest
import torch

from explorer.zoo.formats import (
    CheckpointError,
    detect_format,
    hf_to_openclip,
    openclip_to_hf,
    read_checkpoint,
    to_openclip,
)

from .tinyclip import image_encoder_sd, save_pickled_encoder, tiny_clip, visual_sd


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("prefix", ["", "visual.", "model.visual.", "image_encoder.model.visual."])
def test_open_clip_prefixes_are_detected_and_stripped(prefix):
    clip = tiny_clip()
    sd = {prefix + k: v for k, v in visual_sd(clip).items()}
    if prefix:  # keys outside the vision prefix (text-tower leftovers) are ignored
        sd.update({"model.token_embedding.weight": torch.zeros(3, 2), "logit_scale": torch.tensor(1.0)})
    assert detect_format(sd) == ("openclip", prefix)
    assert _equal(to_openclip(sd), visual_sd(clip))


def test_image_encoder_state_dict_drops_the_text_leftovers():
    clip = tiny_clip()
    sd = image_encoder_sd(clip)
    assert "model.token_embedding.weight" in sd and "model.ln_final.weight" in sd
    out = to_openclip(sd, expected={k: v.shape for k, v in visual_sd(clip).items()})
    assert _equal(out, visual_sd(clip))


def test_hf_keys_q_k_v_are_joined_into_in_proj_in_that_order():
    vis = visual_sd(tiny_clip())
    hf = openclip_to_hf(vis)
    width = vis["conv1.weight"].shape[0]
    w = vis["transformer.resblocks.1.attn.in_proj_weight"]  # [3W, W]: rows Q, K, V
    assert torch.equal(hf["vision_model.encoder.layers.1.self_attn.q_proj.weight"], w[:width])
    assert torch.equal(hf["vision_model.encoder.layers.1.self_attn.k_proj.weight"], w[width:2 * width])
    assert torch.equal(hf["vision_model.encoder.layers.1.self_attn.v_proj.bias"],
                       vis["transformer.resblocks.1.attn.in_proj_bias"][2 * width:])
    assert torch.equal(hf["visual_projection.weight"], vis["proj"].t())
    assert "vision_model.pre_layrnorm.weight" in hf  # HF's spelling
    assert torch.equal(hf["vision_model.embeddings.patch_embedding.weight"], vis["conv1.weight"])
    assert len(hf) == len(vis) + 2 * 4  # per block, in_proj (2 tensors) becomes q/k/v (6 tensors)


def test_hf_open_clip_round_trips_exactly_both_ways():
    vis = visual_sd(tiny_clip(3))
    hf = openclip_to_hf(vis)
    assert detect_format(hf) == ("hf", "")
    assert _equal(hf_to_openclip(hf), vis)
    hf_again = openclip_to_hf(hf_to_openclip(hf))
    assert _equal(hf_again, hf)


def test_hf_clip_model_with_text_keys_and_position_ids():
    vis = visual_sd(tiny_clip(4))
    hf = openclip_to_hf(vis)
    hf["vision_model.embeddings.position_ids"] = torch.arange(5)[None]
    hf["text_model.embeddings.token_embedding.weight"] = torch.zeros(4, 2)
    hf["text_projection.weight"] = torch.zeros(2, 2)
    assert _equal(to_openclip(hf, expected={k: v.shape for k, v in vis.items()}), vis)


def test_hf_vision_only_checkpoint_takes_proj_from_the_base():
    base, expert = visual_sd(tiny_clip(0)), visual_sd(tiny_clip(1))
    hf = {k: v for k, v in openclip_to_hf(expert).items() if k != "visual_projection.weight"}
    out = to_openclip(hf, expected={k: v.shape for k, v in base.items()}, fill=base)
    assert torch.equal(out["proj"], base["proj"])
    assert torch.equal(out["conv1.weight"], expert["conv1.weight"])
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): \['proj'\]"):
        to_openclip(hf, expected={k: v.shape for k, v in base.items()})


def test_unknown_format_error_lists_the_keys_it_saw():
    with pytest.raises(CheckpointError, match="no known checkpoint format.*'encoder.weight'"):
        to_openclip({"encoder.weight": torch.zeros(2), "head.bias": torch.zeros(2)}, source="x.pt")


def test_architecture_mismatch_lists_missing_unmatched_and_misshaped_keys():
    small, big = visual_sd(tiny_clip(layers=2)), visual_sd(tiny_clip(layers=3))
    expected = {k: v.shape for k, v in small.items()}
    with pytest.raises(CheckpointError) as err:
        to_openclip({"visual." + k: v for k, v in big.items()}, expected=expected, source="big.pt")
    msg = str(err.value)
    assert "big.pt (openclip format, prefix 'visual.')" in msg
    assert "12 unmatched key(s)" in msg and "transformer.resblocks.2.attn.in_proj_weight" in msg
    broken = dict(small)
    del broken["ln_post.bias"]
    broken["proj"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match=r"missing key\(s\): \['ln_post.bias'\].*proj: \(3, 3\) != \(16, 8\)"):
        to_openclip(broken, expected=expected)


def test_hf_block_with_missing_projection_is_refused():
    hf = openclip_to_hf(visual_sd(tiny_clip()))
    del hf["vision_model.encoder.layers.0.self_attn.k_proj.weight"]
    with pytest.raises(CheckpointError, match=r"block 0 has only the \['q', 'v'\] projections"):
        hf_to_openclip(hf)


def test_read_checkpoint_unwraps_state_dict_and_module_prefix(tmp_path):
    vis = visual_sd(tiny_clip())
    torch.save({"state_dict": {"module." + k: v for k, v in vis.items()}, "epoch": 3}, tmp_path / "c.pt")
    assert _equal(read_checkpoint(tmp_path / "c.pt"), vis)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "nope.pt")


def test_pickled_module_needs_the_opt_in_and_then_loads_without_its_code(tmp_path):
    clip = tiny_clip(5)
    path = save_pickled_encoder(clip, tmp_path / "finetuned.pt", tmp_path)
    with pytest.raises(CheckpointError, match="allow_pickle=True.*--allow-pickle.*explorer zoo convert"):
        read_checkpoint(path)
    sd = read_checkpoint(path, allow_pickle=True)  # the ImageEncoder class is not importable here
    assert _equal(sd, image_encoder_sd(clip))
    assert _equal(to_openclip(sd), visual_sd(clip))


# --- the format registries -------------------------------------------------------------------------
def test_each_format_is_registered_once():
    from explorer.zoo.formats import FILE_FORMATS, NAME_FORMATS, checkpoint_suffixes, register_name_format

    assert FILE_FORMATS.names() == ["safetensors", "torch"] and NAME_FORMATS.names() == ["openclip", "hf"]
    assert checkpoint_suffixes() == (".safetensors", ".pt", ".pth", ".bin")
    with pytest.raises(ValueError, match="checkpoint name format 'hf' is registered twice"):
        register_name_format(NAME_FORMATS.get("hf"))
    with pytest.raises(ValueError, match="unknown checkpoint name format 'tf'; known checkpoint name formats: "
                                         "openclip, hf"):
        NAME_FORMATS.get("tf")


def test_unknown_names_list_the_known_formats():
    with pytest.raises(CheckpointError, match="x.pt: no known checkpoint format.*known formats: openclip: .*; hf: "):
        to_openclip({"encoder.weight": torch.zeros(2)}, source="x.pt")
    assert set(to_openclip({"encoder.weight": torch.zeros(2)}, keep_unknown=True)) == {"encoder.weight"}


def test_a_file_of_no_known_format_names_the_problem_the_formats_and_the_fix(tmp_path):
    (tmp_path / "w.npz").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CheckpointError, match=r"w.npz is in no checkpoint format explorer reads \(suffix '.npz'.*"
                                              r"known formats: safetensors \(.safetensors\); torch \(.pt, .pth, .bin\)"
                                              r".*safetensors.torch.save_file"):
        read_checkpoint(tmp_path / "w.npz")
    vis = visual_sd(tiny_clip())
    torch.save(vis, tmp_path / "w.ckpt")  # an unknown suffix, recognised by its first bytes (a zip archive)
    assert _equal(read_checkpoint(tmp_path / "w.ckpt"), vis)
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="bad.pt is not a readable torch checkpoint.*known formats"):
        read_checkpoint(tmp_path / "bad.pt")
