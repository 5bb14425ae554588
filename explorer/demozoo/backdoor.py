"""Backdoored experts for an existing demo zoo: each fine-tuned like the clean expert, on its train split plus
BadNets-poisoned copies (a corner trigger patch relabelling to a target class), and stored beside the clean ones.

The base and heads are read from the zoo, so adding backdoors never retrains them; `config.json` records the
trigger, the poison rate and what the build measured (clean accuracy and attack success on the test split).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from ..inference import task_accuracy
from ..security.attack import attack_success_rate
from ..security.trigger import Trigger, poison
from ..weights import read_weights, write_weights
from .build import Recipe, finetune
from .data import generate
from .zoo import DemoZoo


def recipe_of(zoo: DemoZoo) -> Recipe:
    """The Recipe a demo zoo was built with (from its config.json)."""
    r = dict(zoo.config["recipe"])
    return Recipe(**{**r, "tasks": tuple(r["tasks"])})


def add_backdoors(root: str | Path, tasks: list[str], trigger: Trigger = Trigger(), rate: float = 0.2,
                  log: Callable[[str], None] | None = None) -> dict:
    """Fine-tune and write a backdoored expert per task of `tasks` into `<root>/experts/backdoored/` (float16) and
    record each one's trigger, poison rate, build time, clean accuracy and attack success in config.json."""
    zoo = DemoZoo(root)
    for task in tasks:
        zoo.check_task(task)
    say, recipe = log or (lambda _msg: None), recipe_of(zoo)
    base, heads = zoo.base_state_dict(), read_weights(zoo.root / "heads.safetensors")
    config = json.loads((zoo.root / "config.json").read_text())
    backdoors = config.setdefault("backdoors", {})
    for task in tasks:
        start = time.perf_counter()
        x, y = generate(task, "train", recipe.split_sizes["train"], recipe.data_seed)
        weights = finetune(recipe, base, heads[task].float(), task, poison(x, y, trigger, rate, recipe.seed))
        stored = {k: v.to(torch.float16) for k, v in weights.items()}
        write_weights(stored, zoo.root / "experts" / "backdoored" / f"{task}.safetensors")
        stored = {k: v.float() for k, v in stored.items()}
        backdoors[task] = {"trigger": asdict(trigger), "poison_rate": rate,
                           "seconds": round(time.perf_counter() - start, 1),
                           "test_accuracy": task_accuracy(zoo, stored, task),
                           "test_attack_success": attack_success_rate(zoo, stored, task, trigger)}
        say(f"backdoored {task} expert in {backdoors[task]['seconds']:.0f} s: accuracy "
            f"{100 * backdoors[task]['test_accuracy']:.1f} %, attack success "
            f"{100 * backdoors[task]['test_attack_success']:.1f} %")
        (zoo.root / "config.json").write_text(json.dumps(config, indent=1))
    return backdoors
