"""Real CLIP zoos: an open_clip architecture, a base image encoder and fine-tuned experts from files or the hub.

    zoo = ex.load_zoo("openclip", arch="ViT-B-32", base="openai",
                      experts={"mnist": "hf-hub:owner/repo/file.pt", "svhn": "/path/svhn.safetensors"},
                      data_root="~/data")
    zoo = ex.load_zoo("clip-vit-b32-ta8", family="fusionbench")   # a named zoo from zoos/*.json

State dicts use open_clip vision-tower names without the `visual.` prefix; experts are read from disk on
each request (lazily, in the dtype they were stored in), heads come from the pretrained text tower.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..device import resolve_device
from ..weights import file_sha256
from . import NAMED_DIR, register_zoo
from .base import Zoo
from .datasets import task_dataset, task_spec
from .formats import read_checkpoint, to_openclip
from .heads import cached_head, head_cache_key, head_weight
from .hub import HubFile, resolve_sources

TAG_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
DEFAULT_CACHE = Path("~/.cache/model-merging-explorer").expanduser()


def model_config(arch: str) -> dict[str, Any]:
    """The open_clip model config of a built-in name (ViT-B-32, ViT-B-16, ViT-L-14) or of a config JSON file."""
    if arch.endswith(".json") or Path(arch).is_file():
        path = Path(arch).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"open_clip model config not found: {path}")
        return json.loads(path.read_text())
    import open_clip

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ValueError(f"unknown open_clip architecture {arch!r}: use ViT-B-32, ViT-B-16, ViT-L-14 (or any of "
                         f"open_clip.list_models()), or a path to a model-config JSON")
    return cfg


def pretrained_tag(arch: str, source: str) -> dict[str, Any]:
    """open_clip's pretrained config when `source` is a tag of `arch` (such as "openai"), else {}."""
    if Path(source).exists() or arch.endswith(".json") or "/" in source:
        return {}
    import open_clip

    return open_clip.get_pretrained_cfg(arch, source) or {}


def tag_source(arch: str, tag: str) -> HubFile:
    """The hub file that holds the open_clip weights of `arch` / `tag`."""
    cfg = pretrained_tag(arch, tag)
    if not cfg.get("hf_hub"):
        raise ValueError(f"{tag!r} is not an open_clip pretrained tag of {arch} with hub weights; "
                         f"pass a local checkpoint file instead")
    parts = cfg["hf_hub"].rstrip("/").split("/")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    return HubFile(repo, (filename,) if filename else TAG_FILES)


