"""The merges that train small parts at test time on the demo zoo, at their dashboard defaults: test accuracy and
training seconds next to the baselines they must beat (TA at 0.3, TIES at its defaults, layer-wise AdaMerging).

Run: PYTHONPATH=. .venv/bin/python bench/bench_test_time.py [--threads 1] [--json out.json]
Prints a markdown table (average test accuracy in %, normalized accuracy in %, merge seconds) and the load
average before and after: on a shared CPU the seconds grow with the load.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

import explorer as ex

RUNS = [("Task Arithmetic (scale 0.3)", "task_arithmetic", {"scale": 0.3}),
        ("TIES (defaults)", "ties", {}),
        ("AdaMerging layer-wise (defaults)", "adamerging", {}),
        ("Surgery on TA (defaults)", "surgery", {}),
        ("Concrete AdaMerging (defaults)", "concrete", {}),
        ("Concrete TA", "concrete", {"merge": "task_arithmetic"}),
        ("Twin-Merging (defaults)", "twin", {}),
        ("WEMoE (defaults)", "wemoe", {})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="labels' method names to run (default: all)")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    zoo = ex.load_zoo("demo")
    tv = ex.task_vectors(zoo)
    rows = []
    print(f"load average before: {os.getloadavg()}", flush=True)
    print("| method | test acc % | normalized % | train s | load avg (1 min) |\n|---|---|---|---|---|", flush=True)
    for label, method, params in RUNS:
        if args.only and method not in args.only:
            continue
        start = time.perf_counter()
        res = ex.merge(tv, method, **params)
        seconds = time.perf_counter() - start
        mean = ex.evaluate(zoo, res).mean
        load = os.getloadavg()[0]
        rows.append({"label": label, "method": method, "params": params, "accuracy": 100 * mean["merged"],
                     "normalized": 100 * mean["normalized"], "seconds": seconds, "load": load})
        print(f"| {label} | {100 * mean['merged']:.1f} | {100 * mean['normalized']:.1f} | {seconds:.0f} | "
              f"{load:.1f} |", flush=True)
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
