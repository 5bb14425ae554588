"""A tiny in-memory Zoo for the data-driven methods' tests: 2-block open_clip towers, random frozen heads,
and labels that each expert gets right (so accuracies, entropies and cross-entropies mean something)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import TensorDataset

from explorer.zoo.base import Zoo

from ..conftest import tiny_state_dicts, tiny_tower

SIZES = {"train": 32, "validation": 48, "test": 40}


class TinyZoo(Zoo):
    """3 tasks of 3 classes on 16x16 noise images; a task's label is its own expert's prediction."""

    name = "tiny"

    def __init__(self, num_tasks: int = 3, noise: float = 0.2, seed: int = 0):
        self.seed = seed
        self.base, self.experts = tiny_state_dicts(num_tasks, seed, noise)
        self.tasks = list(self.experts)
        gen = torch.Generator().manual_seed(seed + 7)
        self.heads = {t: nn.Linear(8, 3) for t in self.tasks}
        for head in self.heads.values():
            with torch.no_grad():
                head.weight.copy_(torch.randn(3, 8, generator=gen) * 3.0)
                head.bias.zero_()
        self._data = {}

    def class_names(self, task):
        return ["a", "b", "c"]

    def base_state_dict(self):
        return dict(self.base)

    def expert_state_dict(self, task):
        return dict(self.experts[task])

    def head(self, task):
        return self.heads[task]

    def build_model(self):
        return tiny_tower(self.seed + 100)  # other weights than the base: they must come functionally

    def dataset(self, task, split):
        self.check_task(task)
        self.check_split(split)
        if (task, split) not in self._data:
            offset = self.tasks.index(task) * 3 + ("train", "validation", "test").index(split)
            gen = torch.Generator().manual_seed(1000 + offset)
            images = torch.randn(SIZES[split], 3, 16, 16, generator=gen)
            with torch.no_grad():
                labels = self.heads[task](functional_call(self.build_model(), self.experts[task], (images,)))
            self._data[task, split] = TensorDataset(images, labels.argmax(dim=1))
        return self._data[task, split]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a shared CPU two threads can be 50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
