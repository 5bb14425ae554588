"""Zero-shot heads: the task_vectors recipe checked by hand on a tiny text tower, cached on disk."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import explorer as ex
from explorer.zoo.heads import ZeroShotHead, head_weight

from .tinyclip import device_params, save_family, tiny_clip, write_config

SPEC = {"name": "Toy", "classnames": ["cat", "dog", "red car"], "templates": ["a photo of a {}.", "a {} texture."],
        "data": {"kind": "folder", "splits": {"train": "toy/train", "test": "toy/test"}}}


def manual_weight(clip, names, templates):
    """One prompt at a time: normalise, average over templates, normalise, scale by exp(logit_scale)."""
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer()
    rows = []
    with torch.no_grad():
        for name in names:
            embs = [F.normalize(clip.encode_text(tok([t.format(name)]))[0], dim=-1) for t in templates]
            rows.append(F.normalize(torch.stack(embs).mean(0), dim=-1))
        return torch.stack(rows) * clip.logit_scale.exp()


def toy_zoo(tmp_path, device="cpu", spec=SPEC):
    clip = tiny_clip(0)
    path = save_family(clip, tmp_path / "clip", "visual_safetensors", tmp_path)
    zoo = ex.load_zoo("openclip", arch=str(write_config(tmp_path)), base=str(path), text=str(path),
                      experts={"toy": str(path)}, task_specs={"toy": spec}, cache_dir=tmp_path / "cache",
                      device=device)
    return zoo, clip


@device_params
def test_head_matches_the_hand_computed_recipe(tmp_path, device):
    zoo, clip = toy_zoo(tmp_path, device)
    head = zoo.head("toy")
    want = manual_weight(clip, SPEC["classnames"], SPEC["templates"])
    assert head.weight.device.type == device and head.weight.shape == (3, 8)
    assert torch.allclose(head.weight.cpu(), want, atol=1e-5)
    assert torch.allclose(head.weight.norm(dim=1).cpu(), clip.logit_scale.exp().detach().expand(3), atol=1e-4)
    feats = torch.randn(4, 8, device=device)
    logits = head(feats)
    cos = F.normalize(feats.cpu(), dim=-1) @ F.normalize(want, dim=-1).t()
    assert torch.allclose(logits.cpu(), cos * clip.logit_scale.exp().detach(), atol=1e-4)
    assert zoo.class_names("toy") == ["cat", "dog", "red car"]


def test_heads_are_cached_on_disk_and_keyed_by_prompts(tmp_path):
    zoo, _ = toy_zoo(tmp_path)
    first = zoo.head("toy")
    files = list((tmp_path / "cache" / "heads").glob("toy-*.safetensors"))
    assert len(files) == 1
    zoo._text_model = lambda: pytest.fail("a cached head must not rebuild the text tower")
    assert torch.equal(zoo.head("toy").weight, first.weight)
    zoo.task_specs["toy"] = {**SPEC, "templates": ["a {}."]}
    with pytest.raises(BaseException, match="must not rebuild"):
        zoo.head("toy")


def test_prompt_names_override_display_names(tmp_path):
    spec = {**SPEC, "prompt_names": ["['cat']", "['dog', 'puppy']", "['red car']"]}
    zoo, clip = toy_zoo(tmp_path, spec=spec)
    assert torch.allclose(zoo.head("toy").weight, manual_weight(clip, spec["prompt_names"], SPEC["templates"]),
                          atol=1e-5)
    assert zoo.class_names("toy") == SPEC["classnames"]


def test_head_weight_rejects_empty_prompts_and_head_is_frozen():
    with pytest.raises(ValueError, match="at least one class name and one template"):
        head_weight(lambda t: t, lambda p: torch.zeros(len(p), 2), [], ["{}"], 1.0)
    head = ZeroShotHead(torch.eye(2))
    assert list(head.parameters()) == [] and head.num_classes == 2
