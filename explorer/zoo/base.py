"""The Zoo interface: a base model, its experts, frozen per-task heads and task data.

The demo zoo and the real open_clip zoos both implement it, so task vectors, evaluation and the
test-time methods never care where the weights came from.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

SPLITS = ("train", "validation", "test")


class EvaluationUnavailable(ValueError):
    """A zoo that lacks something evaluation needs (model definition, heads, data): `problems` lists each."""

    def __init__(self, zoo: str, problems: list[str]):
        self.zoo, self.problems = zoo, list(problems)
        super().__init__(f"zoo {zoo!r} cannot evaluate: it lacks " + "; ".join(self.problems)
                         + ". Merging, the analyses and export need none of these.")


class Zoo(ABC):
    """A base image encoder, one fine-tuned expert per task, frozen heads and datasets.

    State dicts use open_clip vision-tower parameter names (`conv1.weight`,
    `transformer.resblocks.0.attn.in_proj_weight`, ...), and `build_model()` returns a module whose
    `state_dict()` has exactly those keys, so `torch.func.functional_call` can run any merge.
    """

    name: str = "zoo"
    tasks: list[str] = []
    source: str | None = None  # the file or folder a zoo of your own was opened from (run records point to it)

    @abstractmethod
    def class_names(self, task: str) -> list[str]:
        """The class names of `task`, in label order."""

    @abstractmethod
    def base_state_dict(self) -> dict[str, Tensor]:
        """theta_0: the pretrained encoder's state dict."""

    @abstractmethod
    def expert_state_dict(self, task: str) -> dict[str, Tensor]:
        """theta_t: the encoder fine-tuned on `task` (loaded lazily)."""

    @abstractmethod
    def head(self, task: str) -> nn.Module:
        """The frozen classification head of `task`: encoder features [N, D] -> logits [N, C]."""

    @abstractmethod
    def dataset(self, task: str, split: str) -> Dataset:
        """(preprocessed image tensor, integer label) pairs of `task` for split train/validation/test."""

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A fresh image encoder of this zoo's architecture (weights are supplied functionally)."""

    def backdoor(self, task: str) -> dict | None:
        """The trigger (fields of `explorer.security.Trigger`) that this zoo's expert for `task` was planted with,
        or None: evaluation then reports that task's attack success rate. Clean zoos keep this default."""
        return None

    def evaluation_problems(self, tasks: list[str] | None = None, split: str = "test") -> list[str]:
        """What evaluating `tasks` on `split` lacks (model definition, text tower for heads, data), one line each
        saying how to provide it; [] when evaluation can run. Zoos with everything on board keep this default."""
        return []

    def check_evaluable(self, tasks: list[str] | None = None, split: str = "test") -> None:
        """Raise one EvaluationUnavailable naming everything evaluation on `tasks` lacks."""
        problems = self.evaluation_problems(tasks, split)
        if problems:
            raise EvaluationUnavailable(self.name, problems)

    def check_task(self, task: str) -> None:
        if task not in self.tasks:
            raise ValueError(f"unknown task {task!r}; zoo {self.name!r} has {self.tasks}")

    def check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")

    def unlabeled(self, task: str, batch_size: int = 16, *, split: str = "test",
                  seed: int = 0) -> Iterator[Tensor]:
        """An endless, seeded, shuffled stream of unlabeled image batches (for test-time methods)."""
        data = self.dataset(task, split)
        gen = torch.Generator().manual_seed(seed)
        while True:
            loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=gen, drop_last=False)
            for images, _ in loader:
                yield images

    def fingerprint(self) -> str:
        """A short hash of the base and expert weights, for run records."""
        h = hashlib.sha256()
        for sd in [self.base_state_dict()] + [self.expert_state_dict(t) for t in self.tasks]:
            for name in sorted(sd):
                h.update(name.encode())
                h.update(sd[name].detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, tasks={self.tasks})"
