"""Layer-wise AdaMerging on the demo zoo: wall time (budget: 60 s on a 2-core CPU) and average test accuracy
against Task Arithmetic at its best validation lambda (0.1 .. 1.0).

Run: .venv/bin/python bench/bench_adamerging.py [--steps 100] [--batch 16] [--lr 1e-3] [--threads 2]
     [--granularity layer] [--plus]
Prints the merge's wall time and seconds per step, the loss at the start and the end, and both methods'
average test accuracy (absolute and normalized).
"""
from __future__ import annotations

import argparse
import time

import torch

import explorer as ex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="demo")
    parser.add_argument("--root", default=None, help="another build of the demo zoo (a folder)")
    parser.add_argument("--steps", type=int, default=None, help="default: the method's declared default")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=None, help="default: the method's declared default")
    parser.add_argument("--granularity", default="layer", choices=["task", "layer"])
    parser.add_argument("--plus", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    zoo = ex.load_zoo(args.zoo, **({"root": args.root} if args.root else {}))
    tv = ex.task_vectors(zoo)
    given = {k: getattr(args, k) for k in ("steps", "lr") if getattr(args, k) is not None}
    start = time.perf_counter()
    res = ex.merge(tv, "adamerging", granularity=args.granularity, batch=args.batch, plus=args.plus,
                   seed=args.seed, **given)
    seconds = time.perf_counter() - start
    ada = ex.evaluate(zoo, res, "test").mean
    ta = ex.select(tv, "task_arithmetic", grid={"scale": [round(0.1 * i, 1) for i in range(1, 11)]}, zoo=zoo)
    loss = res.info["loss"]
    print(f"torch threads {args.threads}; AdaMerging {args.granularity}{'++' if args.plus else ''}: "
          f"{res.params['steps']} steps, batch {args.batch} x 2 per task, lr {res.params['lr']:g}")
    print(f"wall time {seconds:.1f} s ({res.info['train_seconds'] / max(res.info['steps'], 1):.3f} s/step)")
    if loss:
        print(f"entropy loss: first {loss[0]:.3f}, mean of last 10 {sum(loss[-10:]) / len(loss[-10:]):.3f}")
    print(f"AdaMerging           test avg {100 * ada['merged']:.1f}%  normalized {100 * ada['normalized']:.1f}%")
    print(f"Task Arithmetic (lambda={ta.params['scale']}) test avg {100 * ta.scores.mean['merged']:.1f}%  "
          f"normalized {100 * ta.scores.mean['normalized']:.1f}%")
    print(f"coefficients: mean {res.coefficients.to_numpy().mean():.3f}, "
          f"min {res.coefficients.to_numpy().min():.3f}, max {res.coefficients.to_numpy().max():.3f}")


if __name__ == "__main__":
    main()
