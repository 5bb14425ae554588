"""Benchmark: demo zoo load time, full evaluation (base + 8 experts + one merge) and a 256-image-per-task merge.

Targets (2-core CPU): load <= 3 s (open_clip import excluded), full test evaluation <= 10 s, one merged
model on 256 images per task <= 1 s. Run: `.venv/bin/python bench/bench_eval.py [--threads 2]`.
"""
from __future__ import annotations

import argparse
import time


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the 256-image evaluation (best is shown)")
    args = parser.parse_args()

    import open_clip  # noqa: F401  (imported first: the load target excludes it)
    import torch

    import explorer as ex

    torch.set_num_threads(args.threads)
    zoo, t_open = timed(lambda: ex.load_zoo("demo"))
    _, t_weights = timed(lambda: (zoo.base_state_dict(), [zoo.expert_state_dict(t) for t in zoo.tasks],
                                  [zoo.head(t) for t in zoo.tasks]))
    print(f"load_zoo('demo'): {t_open:.3f} s; + base, 8 experts and heads: {t_open + t_weights:.3f} s")

    tv = ex.task_vectors(zoo)
    res = ex.merge(tv, "task_arithmetic", scale=0.3)
    _, t_data = timed(lambda: [zoo.dataset(t, "test") for t in zoo.tasks])
    print(f"generating the {len(zoo.tasks)} test splits: {t_data:.2f} s")
    scores, t_full = timed(lambda: ex.evaluate(zoo, res))
    print(f"evaluate(base + {len(zoo.tasks)} experts + 1 merge, test split, "
          f"{len(zoo.dataset(zoo.tasks[0], 'test'))} images/task, cold, data generated): {t_full:.2f} s; "
          f"with generation {t_full + t_data:.2f} s")
    _, t_again = timed(lambda: ex.evaluate(zoo, ex.merge(tv, "task_arithmetic", scale=0.4)))
    print(f"evaluate(one more merge, test split, references cached): {t_again:.2f} s")

    ex.evaluate(zoo, res, limit=256)  # caches the base and expert accuracies for limit=256
    best = min(timed(lambda: ex.evaluate(zoo, ex.merge(tv, "ties", density=0.2, scale=1.0), limit=256))[1]
               for _ in range(args.repeats))
    print(f"evaluate(one merge incl. the TIES merge itself, 256 images/task): {best:.2f} s")
    merged_sd = res.state_dict()
    best_eval = min(timed(lambda: ex.evaluate(zoo, merged_sd, limit=256))[1] for _ in range(args.repeats))
    print(f"evaluate(one merged state dict, 256 images/task): {best_eval:.2f} s")
    print(scores)


if __name__ == "__main__":
    main()
