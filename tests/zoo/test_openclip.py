"""OpenClipZoo: tiny open_clip models saved in each checkpoint family's format load as zoos whose task
vectors equal those computed from the original tensors."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.zoo import formats
from explorer.zoo.formats import CheckpointError
from explorer.zoo.openclip import OpenClipZoo

from .tinyclip import device_params, finetuned, save_family, tiny_clip, visual_sd, write_config

FAMILIES = ["image_encoder_pt", "visual_safetensors", "hf", "pickled"]


def make_zoo(tmp_path, family: str, tasks=("mnist", "svhn"), **kwargs) -> tuple[OpenClipZoo, object, dict]:
    """A tiny zoo whose base and experts are saved in `family`'s format; returns (zoo, base clip, expert clips)."""
    base = tiny_clip(0)
    experts = {t: finetuned(base, seed=i + 1) for i, t in enumerate(tasks)}
    base_file = save_family(base, tmp_path / "base", family, tmp_path)
    if family == "hf":  # FusionBench: the base is a full HF CLIPModel, so it has visual_projection
        base_file = save_family(base, tmp_path / "base", "visual_safetensors", tmp_path)
    files = {t: str(save_family(c, tmp_path / t, family, tmp_path)) for t, c in experts.items()}
    text = save_family(base, tmp_path / "text", "visual_safetensors", tmp_path)
    zoo = ex.load_zoo("openclip", arch=str(write_config(tmp_path)), base=str(base_file), experts=files,
                      text=str(text), cache_dir=tmp_path / "cache", allow_pickle=(family == "pickled"), **kwargs)
    return zoo, base, experts


@device_params
@pytest.mark.parametrize("family", FAMILIES)
def test_task_vectors_equal_the_original_deltas(tmp_path, family, device):
    zoo, base, experts = make_zoo(tmp_path, family, device=device)
    tv = ex.task_vectors(zoo, device=device)
    theta0 = visual_sd(base)
    assert tv.tasks == ["mnist", "svhn"] and set(tv.keys()) == set(theta0)
    for i, task in enumerate(tv.tasks):
        theta_t = visual_sd(experts[task])
        for name in theta0:
            want = (theta_t[name] - theta0[name]).to(device)
            if family == "hf" and name == "proj":  # FusionBench keeps the pretrained projection
                want = torch.zeros_like(want)
            assert torch.equal(tv[name][i], want), (task, name)


def test_base_and_expert_names_match_the_built_visual_tower(tmp_path):
    zoo, base, _ = make_zoo(tmp_path, "image_encoder_pt")
    model = zoo.build_model()
    assert set(model.state_dict()) == set(zoo.base_state_dict())
    images = torch.randn(2, 3, 16, 16)
    out = torch.func.functional_call(model, zoo.base_state_dict(), (images,))
    with torch.no_grad():
        assert torch.allclose(out, base.encode_image(images), atol=1e-6)


def test_experts_load_lazily_in_their_stored_dtype(tmp_path, monkeypatch):
    calls = []
    real = formats.read_checkpoint
    monkeypatch.setattr("explorer.zoo.openclip.read_checkpoint", lambda p, **kw: calls.append(p) or real(p, **kw))
    base = tiny_clip(0)
    half = {k: v.half() for k, v in finetuned(base, 1).state_dict().items()}
    from explorer.weights import write_weights

    write_weights(half, tmp_path / "mnist.safetensors")
    write_weights(base.state_dict(), tmp_path / "base.safetensors")
    zoo = ex.load_zoo("openclip", arch=str(write_config(tmp_path)), base=str(tmp_path / "base.safetensors"),
                      experts={"mnist": str(tmp_path / "mnist.safetensors")}, text=str(tmp_path / "base.safetensors"))
    assert calls == []  # nothing read yet
    sd = zoo.expert_state_dict("mnist")
    assert [p.name for p in calls] == ["base.safetensors", "mnist.safetensors"]
    assert sd["conv1.weight"].dtype == torch.float16
    tv = ex.task_vectors(zoo, device="cpu", dtype="bfloat16")
    assert tv.dtype == torch.bfloat16


def test_expert_of_another_architecture_is_reported_key_by_key(tmp_path):
    base = tiny_clip(0)
    other = tiny_clip(1, layers=3)
    torch.save(base.state_dict(), tmp_path / "base.pt")
    torch.save(other.state_dict(), tmp_path / "deep.pt")
    zoo = ex.load_zoo("openclip", arch=str(write_config(tmp_path)), base=str(tmp_path / "base.pt"),
                      experts={"mnist": str(tmp_path / "deep.pt")}, text=str(tmp_path / "base.pt"))
    with pytest.raises(CheckpointError, match=r"expert mnist .*12 unmatched key\(s\).*resblocks\.2"):
        zoo.expert_state_dict("mnist")


def test_pickled_expert_without_opt_in_says_how_to_opt_in(tmp_path):
    zoo, _, _ = make_zoo(tmp_path, "pickled")
    zoo.allow_pickle = False
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        zoo.expert_state_dict("mnist")


def test_missing_local_file_and_bad_arguments_are_clear(tmp_path):
    cfg = str(write_config(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"2 checkpoint file\(s\) not found:\n  base: .*b.pt\n  expert mnist: "):
        ex.load_zoo("openclip", arch=cfg, base=str(tmp_path / "b.pt"), experts={"mnist": str(tmp_path / "none.pt")})
    with pytest.raises(ValueError, match="needs arch="):
        ex.load_zoo("openclip", base="openai", experts={"mnist": "x"})
    with pytest.raises(ValueError, match="unknown open_clip architecture 'ViT-Q-99'"):
        ex.load_zoo("openclip", arch="ViT-Q-99", experts={"mnist": "x"})
    with pytest.raises(ValueError, match="needs experts="):
        ex.load_zoo("openclip", arch=cfg, base="x")


def test_fingerprint_follows_the_weight_files(tmp_path):
    zoo, _, _ = make_zoo(tmp_path, "visual_safetensors")
    first = zoo.fingerprint()
    assert len(first) == 16 and first == zoo.fingerprint()
    expert_file = zoo.files["expert svhn"]
    expert_file.write_bytes(expert_file.read_bytes() + b" ")  # any change to an expert's file
    assert zoo.fingerprint() != first
