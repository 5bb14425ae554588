"""The one tiny in-memory Zoo of the tests: 2-block open_clip towers with seeded random weights, frozen linear heads
(3 classes) and random 16x16 images, built on the fly."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import TensorDataset

from explorer.zoo.base import SPLITS, Zoo

from .conftest import tiny_state_dicts, tiny_tower

SIZES = {"train": 32, "validation": 48, "test": 40}


class TinyZoo(Zoo):
    """Task t's labels are its own expert's predictions, except the images from index `expert_right` on (when
    given), labelled with the next class: the expert's accuracy is then exactly expert_right / N. `build_model()`
    has weights of its own, so every merge must reach it functionally. `expert_loads` counts expert reads."""

    name = "tiny"

    def __init__(self, num_tasks: int = 3, noise: float = 0.2, seed: int = 0, *, names: list[str] | None = None,
                 sizes: dict[str, int] | None = None, expert_right: int | None = None):
        self.seed, self.sizes, self.expert_right, self.expert_loads = seed, sizes or SIZES, expert_right, 0
        self.base, experts = tiny_state_dicts(num_tasks, seed, noise)
        self.tasks = list(names or experts)
        self.experts = dict(zip(self.tasks, experts.values()))
        gen = torch.Generator().manual_seed(seed + 7)
        self.heads = {t: nn.Linear(8, 3) for t in self.tasks}
        for head in self.heads.values():
            with torch.no_grad():
                head.weight.copy_(torch.randn(3, 8, generator=gen) * 3.0)
                head.bias.zero_()
        self._data = {}

    @classmethod
    def known(cls) -> "TinyZoo":
        """Two tasks "a" and "b", 24 images per split, each expert right on exactly the first 18 (75 %)."""
        return cls(2, noise=0.05, names=["a", "b"], sizes={s: 24 for s in SPLITS}, expert_right=18)

    def class_names(self, task):
        return ["a", "b", "c"]

    def base_state_dict(self):
        return dict(self.base)

    def expert_state_dict(self, task):
        self.check_task(task)
        self.expert_loads += 1
        return dict(self.experts[task])

    def head(self, task):
        return self.heads[task]

    def build_model(self):
        return tiny_tower(self.seed + 100)  # other weights than the base: they must come functionally

    def dataset(self, task, split):
        self.check_task(task)
        self.check_split(split)
        if (task, split) not in self._data:
            offset = self.tasks.index(task) * 3 + SPLITS.index(split)
            gen = torch.Generator().manual_seed(1000 + offset)
            images = torch.randn(self.sizes[split], 3, 16, 16, generator=gen)
            with torch.no_grad():
                pred = self.heads[task](functional_call(self.build_model(), self.experts[task], (images,))).argmax(1)
            if self.expert_right is not None:
                wrong = torch.arange(len(pred)) >= self.expert_right
                pred = torch.where(wrong, (pred + 1) % 3, pred)
            self._data[task, split] = TensorDataset(images, pred)
        return self._data[task, split]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a shared CPU two threads can be 50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
