"""Zero-shot classification heads from a pretrained CLIP text tower (task_vectors' `heads.py` recipe).

For each class: encode `template.format(name)` for every template, L2-normalise each embedding, average,
L2-normalise again; stack into W [C, D] and multiply by exp(logit_scale). The head L2-normalises the image
features, so logits = exp(logit_scale) * cos(feature, class embedding). Heads are cached on disk.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PROMPT_BATCH = 256


class ZeroShotHead(nn.Module):
    """Frozen linear head: features [N, D] -> logits [N, C] = normalize(features) @ W^T (W already scaled)."""

    def __init__(self, weight: Tensor):
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())  # [C, D]

    def forward(self, features: Tensor) -> Tensor:
        features = F.normalize(features.to(self.weight.dtype), dim=-1)
        return features @ self.weight.t()

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]


@torch.no_grad()
def head_weight(encode_text: Callable[[Tensor], Tensor], tokenize: Callable[[list[str]], Tensor],
                names: Sequence[str], templates: Sequence[str], logit_scale: float,
                device: torch.device | str = "cpu") -> Tensor:
    """W [C, D]: per class the re-normalised mean of the normalised prompt embeddings, times `logit_scale`
    (already exponentiated)."""
    if not names or not templates:
        raise ValueError("a zero-shot head needs at least one class name and one template")
    prompts = [t.replace("{}", name) for name in names for t in templates]  # class-major: [C * K]
    chunks = []
    for i in range(0, len(prompts), PROMPT_BATCH):
        tokens = tokenize(prompts[i:i + PROMPT_BATCH]).to(device)
        chunks.append(F.normalize(encode_text(tokens).float(), dim=-1))
    emb = torch.cat(chunks).reshape(len(names), len(templates), -1)  # [C, K, D]
    return F.normalize(emb.mean(dim=1), dim=-1) * logit_scale


def head_cache_key(*parts: object) -> str:
    """A short, stable hash of what determines a head (architecture, text weights, names, templates)."""
    blob = json.dumps([str(p) if not isinstance(p, (list, dict)) else p for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_head(path: Path, build: Callable[[], Tensor]) -> ZeroShotHead:
    """Load the head weight from `path` (safetensors), or build it and save it there first."""
    from safetensors.torch import load_file, save_file

    if path.is_file():
        return ZeroShotHead(load_file(str(path))["weight"])
    weight = build().detach().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"weight": weight}, str(tmp))
    tmp.replace(path)
    return ZeroShotHead(weight)
