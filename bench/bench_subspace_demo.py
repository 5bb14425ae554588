"""The subspace merges on the demo zoo: test accuracy with `scale` chosen on validation (TSV, Iso-C, Iso-CTS, CART;
WUDI's `lr`), CART, WUDI and DOGE-TA at their defaults, against Task Arithmetic and TIES at their best lambda; and
how fast each merges cold (SVDs computed) and again after a `scale` change (SVDs cached), next to Task Arithmetic.

Run: .venv/bin/python bench/bench_subspace_demo.py [--threads 2] [--json out.json]
Prints two markdown tables: accuracy (per task, average, normalized, the chosen scale) and merge timings.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import explorer as ex
from explorer.methods.spectral import clear_cache

TA_GRID = [round(0.1 * i, 1) for i in range(1, 11)]  # 0.1 .. 1.0 (TALL / LiNeS protocol)
TIES_GRID = [round(0.1 * i, 1) for i in range(1, 16)]  # 0.1 .. 1.5 (LiNeS, dis-mean)
SUBSPACE_GRID = [round(0.1 * i, 1) for i in range(1, 31)]  # 0.1 .. 3.0, the official TSV / Iso sweep
WUDI_LR_GRID = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3]  # Adam moves each entry about lr per step: lr sets how far it goes
SELECTED = [("Task Arithmetic", "task_arithmetic", "scale", TA_GRID, {}),
            ("TIES, density 0.2", "ties", "scale", TIES_GRID, {"density": 0.2}),
            ("TSV-Merge", "tsv", "scale", SUBSPACE_GRID, {}), ("Iso-C", "iso_c", "scale", SUBSPACE_GRID, {}),
            ("Iso-CTS", "iso_cts", "scale", SUBSPACE_GRID, {}), ("CART", "cart", "scale", SUBSPACE_GRID, {}),
            ("WUDI", "wudi", "lr", WUDI_LR_GRID, {})]
DEFAULTS = [("CART (paper's lambda 2.0)", "cart"), ("WUDI", "wudi"), ("DOGE-TA", "doge_ta")]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def runs(tv, zoo):
    """Yield (label, MergeResult) of every method compared, one at a time."""
    for label, method, param, grid, fixed in SELECTED:
        chosen = ex.select(tv, method, grid={param: grid}, zoo=zoo, **fixed)
        shown = "λ" if param == "scale" else param
        yield f"{label} ({shown}={chosen.params[param]:g} on validation)", chosen.result
    for label, method in DEFAULTS:
        yield f"{label}, defaults", ex.merge(tv, method)


def speed(tv, repeats: int = 5) -> list[dict]:
    """Per method: the first merge with no cached SVD, and the median re-merge after a scale change."""
    out = []
    for method in ("task_arithmetic", "tsv", "iso_c", "iso_cts", "cart", "wudi", "doge_ta"):
        clear_cache(tv)
        has_scale = any(p["name"] == "scale" for m in ex.list_methods() if m["name"] == method for p in m["params"])
        _, cold = timed(lambda: ex.merge(tv, method, **({"scale": 1.0} if has_scale else {})))
        again = [timed(lambda: ex.merge(tv, method, **({"scale": 1.0 + 0.1 * (i + 1)} if has_scale else {})))[1]
                 for i in range(repeats if has_scale else 1)]
        out.append({"method": method, "first": cold, "remerge": statistics.median(again)})
    return out


def row(label: str, values, tail: str) -> str:
    return f"| {label} | " + " | ".join(f"{100 * v:.1f}" for v in values) + f" | {tail} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="demo")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    zoo = ex.load_zoo(args.zoo)
    tv = ex.task_vectors(zoo)
    rows = []
    print(f"zoo {args.zoo}, test split, torch threads {args.threads}\n", flush=True)
    for label, res in runs(tv, zoo):
        table = ex.evaluate(zoo, res, "test").table
        if not rows:
            print("| method | " + " | ".join(table["task"]) + " | avg | normalized |")
            print("|---" * (len(table) + 3) + "|")
            print(row("Pretrained base", table["base"], f"{100 * table['base'].mean():.1f} | "))
            print(row("Individual experts", table["expert"], f"{100 * table['expert'].mean():.1f} | "))
        rows.append({"method": label, "params": res.params, "mean": float(table["merged"].mean()),
                     "normalized": float(table["normalized"].mean()),
                     "per_task": dict(zip(table["task"], table["merged"].astype(float)))})
        print(row(label, table["merged"], f"{100 * rows[-1]['mean']:.1f} | {100 * rows[-1]['normalized']:.1f}"),
              flush=True)
    timings = speed(tv)
    print("\n| merge | first (s) | after a scale change (s) |\n|---|---|---|")
    for t in timings:
        print(f"| {t['method']} | {t['first']:.3f} | {t['remerge']:.4f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "timings": timings}, f, indent=1)


if __name__ == "__main__":
    main()