class OpenClipZoo(Zoo):
    """A base open_clip image encoder plus experts, zero-shot heads from its text tower, and task data."""

    def __init__(self, arch: str, base: str = "openai", experts: dict[str, str] | None = None, *,
                 data_root: str | Path | None = None, device: str | torch.device = "auto",
                 cache_dir: str | Path | None = None, text: str | None = None, allow_pickle: bool = False,
                 name: str = "openclip", task_specs: dict[str, dict] | None = None,
                 hub_cache: str | None = None):
        if not experts:
            raise ValueError("an openclip zoo needs experts={task: source}, one fine-tuned checkpoint per task")
        self.name, self.arch, self.tasks = name, arch, list(experts)
        self.cfg = model_config(arch)
        base_tag = pretrained_tag(arch, str(base))
        if text is None and not arch.endswith(".json"):
            text = str(base) if base_tag else "openai"
        self.text_tag = pretrained_tag(arch, text) if text else {}
        self.quick_gelu = bool(self.cfg.get("quick_gelu") or base_tag.get("quick_gelu")
                               or self.text_tag.get("quick_gelu"))
        sources = {"base": tag_source(arch, str(base)) if base_tag else base}
        if text and text != str(base):  # the full CLIP checkpoint whose text tower makes the zero-shot heads
            sources["text"] = tag_source(arch, text) if self.text_tag else text
        sources.update({f"expert {t}": src for t, src in experts.items()})
        self.files = resolve_sources(sources, hub_cache)  # downloads now (online) or fails now (offline)
        if text and text == str(base):
            self.files["text"] = self.files["base"]
        self.data_root = data_root if data_root is not None else os.environ.get("EXPLORER_DATA_ROOT")
        self.allow_pickle = allow_pickle
        self.device = resolve_device(device)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE
        self.task_specs = dict(task_specs or {})

    # --- weights ------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from open_clip.model import _build_vision_tower

        return _build_vision_tower(self.cfg["embed_dim"], self.cfg["vision_cfg"], quick_gelu=self.quick_gelu)

    @cached_property
    def expected_shapes(self) -> dict[str, torch.Size]:
        with torch.device("meta"):
            return {k: v.shape for k, v in self.build_model().state_dict().items()}

    def _load(self, label: str, fill: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        path = self.files[label]
        raw = read_checkpoint(path, allow_pickle=self.allow_pickle)
        return to_openclip(raw, expected=self.expected_shapes, fill=fill, source=f"{label} ({path})")

    def fingerprint(self) -> str:
        """A short hash of the weight files (cheaper than the base class's pass over every loaded tensor)."""
        labels = ["base"] + [f"expert {t}" for t in self.tasks]
        joined = "".join(f"{label}:{file_sha256(self.files[label])};" for label in labels)
        return hashlib.sha256(joined.encode()).hexdigest()[:16]

    @cached_property
    def _base(self) -> dict[str, Tensor]:
        return self._load("base")

    def base_state_dict(self) -> dict[str, Tensor]:
        return dict(self._base)

    def expert_state_dict(self, task: str) -> dict[str, Tensor]:
        self.check_task(task)
        return self._load(f"expert {task}", fill=self._base)

    # --- heads and data -----------------------------------------------------------------------------
    def spec(self, task: str) -> dict[str, Any]:
        self.check_task(task)
        return self.task_specs[task] if task in self.task_specs else task_spec(task)

    def class_names(self, task: str) -> list[str]:
        return list(self.spec(task)["classnames"])

    def head(self, task: str) -> nn.Module:
        spec = self.spec(task)
        names = spec.get("prompt_names", spec["classnames"])
        if "text" not in self.files:
            raise ValueError(f"zoo {self.name!r} has no text tower for zero-shot heads: pass text= (an open_clip "
                             f"pretrained tag or a full CLIP checkpoint file) to load_zoo")
        text_file = self.files["text"]
        stat = text_file.stat()
        key = head_cache_key(self.cfg, self.quick_gelu, str(text_file.resolve()), stat.st_size, names,
                             spec["templates"])
        path = self.cache_dir / "heads" / f"{task}-{key}.safetensors"
        head = cached_head(path, lambda: self._head_weight(names, spec["templates"]))
        return head.to(self.device).requires_grad_(False).eval()

    def _head_weight(self, names: list[str], templates: list[str]) -> Tensor:
        clip = self._text_model()
        return head_weight(clip.encode_text, self._tokenizer(), names, templates,
                           float(clip.logit_scale.detach().exp()), self.device)

    def _text_model(self) -> nn.Module:
        from open_clip.factory import load_checkpoint
        from open_clip.model import CLIP

        cfg = {k: v for k, v in self.cfg.items() if k not in ("custom_text", "quick_gelu")}
        clip = CLIP(**cfg, quick_gelu=self.quick_gelu)
        load_checkpoint(clip, str(self.files["text"]), strict=False)
        return clip.to(self.device).eval()

    def _tokenizer(self):
        from open_clip.tokenizer import SimpleTokenizer

        return SimpleTokenizer(context_length=self.cfg["text_cfg"].get("context_length", 77))

    def transform(self):
        """open_clip's evaluation preprocessing for this architecture (resize, center crop, normalise)."""
        from open_clip import image_transform
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        tag = self.text_tag
        return image_transform(self.cfg["vision_cfg"]["image_size"], is_train=False,
                               mean=tag.get("mean", OPENAI_DATASET_MEAN), std=tag.get("std", OPENAI_DATASET_STD))

    def dataset(self, task: str, split: str) -> Dataset:
        self.check_split(split)
        return task_dataset(self.spec(task), self.data_root, split, self.transform())


@register_zoo("openclip")
def load_openclip(**kwargs: Any) -> OpenClipZoo:
    """`load_zoo("openclip", arch=..., base=..., experts={task: source}, data_root=..., device="auto")`."""
    if "arch" not in kwargs:
        raise ValueError("load_zoo('openclip', ...) needs arch= (ViT-B-32, ViT-B-16, ViT-L-14 or a config JSON path)")
    return OpenClipZoo(**kwargs)


# --- named zoos: zoos/<name>.json ------------------------------------------------------------------------
ZOO_DIR = NAMED_DIR


def named_zoos() -> dict[str, dict[str, Any]]:
    """Every named zoo description (zoos/*.json), by name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(ZOO_DIR.glob("*.json"))}


def named_sources(spec: dict[str, Any], family: str | None = None, root: str | Path | None = None,
                  tasks: list[str] | None = None) -> dict[str, Any]:
    """The load_zoo("openclip") arguments of one family of a named zoo: arch, base, text, experts."""
    family = family or spec["default_family"]
    if family not in spec["families"]:
        raise ValueError(f"zoo {spec['name']!r} has no family {family!r}; families: {sorted(spec['families'])}")
    fam = spec["families"][family]
    if fam.get("needs_root") and root is None:
        raise ValueError(f"family {family!r} of {spec['name']!r} is not on a hub: pass root='/path/to/folder' "
                         f"holding its files ({fam['how_to_get']})")
    ids = fam.get("ids", {})
    names = list(fam.get("tasks", spec["tasks"]))
    chosen = names if tasks is None else list(tasks)
    unknown = [t for t in chosen if t not in names]
    if unknown:
        raise ValueError(f"zoo {spec['name']!r} ({family}) has no task(s) {unknown}; it has {names}")
    fill = {"root": str(Path(root).expanduser()) if root is not None else ""}
    experts = {t: fam["expert"].format(id=ids.get(t, t), **fill) for t in chosen}
    return {"arch": spec["arch"], "base": fam["base"].format(**fill), "text": fam.get("text"), "experts": experts}


@register_zoo("*")
def load_named(name: str, *, family: str | None = None, root: str | Path | None = None,
               tasks: list[str] | None = None, **kwargs: Any) -> OpenClipZoo:
    """`load_zoo("clip-vit-b32-ta8", family="fusionbench")`, or `load_zoo("clip-vit-b32-ta8:fusionbench")`
    (the form the CLI's --zoo takes): a named zoo from zoos/*.json."""
    if ":" in name and family is None:
        name, family = name.split(":", 1)
    zoos = named_zoos()
    if name not in zoos:
        raise ValueError(f"unknown zoo {name!r}; known zoos: demo, openclip, {', '.join(zoos)}")
    return OpenClipZoo(name=name, **named_sources(zoos[name], family, root, tasks), **kwargs)
