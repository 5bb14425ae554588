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


def runs(tv, zoo, args):
    """Yield (label, MergeResult, seconds) of every method compared, one at a time."""
    ta, s = timed(lambda: ex.select(tv, "task_arithmetic", grid={"scale": TA_GRID}, zoo=zoo))
    yield f"Task Arithmetic (lambda={ta.params['scale']})", ta.result, s
    ties, s = timed(lambda: ex.select(tv, "ties", grid={"scale": TIES_GRID}, zoo=zoo, density=0.2))
    yield f"TIES density 0.2 (lambda={ties.params['scale']})", ties.result, s
    common = {"steps": args.steps, "lr": args.lr, "seed": args.seed}
    for label, kwargs in [("AdaMerging task-wise", {"granularity": "task"}),
                          ("AdaMerging layer-wise", {"granularity": "layer"}),
                          ("AdaMerging++ layer-wise", {"granularity": "layer", "plus": True})]:
        res, s = timed(lambda: ex.merge(tv, "adamerging", **kwargs, **common))
        yield f"{label} ({args.steps} steps, lr {args.lr:g})", res, s
    res, s = timed(lambda: ex.merge(tv, "atlas", epochs=args.epochs, seed=args.seed))
    yield f"aTLAS ({args.epochs} epochs, best epoch {res.info['best_epoch']})", res, s


def row(label: str, values, tail: str) -> str:
    return f"| {label} | " + " | ".join(f"{100 * v:.1f}" for v in values) + f" | {tail} |"


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
    rows = []
    print(f"zoo {args.zoo}, test split, torch threads {args.threads}\n", flush=True)
    for label, res, seconds in runs(tv, zoo, args):
        table = ex.evaluate(zoo, res, "test").table
        if not rows:
            print("| method | " + " | ".join(table["task"]) + " | avg | normalized | seconds |")
            print("|---" * (len(table) + 4) + "|")
            print(row("Pretrained base", table["base"], f"{100 * table['base'].mean():.1f} | | "))
            print(row("Individual experts", table["expert"], f"{100 * table['expert'].mean():.1f} | | "))
        rows.append({"method": label, "seconds": round(seconds, 1), "mean": float(table["merged"].mean()),
                     "normalized": float(table["normalized"].mean()),
                     "per_task": dict(zip(table["task"], table["merged"].astype(float)))})
        print(row(label, table["merged"], f"{100 * rows[-1]['mean']:.1f} | {100 * rows[-1]['normalized']:.1f} | "
                                          f"{seconds:.1f}"), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
