"""The embedded demo zoo: a small CLIP-style ViT, its pretrained base and 8 experts, loaded offline.

Weights live in `explorer/demozoo/weights/` (package data) (safetensors, float16 on disk, float32 in memory);
`config.json` beside them holds the architecture, tasks, class names and the recipe. Task data are generated from
seeds by `explorer.demozoo.data`, so no image files ship. Both modules sit at the zoo layer (see `explorer.demozoo`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from .. import quick
from ..weights import read_weights
from ..zoo import register_zoo
from ..zoo.base import Zoo
from .data import generate

DEFAULT_DIR = Path(__file__).resolve().parent / "weights"  # package data: it ships in the wheel
VARIANTS = ("clean", "backdoored")  # which expert of a task a zoo uses; backdoored ones sit in experts/backdoored/


class CosineHead(nn.Module):
    """A frozen zero-shot-style head: logits = scale * cos(feature, class prototype), as CLIP's text heads."""

    def __init__(self, weight: Tensor, scale: float):
        super().__init__()
        self.register_buffer("weight", F.normalize(weight.float(), dim=-1))  # [C, D]
        self.scale = float(scale)

    def forward(self, features: Tensor) -> Tensor:
        return self.scale * F.normalize(features, dim=-1) @ self.weight.t()


def build_encoder(arch: dict) -> nn.Module:
    """An open_clip VisionTransformer with the given architecture (parameter names as in ViT-B/32's visual tower)."""
    from open_clip.transformer import VisionTransformer

    return VisionTransformer(**arch)


def _load_fp32(path: Path) -> dict[str, Tensor]:
    if not path.exists():
        raise FileNotFoundError(f"demo zoo file {path} is missing; rebuild it with `explorer zoo build-demo`")
    return {k: v.float() for k, v in read_weights(path).items()}


def read_config(path: Path) -> dict:
    """A demo zoo's config.json, or a ValueError naming the file and what is wrong with it."""
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); rebuild the zoo with `explorer zoo build-demo`") from err
    tasks = config.get("tasks") if isinstance(config, dict) else None
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise ValueError(f"{path} has no list of task names under 'tasks'; rebuild the zoo with "
                         "`explorer zoo build-demo`")
    return config


class DemoZoo(Zoo):
    """The demo zoo read from `root` (default `explorer/demozoo/weights`); experts and datasets load on first use."""

    name = "demo"

    def __init__(self, root: str | Path | None = None, experts: Mapping[str, str] | None = None):
        self.root = Path(root) if root is not None else DEFAULT_DIR
        config_path = self.root / "config.json"
        if not config_path.exists():
            raise FileNotFoundError(f"no demo zoo at {self.root} (config.json missing); build one with "
                                    f"`explorer zoo build-demo --out {self.root}`")
        self.config = read_config(config_path)
        self.tasks = list(self.config["tasks"])
        self.variants = self._check_variants(dict(experts or {}))
        self._experts: dict[str, dict[str, Tensor]] = {}
        self._data: dict[tuple[str, str, int], TensorDataset] = {}
        self._base: dict[str, Tensor] | None = None
        self._heads: dict[str, CosineHead] | None = None

    def _check_variants(self, experts: dict[str, str]) -> dict[str, str]:
        """task -> "clean" | "backdoored" for every task, after checking the requested swaps exist."""
        for task, variant in experts.items():
            self.check_task(task)
            if variant not in VARIANTS:
                raise ValueError(f"expert variant {variant!r} for {task!r} is unknown; use one of {VARIANTS}")
            if variant == "backdoored" and task not in self.backdoored_tasks():
                raise ValueError(f"the demo zoo has no backdoored {task!r} expert (it has {self.backdoored_tasks()}); "
                                 f"add one with `explorer zoo add-backdoors --tasks {task}`")
        return {t: experts.get(t, "clean") for t in self.tasks}

    def backdoored_tasks(self) -> list[str]:
        """The tasks with a stored backdoored expert (config.json "backdoors")."""
        return [t for t in self.tasks if t in self.config.get("backdoors", {})]

    def backdoor(self, task: str) -> dict | None:
        if self.variants[task] != "backdoored":
            return None
        return dict(self.config["backdoors"][task]["trigger"])

    def class_names(self, task: str) -> list[str]:
        self.check_task(task)
        return list(self.config["classes"][task])

    def base_state_dict(self) -> dict[str, Tensor]:
        if self._base is None:
            self._base = _load_fp32(self.root / "base.safetensors")
        return dict(self._base)

    def expert_state_dict(self, task: str) -> dict[str, Tensor]:
        self.check_task(task)
        if task not in self._experts:
            folder = self.root / "experts" / ("backdoored" if self.variants[task] == "backdoored" else "")
            self._experts[task] = _load_fp32(folder / f"{task}.safetensors")
        return dict(self._experts[task])

    def head(self, task: str) -> nn.Module:
        self.check_task(task)
        if self._heads is None:
            weights = _load_fp32(self.root / "heads.safetensors")
            scale = self.config["logit_scale"]
            self._heads = {t: CosineHead(weights[t], scale).requires_grad_(False).eval() for t in self.tasks}
        return self._heads[task]

    def dataset(self, task: str, split: str) -> Dataset:
        """The task's generated images for `split` (made once, then kept)."""
        self.check_task(task)
        self.check_split(split)
        size = quick.cap_images(self.config["split_sizes"][split])  # the full split unless EXPLORER_QUICK=1
        if (task, split, size) not in self._data:
            images, labels = generate(task, split, size, self.config["data_seed"])
            self._data[task, split, size] = TensorDataset(images, labels)
        return self._data[task, split, size]

    def build_model(self) -> nn.Module:
        return build_encoder(self.config["arch"])


@register_zoo("demo")
def load_demo(root: str | Path | None = None, experts: Mapping[str, str] | None = None) -> DemoZoo:
    """The embedded demo zoo (offline); `root` points at another build of it; `experts={"signs": "backdoored"}`
    swaps in a task's backdoored expert."""
    return DemoZoo(root, experts)


@register_zoo("demo-backdoored")
def load_demo_backdoored(root: str | Path | None = None) -> DemoZoo:
    """The demo zoo with every stored backdoored expert in place of its clean one (the dashboard's security zoo)."""
    zoo = DemoZoo(root, {t: "backdoored" for t in DemoZoo(root).backdoored_tasks()})
    zoo.name = "demo-backdoored"
    return zoo
