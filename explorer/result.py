"""MergeResult: what a merge method produced (deltas, masks, coefficients) and how (params, timings).

Beside it, the `AddOn` protocol and its registry: a method that trains extras run at inference (Surgery, Twin, WEMoE)
defines its add-on in its own module and registers it by kind, so results, inference and saved runs need only this.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import pandas as pd
import torch
from torch import Tensor, nn

from .registry import Registry
from .taskvec import TaskVectors


class AddOn(ABC):
    """What an add-on provides: features of images under merged weights, and its saved form (tensors + config)."""

    kind: ClassVar[str] = ""  # the name records store, to find the class again (`get_addon`)
    needs_task: ClassVar[bool] = False  # the task id is needed at inference
    routes: ClassVar[bool] = False  # a router picks the weights per input

    @abstractmethod
    def features(self, model: nn.Module, weights: Mapping[str, Tensor], images: Tensor, task: str) -> Tensor:
        """Image features [N, D] of `images` (task `task`) through `model` with the merged `weights` and the add-on."""

    @abstractmethod
    def tensors(self) -> dict[str, Tensor]:
        """Every tensor needed to rebuild the add-on (name -> tensor), for safetensors."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The JSON-able rest of what `rebuild` needs (task names, shapes)."""

    @classmethod
    @abstractmethod
    def rebuild(cls, config: dict[str, Any], tensors: Mapping[str, Tensor]) -> "AddOn":
        """The add-on from `config()` and `tensors()`."""

    def to(self, device: str | torch.device) -> "AddOn":
        """This add-on with its tensors on `device` (itself when they are there already)."""
        tensors, device = self.tensors(), torch.device(device)
        if all(v.device == device for v in tensors.values()):
            return self
        return self.rebuild(self.config(), {k: v.to(device) for k, v in tensors.items()})


_ADDONS: Registry[type[AddOn]] = Registry("add-on kind")


def register_addon(cls: type[AddOn]) -> type[AddOn]:
    """Class decorator: register an add-on under its `kind`, the name saved records use to rebuild it."""
    if not cls.kind:
        raise ValueError(f"add-on {cls.__name__} needs a kind")
    return _ADDONS.add(cls.kind, cls)


def get_addon(kind: str) -> type[AddOn]:
    """The add-on class registered under `kind`, or a ValueError listing the known kinds."""
    return _ADDONS.get(kind)


def unprefixed(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The saved tensors whose names start with `prefix`, named without it (how a rebuild reads its parts)."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


@dataclass
class MergeResult:
    """The output of `ex.merge`.

    - `delta`: name -> merged task vector, so theta = theta_0 + delta. For per-task methods (TALL
      masks, EMR) it is the shared vector that the per-task masks select from.
    - `masks`: task -> name -> bool tensor, where the method masks.
    - `task_scales`: for per-task methods, task t's model is theta_0 + task_scales[t] * masks[t] * delta.
    - `coefficients`: a table indexed by task (or "all"), one column per layer or parameter.
    - `addon`: trained extras run at inference next to the merged weights (an `AddOn`: per-task feature
      modules, a router over task-specific vectors, routed MLPs), or None.
    - `info`: timings, notes, loss curves.
    """

    tv: TaskVectors
    delta: dict[str, Tensor] | None
    method: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    masks: dict[str, dict[str, Tensor]] | None = None
    coefficients: pd.DataFrame | None = None
    task_scales: dict[str, float] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    addon: AddOn | None = None

    @property
    def tasks(self) -> list[str]:
        return self.tv.tasks

    @property
    def per_task(self) -> bool:
        """True when the method gives one model per task (the task id is needed at inference)."""
        return self.task_scales is not None

    @property
    def needs_task(self) -> bool:
        """True when inference needs the task id: one model per task, or per-task add-on modules."""
        return self.per_task or (self.addon is not None and self.addon.needs_task)

    @property
    def routes(self) -> bool:
        """True when a router picks the weights per input at inference (no single state dict is the model)."""
        return self.addon is not None and self.addon.routes

    @property
    def inference(self) -> str:
        """What inference needs beyond one state dict, in words ("" when nothing)."""
        if self.per_task:
            return "one model per task: the task id picks it"
        if self.addon is not None:
            what = "the task id picks a feature module" if self.addon.needs_task else "a router mixes weights per input"
            return f"{self.addon.kind} add-on: {what}"
        return ""

    def task_delta(self, task: str) -> dict[str, Tensor]:
        """The delta of the model used for `task`: its own model for per-task methods, else the merged one."""
        if not self.per_task:
            self.tv.task_index(task)
            return self.delta
        if task not in self.task_scales:
            raise KeyError(f"unknown task {task!r}; this result has {list(self.task_scales)}")
        scale, mask = self.task_scales[task], self.masks[task]
        return {n: scale * mask[n].to(d.dtype) * d for n, d in self.delta.items()}

    def state_dict(self, task: str | None = None) -> dict[str, Tensor]:
        """theta_0 + delta (or, for per-task methods, theta_0 + that task's delta)."""
        if self.per_task and task is None:
            raise ValueError(f"method {self.method!r} gives one model per task; call state_dict(task=...) "
                             f"with one of {self.tasks}")
        delta = self.task_delta(task) if task is not None else self.delta
        return self.tv.state_dict(delta)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items())
        extra = (" per-task" if self.per_task else "") + (f" +{self.addon.kind}" if self.addon is not None else "")
        return f"MergeResult({self.method}({shown}){extra}, tasks={self.tasks})"
