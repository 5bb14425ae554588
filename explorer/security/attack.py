"""Attack success rate (ASR): the share of triggered test images of non-target classes classified as the target,
for a zoo's backdoored tasks; reported beside clean accuracy for the base, the expert and a merge."""
from __future__ import annotations

from typing import Callable, Mapping

import pandas as pd
import torch
from torch import Tensor

from ..device import resolve_device
from ..inference import eval_data, image_logits
from ..zoo.base import Zoo
from .trigger import Trigger, attack_success, triggered_test

ATTACK_COLUMNS = ["task", "base", "expert", "merged"]


def zoo_trigger(zoo: Zoo, task: str) -> Trigger | None:
    """The trigger `zoo`'s expert for `task` answers to, or None for a clean expert."""
    spec = zoo.backdoor(task)
    return Trigger(**spec) if spec is not None else None


def attack_success_rate(zoo: Zoo, weights: Mapping[str, Tensor], task: str, trigger: Trigger | None = None,
                        split: str = "test", limit: int | None = None, device: str | torch.device = "auto") -> float:
    """ASR in [0, 1] of the encoder `weights` on `task` (the first `limit` images of `split`) under `trigger`
    (default: the zoo's trigger for the task)."""
    trigger = trigger or zoo_trigger(zoo, task)
    if trigger is None:
        raise ValueError(f"task {task!r} of zoo {zoo.name!r} has no trigger: pass trigger=Trigger(...) or load a "
                         f"backdoored expert (load_zoo('demo', experts={{{task!r}: 'backdoored'}}))")
    dev = resolve_device(device)
    x, y = eval_data(zoo, task, split, limit, dev)
    return attack_success(image_logits(zoo, weights, task, triggered_test(x, y, trigger), dev).argmax(-1), trigger)


def attack_table(zoo: Zoo, tasks: list[str], merged: Callable[[str], Mapping[str, Tensor]], split: str = "test",
                 limit: int | None = None, device: str | torch.device = "auto") -> pd.DataFrame | None:
    """ASR (fractions) of base, expert and merged weights (`merged(task)`) per task that has a trigger; None if none."""
    rows = []
    for task in tasks:
        trigger = zoo_trigger(zoo, task)
        if trigger is not None:
            rows.append((task, *(attack_success_rate(zoo, w, task, trigger, split, limit, device) for w in
                                 (zoo.base_state_dict(), zoo.expert_state_dict(task), merged(task)))))
    return pd.DataFrame(rows, columns=ATTACK_COLUMNS) if rows else None
