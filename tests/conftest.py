"""Shared fixtures: tiny open_clip vision towers with random weights, built on the fly."""
from __future__ import annotations

import pytest
import torch

import explorer as ex


def tiny_tower(seed: int = 0, *, width: int = 16, layers: int = 2, image_size: int = 16, patch_size: int = 8,
               output_dim: int = 8) -> torch.nn.Module:
    """A 2-block open_clip VisionTransformer with the same parameter names as ViT-B/32's visual tower."""
    from open_clip.transformer import VisionTransformer

    torch.manual_seed(seed)
    return VisionTransformer(image_size=image_size, patch_size=patch_size, width=width, layers=layers, heads=2,
                             mlp_ratio=2.0, output_dim=output_dim)


def tiny_state_dicts(num_tasks: int = 3, seed: int = 0, noise: float = 0.01):
    """(base state dict, {task_i: expert state dict}) where each expert = base + seeded Gaussian noise."""
    base = {k: v.clone() for k, v in tiny_tower(seed).state_dict().items()}
    gen = torch.Generator().manual_seed(seed + 1)
    experts = {}
    for t in range(num_tasks):
        experts[f"task{t}"] = {k: v + noise * torch.randn(v.shape, generator=gen) for k, v in base.items()}
    return base, experts


def write_zoo_folder(root, num_tasks: int = 3):
    """A folder zoo (`base.safetensors` + `<task>.safetensors`) of tiny towers: (folder, base, experts)."""
    from explorer.weights import write_weights

    base, experts = tiny_state_dicts(num_tasks=num_tasks)
    write_weights(base, root / "zoo" / "base.safetensors")
    for task, sd in experts.items():
        write_weights(sd, root / "zoo" / f"{task}.safetensors")
    return root / "zoo", base, experts


@pytest.fixture
def tiny_tv() -> ex.TaskVectors:
    base, experts = tiny_state_dicts()
    return ex.task_vectors(base, experts, device="cpu")


class TinyZoo(ex.Zoo):
    """Two tasks on a 2-block tower with seeded random frozen heads and 24 random images per split.

    Labels are built so the accuracies are known by construction: on every split, each expert predicts
    the first `EXPERT_RIGHT` images' labels and misses the other 24 - EXPERT_RIGHT (label = prediction + 1).
    """

    name = "tiny"
    tasks = ["a", "b"]
    N, EXPERT_RIGHT, CLASSES = 24, 18, 3

    def __init__(self):
        base, experts = tiny_state_dicts(num_tasks=2, noise=0.05)
        self._base, self._experts = base, {"a": experts["task0"], "b": experts["task1"]}
        self.expert_loads = 0
        self._heads = {}
        for i, t in enumerate(self.tasks):
            torch.manual_seed(100 + i)
            self._heads[t] = torch.nn.Linear(8, self.CLASSES).requires_grad_(False)
        self._data = {(t, s): self._make(t, s) for t in self.tasks for s in ("train", "validation", "test")}

    def _make(self, task: str, split: str) -> torch.utils.data.TensorDataset:
        gen = torch.Generator().manual_seed(10 * self.tasks.index(task) + ex.zoo.SPLITS.index(split))
        x = torch.randn(self.N, 3, 16, 16, generator=gen)
        model = self.build_model()
        model.load_state_dict(self._experts[task])
        with torch.no_grad():
            pred = self._heads[task](model(x)).argmax(-1)
        wrong = torch.arange(self.N) >= self.EXPERT_RIGHT
        return torch.utils.data.TensorDataset(x, torch.where(wrong, (pred + 1) % self.CLASSES, pred))

    def class_names(self, task):
        return [f"{task}{c}" for c in range(self.CLASSES)]

    def base_state_dict(self):
        return dict(self._base)

    def expert_state_dict(self, task):
        self.check_task(task)
        self.expert_loads += 1
        return dict(self._experts[task])

    def head(self, task):
        return self._heads[task]

    def dataset(self, task, split):
        self.check_split(split)
        return self._data[task, split]

    def build_model(self):
        return tiny_tower(0)


@pytest.fixture
def tiny_zoo() -> TinyZoo:
    return TinyZoo()
