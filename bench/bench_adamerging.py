"""Layer-wise AdaMerging on the demo zoo: wall time (budget: 60 s on a 2-core CPU) and average test accuracy
against Task Arithmetic at its best validation lambda (0.1 .. 1.0).

Run: .venv/bin/python bench/bench_adamerging.py [--steps 100] [--batch 16] [--lr 1e-3] [--threads 2]
     [--granularity layer] [--plus] [--diagnose]
Prints the merge's wall time and seconds per step, the loss at the start and the end, and both methods'
average test accuracy (absolute and normalized), per task; --diagnose adds test accuracy and prediction
entropy of task arithmetic across lambda, which shows whether entropy is a usable proxy on this zoo.
"""
from __future__ import annotations

import argparse
import time

import torch

import explorer as ex
from explorer.evaluate import eval_data
from explorer.methods.adaptive import softmax_entropy
from explorer.methods.runner import FunctionalMerge


def entropy_vs_accuracy(zoo, tv, lambdas: list[float]) -> None:
    """Print, for task arithmetic at each lambda, every task's test accuracy and mean prediction entropy:
    AdaMerging can only help where lower entropy goes with higher accuracy across merges."""
    fm = FunctionalMerge(tv, zoo, "task")
    print("lambda | " + " | ".join(f"{t} acc / H" for t in tv.tasks) + " | mean acc / H")
    with torch.no_grad():
        for lam in lambdas:
            theta, cells, accs, ents = fm.theta(fm.coefficients(lam)), [], [], []
            for task in tv.tasks:
                x, y = eval_data(zoo, task, "test", None, fm.device)
                logits = fm.logits(theta, task, x)
                accs.append(float((logits.argmax(1) == y).float().mean()))
                ents.append(float(softmax_entropy(logits).mean()))
                cells.append(f"{100 * accs[-1]:.0f} / {ents[-1]:.2f}")
            print(f"{lam} | " + " | ".join(cells) + f" | {100 * sum(accs) / len(accs):.1f} / {sum(ents) / len(ents):.2f}")


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
    parser.add_argument("--diagnose", action="store_true",
                        help="also print accuracy and entropy of task arithmetic for lambda in 0 .. 1")
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
    per_task = ex.evaluate(zoo, res, "test").table.set_index("task")["merged"]
    print("per task (AdaMerging vs TA): " + ", ".join(
        f"{t} {100 * per_task[t]:.0f}/{100 * m:.0f}" for t, m in zip(ta.scores.table["task"], ta.scores.table["merged"])))
    print("mean coefficient per task: " + ", ".join(f"{t} {v:.2f}" for t, v in res.coefficients.mean(axis=1).items()))
    if args.diagnose:
        entropy_vs_accuracy(zoo, tv, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0])


if __name__ == "__main__":
    main()
