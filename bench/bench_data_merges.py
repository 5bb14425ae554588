"""Merges that read data on the demo zoo: Fisher merging, RegMean, RegMean++ and Self Positioning at their declared
defaults against weight averaging and Task Arithmetic at its best validation lambda; test accuracy and wall time
(statistics passes included: the cache is cleared before each method), then the time to merge again after moving
RegMean's alpha or Fisher's eps (statistics from the cache).

Run: .venv/bin/python bench/bench_data_merges.py [--threads 1] [--json out.json]
Prints a markdown table (test split, %: average accuracy, average normalized accuracy, seconds) and the checks of
issue 13 (RegMean >= Task Arithmetic, Fisher >= averaging, RegMean++ >= RegMean).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import explorer as ex
from explorer.methods import stats_passes

TA_GRID = [round(0.1 * i, 1) for i in range(1, 11)]  # 0.1 .. 1.0 (TALL / LiNeS protocol)
METHODS = [("Fisher merging", "fisher", {}), ("RegMean", "regmean", {}),
           ("RegMean++", "regmean", {"inputs": "merged"}), ("Self Positioning", "self_positioning", {})]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="demo")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    zoo = ex.load_zoo(args.zoo)
    tv = ex.task_vectors(zoo)
    print(f"zoo {args.zoo}, test split, torch threads {args.threads}, declared defaults\n", flush=True)
    print("| method | avg | normalized | seconds |\n|---|---|---|---|")
    rows = {}

    def report(label: str, result, seconds: float | None) -> None:
        table = ex.evaluate(zoo, result, "test").table
        rows[label] = {"mean": 100 * float(table.merged.mean()), "normalized": 100 * float(table.normalized.mean()),
                       "seconds": seconds, "per_task": dict(zip(table.task, 100 * table.merged.astype(float)))}
        shown = "" if seconds is None else f"{seconds:.1f}"
        print(f"| {label} | {rows[label]['mean']:.1f} | {rows[label]['normalized']:.1f} | {shown} |", flush=True)

    report("Weight averaging", ex.merge(tv, "average"), None)
    ta = ex.select(tv, "task_arithmetic", grid={"scale": TA_GRID}, zoo=zoo)
    report(f"Task Arithmetic (lambda={ta.params['scale']} on validation)", ta.result, None)
    for label, method, params in METHODS:
        stats_passes.clear()
        result, seconds = timed(lambda: ex.merge(tv, method, **params))
        report(label, result, seconds)
    print()
    stats_passes.clear()
    ex.merge(tv, "regmean")
    for label, method, params in [("RegMean, alpha 0.95 -> 0.8", "regmean", {"alpha": 0.8}),
                                  ("Fisher, first run", "fisher", {}),
                                  ("Fisher, eps 1e-6 -> 1e-4", "fisher", {"eps": 1e-4})]:
        result, seconds = timed(lambda: ex.merge(tv, method, **params))
        print(f"{label}: {seconds:.2f} s (statistics from the cache: {result.info['data']['cached']})")
    ta_label = next(k for k in rows if k.startswith("Task Arithmetic"))
    checks = [("RegMean >= Task Arithmetic", rows["RegMean"]["mean"], rows[ta_label]["mean"]),
              ("Fisher >= averaging", rows["Fisher merging"]["mean"], rows["Weight averaging"]["mean"]),
              ("RegMean++ >= RegMean", rows["RegMean++"]["mean"], rows["RegMean"]["mean"])]
    print()
    for name, a, b in checks:
        print(f"{name}: {a:.2f} vs {b:.2f} -> {'holds' if a >= b else 'does not hold'}")
    slow = [k for k, r in rows.items() if r["seconds"] is not None and r["seconds"] > 60]
    print(f"each method <= 60 s: {'yes' if not slow else 'no: ' + ', '.join(slow)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
