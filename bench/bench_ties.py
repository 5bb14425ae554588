"""TIES (scope=global) on 8 tasks x 10 M floats against one plain read pass over the same stacked tensors.

Run: .venv/bin/python bench/bench_ties.py [--tasks 8] [--numel 10_000_000] [--repeats 3]
Prints the median seconds of each and their ratio (measured side by side in one run).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import explorer as ex
from explorer.taskvec import TaskVectors


def random_task_vectors(tasks: int, numel: int, seed: int = 0) -> TaskVectors:
    """ViT-like tensors (10 blocks of [1000, 1000]) filled with Gaussian noise, `numel` floats per task."""
    gen = torch.Generator().manual_seed(seed)
    rows = numel // 10 // 1000
    deltas = {f"transformer.resblocks.{i}.mlp.c_fc.weight": torch.randn(tasks, rows, 1000, generator=gen)
              for i in range(10)}
    base = {n: torch.zeros(d.shape[1:]) for n, d in deltas.items()}
    return TaskVectors([f"task{t}" for t in range(tasks)], base, deltas)


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--numel", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tv = random_task_vectors(args.tasks, args.numel)
    read = median_seconds(lambda: sum(float(d.sum()) for d in tv.deltas.values()), args.repeats)
    touch = median_seconds(lambda: sum(float(d.abs().sum()) for d in tv.deltas.values()), args.repeats)
    ties = median_seconds(lambda: ex.merge(tv, "ties", density=0.2, scope="global"), args.repeats)
    print(f"torch threads: {torch.get_num_threads()}; {args.tasks} tasks x {tv.numel():,} floats")
    print(f"plain read pass (sum)         : {read:.3f} s")
    print(f"one elementwise pass (|x|.sum): {touch:.3f} s")
    print(f"TIES global, density 0.2      : {ties:.3f} s  ({ties / read:.0f}x the read pass, "
          f"{ties / touch:.1f}x the elementwise pass)")


if __name__ == "__main__":
    main()
