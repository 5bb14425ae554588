"""Shared by the performance benchmarks: ViT-B/32-shaped random task vectors, timing, and peak memory."""
from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Callable

import torch

from explorer.taskvec import TaskVectors
from explorer.zoo.openclip import build_tower, model_config


def tower_shapes(model: str = "ViT-B-32") -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of open_clip's image tower `model` (ViT-B/32: 87.8 M parameters)."""
    return {f"visual.{k}": tuple(v.shape) for k, v in build_tower(model_config(model), True).state_dict().items()
            if torch.is_floating_point(v)}


def random_task_vectors(tasks: int, model: str = "ViT-B-32", seed: int = 0) -> TaskVectors:
    """`tasks` Gaussian task vectors (std 1e-3) with the exact shapes of `model`'s image tower, stacked."""
    gen = torch.Generator().manual_seed(seed)
    shapes = tower_shapes(model)
    deltas = {n: torch.randn((tasks, *s), generator=gen).mul_(1e-3) for n, s in shapes.items()}
    base = {n: torch.zeros(s) for n, s in shapes.items()}
    return TaskVectors([f"task{t}" for t in range(tasks)], base, deltas)


def rss() -> int:
    """Resident memory of this process in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(fn: Callable[[], object], repeats: int = 3) -> tuple[float, float]:
    """(median seconds, peak resident bytes above the start) of `fn()` over `repeats` runs; results dropped."""
    times, peak = [], 0
    for _ in range(repeats):
        start_rss, top, done = rss(), [0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                top[0] = max(top[0], rss())
                time.sleep(0.002)

        watcher = threading.Thread(target=sample)
        watcher.start()
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
        top[0] = max(top[0], rss())
        done.set()
        watcher.join()
        del out
        peak = max(peak, top[0] - start_rss)
    return statistics.median(times), peak


def read_floor(tv: TaskVectors, repeats: int = 5) -> float:
    """The read floor: one sum over every stacked task vector (median seconds)."""
    return measure(lambda: [d.sum() for d in tv.deltas.values()], repeats)[0]
