"""Tiny open_clip CLIP models (random weights, a config JSON on disk) saved in each checkpoint family's format."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from explorer.weights import write_weights
from explorer.zoo.formats import openclip_to_hf

TINY_CFG = {
    "embed_dim": 8,
    "vision_cfg": {"image_size": 16, "layers": 2, "width": 16, "patch_size": 8, "head_width": 8, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
device_params = pytest.mark.parametrize("device", DEVICES)


def write_config(folder: Path, **vision) -> Path:
    cfg = json.loads(json.dumps(TINY_CFG))
    cfg["vision_cfg"].update(vision)
    path = folder / f"tiny-{len(list(folder.glob('tiny*.json')))}.json"
    path.write_text(json.dumps(cfg))
    return path


def tiny_clip(seed: int = 0, **vision):
    from open_clip.model import CLIP

    cfg = json.loads(json.dumps(TINY_CFG))
    cfg["vision_cfg"].update(vision)
    torch.manual_seed(seed)
    return CLIP(**cfg).eval()


def finetuned(clip, seed: int, noise: float = 0.01):
    """A copy of `clip` whose vision tower moved by seeded Gaussian noise (an 'expert')."""
    import copy

    out = copy.deepcopy(clip)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.visual.parameters():
            p.add_(noise * torch.randn(p.shape, generator=gen))
    return out


def visual_sd(clip) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in clip.visual.state_dict().items()}


def image_encoder_sd(clip) -> dict[str, torch.Tensor]:
    """What task_vectors' ImageEncoder.state_dict() holds: `model.`-prefixed CLIP keys minus the text transformer."""
    return {f"model.{k}": v for k, v in clip.state_dict().items() if not k.startswith("transformer.")}


def save_family(clip, path: Path, family: str, tmp_path: Path) -> Path:
    """Save `clip`'s image encoder in one family's format; returns the file."""
    if family == "image_encoder_pt":  # TALL-masks / LiNeS: a `model.`-prefixed state dict with text leftovers
        torch.save(image_encoder_sd(clip), path.with_suffix(".pt"))
        return path.with_suffix(".pt")
    if family == "visual_safetensors":  # an open_clip full-CLIP state dict, `visual.` prefix plus the text tower
        return write_weights(clip.state_dict(), path.with_suffix(".safetensors"))
    if family == "hf":  # HF CLIPVisionModel: vision_model.* with separate q/k/v, no projection
        hf = {k: v for k, v in openclip_to_hf(visual_sd(clip)).items() if k != "visual_projection.weight"}
        return write_weights(hf, path.with_suffix(".safetensors"))
    if family == "pickled":
        return save_pickled_encoder(clip, path.with_suffix(".pt"), tmp_path)
    raise ValueError(family)


def save_pickled_encoder(clip, path: Path, tmp_path: Path) -> Path:
    """torch.save a whole task_vectors-style `ImageEncoder` whose class lives in a module that is then removed,
    as for users who do not have the task_vectors code."""
    pkg = tmp_path / "tvcode" / "fake_task_vectors_src"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "modeling.py").write_text(textwrap.dedent('''
        import torch
        class ImageEncoder(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model
                delattr(self.model, "transformer")
    '''))
    sys.path.insert(0, str(pkg.parent))
    try:
        import copy

        from fake_task_vectors_src.modeling import ImageEncoder

        torch.save(ImageEncoder(copy.deepcopy(clip)), path)
    finally:
        sys.path.remove(str(pkg.parent))
        for name in [m for m in sys.modules if m.startswith("fake_task_vectors_src")]:
            del sys.modules[name]
    return path
