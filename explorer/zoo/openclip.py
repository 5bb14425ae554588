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
from .datasets import data_problem, task_dataset, task_names, task_spec
from .formats import check_keys, read_checkpoint, to_openclip
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


KNOWN_ARCHS = ("ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "ViT-H-14", "ViT-g-14", "ViT-bigG-14")


def build_tower(cfg: dict[str, Any], quick_gelu: bool) -> nn.Module:
    """The open_clip vision tower of a model config."""
    from open_clip.model import _build_vision_tower

    return _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=quick_gelu)


def tower_shapes(cfg: dict[str, Any]) -> dict[str, torch.Size]:
    """name -> shape of every parameter of a model config's vision tower (built on the meta device: no memory)."""
    with torch.device("meta"):
        return {k: v.shape for k, v in build_tower(cfg, False).state_dict().items()}


def infer_arch(sd: dict[str, Tensor]) -> str | None:
    """The known open_clip architecture whose vision tower has exactly the shapes of `sd` (a missing `proj`, as
    in an HF vision-only checkpoint, is allowed), or None."""
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    for arch in KNOWN_ARCHS:
        want = {k: tuple(v) for k, v in tower_shapes(model_config(arch)).items()}
        if "proj" not in shapes:
            want.pop("proj", None)
        if want == shapes:
            return arch
    return None


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
    """A base open_clip image encoder plus experts, zero-shot heads from its text tower, and task data.

    Weight space first: the base and expert files are resolved at load time, everything evaluation needs (the
    architecture's module, the text tower for the heads, the task data) only on the first evaluation, so a zoo of
    checkpoints alone merges and analyses offline. `evaluation_problems()` says what is missing."""

    def __init__(self, arch: str | None, base: str = "openai", experts: dict[str, str] | None = None, *,
                 data_root: str | Path | None = None, device: str | torch.device = "auto",
                 cache_dir: str | Path | None = None, text: str | None = None, allow_pickle: bool = False,
                 name: str = "openclip", task_specs: dict[str, dict] | None = None,
                 hub_cache: str | None = None, keep_unknown: bool = False):
        if not experts:
            raise ValueError("an openclip zoo needs experts={task: source}, one fine-tuned checkpoint per task")
        self.name, self.arch, self.tasks = name, arch, list(experts)
        self._arch_cfg = model_config(arch) if arch is not None else None
        base_tag = pretrained_tag(arch, str(base)) if arch is not None else {}
        if text is None and (arch is None or not arch.endswith(".json")):
            text = str(base) if base_tag else "openai"
        self.text = text or None
        self.base_tag = base_tag
        sources = {"base": tag_source(arch, str(base)) if base_tag else base}
        sources.update({f"expert {t}": src for t, src in experts.items()})
        self.files = resolve_sources(sources, hub_cache)  # downloads now (online) or fails now (offline)
        self.hub_cache = hub_cache
        self._text_file: Path | None = None
        self._text_error: str | None = None
        self.data_root = data_root if data_root is not None else os.environ.get("EXPLORER_DATA_ROOT")
        self.allow_pickle = allow_pickle
        self.keep_unknown = keep_unknown  # names of no known format stay as they are (a folder of any state dicts)
        self.device = resolve_device(device)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE
        self.task_specs = dict(task_specs or {})

    # --- architecture -------------------------------------------------------------------------------
    @cached_property
    def cfg(self) -> dict[str, Any] | None:
        """The open_clip model config: of `arch`, or of the known architecture whose shapes the base has (None:
        no model definition, so the zoo merges and analyses but cannot evaluate)."""
        if self._arch_cfg is not None:
            return self._arch_cfg
        self.arch = infer_arch(self._base)
        return model_config(self.arch) if self.arch else None

    @property
    def text_tag(self) -> dict[str, Any]:
        return pretrained_tag(self.arch, self.text) if (self.text and self.cfg is not None) else {}

    @property
    def quick_gelu(self) -> bool:
        cfg = self.cfg or {}
        return bool(cfg.get("quick_gelu") or self.base_tag.get("quick_gelu") or self.text_tag.get("quick_gelu"))

    def text_file(self) -> Path:
        """The full CLIP checkpoint whose text tower makes the zero-shot heads, resolved on first use (a hub tag
        is looked up in the cache, or downloaded when online)."""
        if self._text_file is None:
            if self.text is None:
                raise ValueError(f"zoo {self.name!r} has no text tower for zero-shot heads: pass text= (an open_clip "
                                 f"pretrained tag such as 'openai', or a full CLIP checkpoint file) to load_zoo, or "
                                 f"\"text\" in the zoo file")
            if self._text_error is not None:
                raise FileNotFoundError(self._text_error)
            source = tag_source(self.arch, self.text) if self.text_tag else self.text
            try:
                self._text_file = resolve_sources({"text tower": source}, self.hub_cache)["text tower"]
            except (FileNotFoundError, ValueError) as err:
                self._text_error = str(err)  # the hub probe takes seconds: ask once per zoo
                raise
        return self._text_file

    # --- weights ------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        if self.cfg is None:
            raise ValueError(f"zoo {self.name!r} has no model definition: its checkpoints match none of "
                             f"{', '.join(KNOWN_ARCHS)}; name the open_clip architecture with arch= (a model name "
                             f"or a model-config JSON path), or \"arch\" in the zoo file")
        return build_tower(self.cfg, self.quick_gelu)

    @cached_property
    def expected_shapes(self) -> dict[str, torch.Size] | None:
        """name -> shape of the architecture's parameters (None when `arch` was not given: experts are then
        checked against the base only)."""
        return None if self._arch_cfg is None else tower_shapes(self._arch_cfg)

    def _load(self, label: str, fill: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        path = self.files[label]
        raw = read_checkpoint(path, allow_pickle=self.allow_pickle)
        expected = self.expected_shapes
        out = to_openclip(raw, fill=fill, source=f"{label} ({path})", keep_unknown=self.keep_unknown)
        if expected is not None and label == "base" and "proj" not in out and "proj" in expected:
            expected = {k: v for k, v in expected.items() if k != "proj"}  # an HF vision-only base: no projection
        if expected is not None and fill is not None and "proj" not in fill:
            expected = {k: v for k, v in expected.items() if k != "proj"}
        if expected is not None:
            check_keys(out, expected, f"{label} ({path})")
        return out

    @property
    def has_projection(self) -> bool:
        """Whether the base has the image projection (`proj`; an HF CLIPVisionModel checkpoint has none)."""
        return "proj" in self._base

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
        if task in self.task_specs:
            return self.task_specs[task]
        try:
            return task_spec(task)
        except KeyError:
            if task.lower() != task:
                return task_spec(task.lower())
            raise

    def class_names(self, task: str) -> list[str]:
        return list(self.spec(task)["classnames"])

    def head(self, task: str) -> nn.Module:
        spec = self.spec(task)
        names = spec.get("prompt_names", spec["classnames"])
        text_file = self.text_file()
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
        load_checkpoint(clip, str(self.text_file()), strict=False)
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

    # --- what evaluation needs ----------------------------------------------------------------------
    def evaluation_problems(self, tasks: list[str] | None = None, split: str = "test") -> list[str]:
        """What evaluation on `tasks` lacks: the model definition, the image projection, the text tower for the
        heads, and per task its class names and data; [] when nothing is missing."""
        problems = []
        if self.cfg is None:
            problems.append(f"a model definition: the checkpoints match none of {', '.join(KNOWN_ARCHS)}; set "
                            f"\"arch\" in the zoo file (or arch= in load_zoo) to the open_clip architecture")
        elif not self.has_projection:
            problems.append(f"the image projection: the base ({self.files['base'].name}) is a vision-only Hugging "
                            f"Face CLIPVisionModel checkpoint without visual_projection; evaluation needs the "
                            f"projection from a full CLIP checkpoint: use a CLIPModel (or open_clip) checkpoint of the "
                            f"same pretrained model as the base (the experts keep its projection)")
        if self.text is None:
            problems.append("a text tower for the zero-shot heads: set \"text\" in the zoo file (or text= in "
                            "load_zoo) to an open_clip pretrained tag such as \"openai\" or a full CLIP checkpoint")
        elif self.cfg is not None:
            try:
                self.text_file()
            except (FileNotFoundError, ValueError) as err:
                problems.append(f"the text tower for the zero-shot heads ({self.text}): {err}")
        for task in tasks or self.tasks:
            try:
                spec = self.spec(task)
            except KeyError:
                problems.append(f"class names for task {task!r}: it is not a known task ({', '.join(task_names())}); "
                                f"give its classnames (and templates) under \"tasks\" in the zoo file")
                continue
            if (why := data_problem(spec, self.data_root, split)) is not None:
                problems.append(f"{split} data for task {task!r}: {why}")
        return problems


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
