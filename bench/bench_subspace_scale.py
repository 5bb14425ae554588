"""The subspace merges at real size: 8 random task vectors with the exact shapes of open_clip ViT-B/32's visual tower
(87.8 M parameters each). Times each merge cold (no cached SVD) and again after a `scale` change, next to Task
Arithmetic, and reports the process's peak memory.

Run: .venv/bin/python bench/bench_subspace_scale.py [--tasks 8] [--methods tsv,iso_c,iso_cts,cart] [--threads 2]
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

import explorer as ex
from explorer.methods.spectral import clear_cache
from explorer.taskvec import TaskVectors


def vit_b32_task_vectors(tasks: int, seed: int = 0) -> TaskVectors:
    """Gaussian task vectors (std 1e-3) shaped like every float parameter of ViT-B/32's visual tower."""
    from open_clip.transformer import VisionTransformer

    shapes = {n: p.shape for n, p in VisionTransformer(image_size=224, patch_size=32, width=768, layers=12, heads=12,
                                                       mlp_ratio=4.0, output_dim=512).state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    deltas = {n: 1e-3 * torch.randn(tasks, *s, generator=gen) for n, s in shapes.items()}
    return TaskVectors([f"task{t}" for t in range(tasks)], {n: torch.zeros(s) for n, s in shapes.items()}, deltas)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--methods", default="tsv,iso_c,iso_cts,cart")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tv = vit_b32_task_vectors(args.tasks)
    inputs = peak_gib()
    print(f"{args.tasks} tasks x {tv.numel():,} parameters; torch threads {args.threads}; "
          f"peak memory with the inputs {inputs:.1f} GiB\n")
    ta = min(timed(lambda: ex.merge(tv, "task_arithmetic", scale=0.3)) for _ in range(3))
    print("| merge | first (s) | after a scale change (s) | x Task Arithmetic (re-merge) | peak memory (GiB) |")
    print("|---|---|---|---|---|")
    print(f"| task_arithmetic | {ta:.2f} | {ta:.2f} | 1.0 | {peak_gib():.1f} |", flush=True)
    for method in args.methods.split(","):
        clear_cache(tv)
        first = timed(lambda: ex.merge(tv, method, scale=1.0))
        again = min(timed(lambda: ex.merge(tv, method, scale=1.0 + 0.1 * i)) for i in range(1, 4))
        print(f"| {method} | {first:.1f} | {again:.2f} | {again / ta:.1f} | {peak_gib():.1f} |", flush=True)


if __name__ == "__main__":
    main()
