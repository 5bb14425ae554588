"""Test accuracy on the demo zoo of Task Arithmetic and TIES (each at its best validation lambda), task-wise,
layer-wise and layer-wise++ AdaMerging, and aTLAS: absolute and normalized, per task and on average.

Run: .venv/bin/python bench/bench_adaptive_demo.py [--steps 100] [--lr 1e-3] [--epochs 20] [--threads 2]
     [--json out.json]
Prints a markdown table (one row per method: per-task test accuracy in %, the average, the average
normalized accuracy, and the merge's wall time).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import explorer as ex

TA_GRID = [round(0.1 * i, 1) for i in range(1, 11)]  # 0.1 .. 1.0 (TALL / LiNeS protocol)
TIES_GRID = [round(0.1 * i, 1) for i in range(1, 16)]  # 0.1 .. 1.5 (LiNeS, dis-mean)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def runs(tv, zoo, args) -> list[tuple[str, object, float]]:
    """(label, MergeResult, seconds) of every method compared."""
    out = []
    ta, s = timed(lambda: ex.select(tv, "task_arithmetic", grid={"scale": TA_GRID}, zoo=zoo))
    out.append((f"Task Arithmetic (lambda={ta.params['scale']})", ta.result, s))
    ties, s = timed(lambda: ex.select(tv, "ties", grid={"scale": TIES_GRID}, zoo=zoo, density=0.2))
    out.append((f"TIES density 0.2 (lambda={ties.params['scale']})", ties.result, s))
    common = {"steps": args.steps, "lr": args.lr, "seed": args.seed}
    for label, kwargs in [("AdaMerging task-wise", {"granularity": "task"}),
                          ("AdaMerging layer-wise", {"granularity": "layer"}),
                          ("AdaMerging++ layer-wise", {"granularity": "layer", "plus": True})]:
        res, s = timed(lambda: ex.merge(tv, "adamerging", **kwargs, **common))
        out.append((f"{label} ({args.steps} steps, lr {args.lr:g})", res, s))
    res, s = timed(lambda: ex.merge(tv, "atlas", epochs=args.epochs, seed=args.seed))
    out.append((f"aTLAS ({args.epochs} epochs, best epoch {res.info['best_epoch']})", res, s))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="demo")
    parser.add_argument("--root", default=None, help="another build of the demo zoo (a folder)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    zoo = ex.load_zoo(args.zoo, **({"root": args.root} if args.root else {}))
    tv = ex.task_vectors(zoo)
    rows, first = [], None
    for label, res, seconds in runs(tv, zoo, args):
        table = ex.evaluate(zoo, res, "test").table
        first = table if first is None else first
        rows.append({"method": label, "seconds": round(seconds, 1), "mean": float(table["merged"].mean()),
                     "normalized": float(table["normalized"].mean()),
                     "per_task": dict(zip(table["task"], table["merged"].astype(float)))})
    tasks = list(first["task"])
    refs = [("Pretrained base", first["base"]), ("Individual experts", first["expert"])]
    print(f"zoo {args.zoo}, test split, torch threads {args.threads}\n")
    print("| method | " + " | ".join(tasks) + " | avg | normalized | seconds |")
    print("|---" * (len(tasks) + 4) + "|")
    for label, col in refs:
        print(f"| {label} | " + " | ".join(f"{100 * v:.1f}" for v in col) + f" | {100 * col.mean():.1f} | | |")
    for r in rows:
        cells = " | ".join(f"{100 * r['per_task'][t]:.1f}" for t in tasks)
        print(f"| {r['method']} | {cells} | {100 * r['mean']:.1f} | {100 * r['normalized']:.1f} | {r['seconds']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
