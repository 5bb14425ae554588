"""Ours vs PEFT's merge utilities vs FusionBench on the same generated task vectors (ViT-B/32 shapes): seconds,
ratio to the read floor, and peak memory above the inputs, per merge.

The peers are benchmark-only dependencies, installed into their own environment (never the project's):
    python3 -m venv bench/.venv-peers
    echo "$(.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')" \\
        > bench/.venv-peers/lib/python3.11/site-packages/project-venv.pth   # torch and the project's deps
    bench/.venv-peers/bin/pip install fusion-bench==0.2.33 peft
    bench/.venv-peers/bin/python bench/bench_side_by_side.py [--tasks 8] [--fusionbench-tasks 4]
FusionBench flattens every task vector into one [T, D] matrix and sorts it: --fusionbench-tasks (default 4) keeps
it within this machine's memory. PEFT merges one tensor at a time (its TIES is the per-tensor scope).
"""
from __future__ import annotations

import argparse
import importlib.util
import time

import torch
from common import measure, random_task_vectors, read_floor

import explorer as ex
from explorer.methods.engine import jit, kernels

OURS = {
    "Task Arithmetic": ("task_arithmetic", {"scale": 1.0}),
    "TIES global top-20 %": ("ties", {"density": 0.2, "scope": "global", "scale": 1.0}),
    "TIES per tensor": ("ties", {"density": 0.2, "scope": "tensor", "scale": 1.0}),
    "magnitude per tensor": ("magnitude", {"density": 0.2, "scope": "tensor", "scale": 1.0}),
    "Breadcrumbs": ("breadcrumbs", {}),
    "EMR": ("emr", {}),
    "Consensus": ("consensus", {}),
}


def peft_merges(tv: ex.TaskVectors) -> dict:
    """PEFT's merge_utils, tensor by tensor with unit weights: {label: (function, the matching merge of ours)}."""
    from peft.utils import merge_utils

    weights = torch.ones(tv.num_tasks)

    def each(fn):
        return lambda: {n: fn(list(d), weights) for n, d in tv.deltas.items()}

    return {
        "Task Arithmetic": each(lambda ts, w: merge_utils.task_arithmetic(ts, w)),
        "TIES per tensor": each(lambda ts, w: merge_utils.ties(ts, w, 0.2, "total")),
        "magnitude per tensor": each(lambda ts, w: merge_utils.magnitude_prune(ts, w, 0.2)),
    }


def fusionbench_ties(tv: ex.TaskVectors) -> dict:
    """FusionBench's TIES (flatten the task vectors, `ties_merging` at reset_thresh=20 with the mean, unflatten)."""
    from fusion_bench.method.ties_merging.ties_merging_utils import (
        state_dict_to_vector,
        ties_merging,
        vector_to_state_dict,
    )

    def run():
        flat = torch.vstack([state_dict_to_vector(tv.task(t), remove_keys=[]) for t in tv.tasks])
        merged = ties_merging(flat, reset_thresh=20, merge_func="mean")
        return vector_to_state_dict(merged, tv.task(tv.tasks[0]), remove_keys=[])

    return {"TIES global top-20 %": run}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def agreement(ours: dict, theirs: dict) -> float:
    """Largest |ours - theirs| over the merged task vector."""
    return max(float((ours[n] - theirs[n].to(ours[n].dtype)).abs().max()) for n in ours)


def cell(seconds: float, peak: int, floor: float) -> str:
    return f"{seconds:.2f} s ({seconds / floor:.0f}x, +{peak / 2**30:.2f} GiB)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--fusionbench-tasks", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    tv = random_task_vectors(args.tasks)
    start = time.perf_counter()
    kernels.warm(args.tasks)
    jit.warm()
    kernels.warm(args.fusionbench_tasks)
    floor = read_floor(tv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.tasks} x {tv.numel() / 1e6:.1f} M "
          f"parameters (ViT-B/32 shapes); kernels warmed in {time.perf_counter() - start:.0f} s; read floor "
          f"{floor:.3f} s", flush=True)
    ours_vs_peft(tv, floor, args.repeats)
    if not _installed("fusion_bench"):
        print("FusionBench is not installed here: run this script with bench/.venv-peers/bin/python (see the top)")
        return
    small = tv.subset(tv.tasks[:args.fusionbench_tasks])
    del tv
    ours_vs_fusionbench(small, args.repeats)


def ours_vs_peft(tv: ex.TaskVectors, floor: float, repeats: int) -> None:
    peft = peft_merges(tv) if _installed("peft") else {}
    if not peft:
        print("PEFT is not installed here: run this script with bench/.venv-peers/bin/python (see the top)")
    print("\n| merge | ours | PEFT (same tensors) | max abs diff ours vs PEFT |\n|---|---|---|---|")
    for label, (method, params) in OURS.items():
        seconds, peak = measure(lambda: ex.merge(tv, method, **params), repeats)
        row = f"| {label} | {cell(seconds, peak, floor)} |"
        if label in peft:
            p_seconds, p_peak = measure(peft[label], repeats)
            diff = agreement(ex.merge(tv, method, **params).delta, peft[label]())
            row += f" {cell(p_seconds, p_peak, floor)} | {diff:.1e} |"
        else:
            row += " — | — |"
        print(row, flush=True)


def ours_vs_fusionbench(small: ex.TaskVectors, repeats: int) -> None:
    floor = read_floor(small)
    fb = fusionbench_ties(small)
    print(f"\nT={small.num_tasks} (read floor {floor:.3f} s)\n\n| merge | ours | FusionBench 0.2.33 | "
          f"max abs diff |\n|---|---|---|---|")
    for label in fb:
        method, params = OURS[label]
        seconds, peak = measure(lambda: ex.merge(small, method, **params), repeats)
        f_seconds, f_peak = measure(fb[label], repeats)
        diff = agreement(ex.merge(small, method, **params).delta, fb[label]())
        print(f"| {label} | {cell(seconds, peak, floor)} | {cell(f_seconds, f_peak, floor)} | {diff:.1e} |",
              flush=True)


if __name__ == "__main__":
    main()
