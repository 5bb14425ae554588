"""Every security figure of issue 15 on the demo zoo (test split), as markdown tables for the README.

Run: .venv/bin/python bench/bench_security.py [--threads 1] [--dam-steps N] [--dam-lr X] [--dam-adv-lr X]
       [--dam-adv-weight X] [--dam-eval-mask continuous|discrete|hard] [--dam-bases task_arithmetic adamerging]
       [--lock-tasks scenes signs] [--skip-dam] [--skip-lock]
     (the DAM flags default to the method's declared defaults, the dashboard's)
1. each backdoored expert: clean accuracy (against the clean expert) and attack success rate (ASR);
2. Task Arithmetic (lambda 0.3, the validation choice) and TIES (density 0.2, lambda 0.4) with ONE backdoored expert:
   that task's ASR and accuracy;
3. DAM on Task Arithmetic and on layer-wise AdaMerging (DAM's second stage runs as many AdaMerging steps, at the same
   lr, as the AdaMerging it is compared with), one backdoored expert: ASR and average clean accuracy against its base
   merge;
4. MergeLock: the protected expert alone, and Task Arithmetic (lambda chosen on validation) with it, against the
   base on that task; the unlock attempts (least squares, Kabsch).
"""
from __future__ import annotations

import argparse
import time

import torch

import explorer as ex
from explorer.analysis.threats import mergelock_study
from explorer.inference import reference_accuracies
from explorer.methods.concrete_mask import FROZEN
from explorer.methods.registry import get

TIES = {"method": "ties", "density": 0.2, "scale": 0.4}
TA = {"method": "task_arithmetic", "scale": 0.3}


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def backdoors() -> None:
    clean = ex.load_zoo("demo")
    print("| backdoored task | clean expert acc. | backdoored expert acc. | expert ASR | TA acc. | TA ASR | "
          "TIES acc. | TIES ASR |\n|---|---|---|---|---|---|---|---|")
    for task in clean.backdoored_tasks():
        zoo = ex.load_zoo("demo", experts={task: "backdoored"})
        tv, cells = ex.task_vectors(zoo), []
        for kwargs in (TA, TIES):
            scores = ex.evaluate(zoo, ex.merge(tv, **kwargs))
            cells += [pct(scores.table.set_index("task").loc[task, "merged"]), pct(scores.attack["merged"].iloc[0])]
        attack = scores.attack.iloc[0]
        print(f"| {task} | {pct(reference_accuracies(clean, task)[1])} | {pct(reference_accuracies(zoo, task)[1])} | "
              f"{pct(attack['expert'])} | " + " | ".join(cells) + " |")


def dam(task: str, learn: dict, bases: list[str]) -> None:
    zoo = ex.load_zoo("demo", experts={task: "backdoored"})
    tv = ex.task_vectors(zoo)
    learn = {k: v for k, v in learn.items() if v is not None}
    declared = get("dam").defaults()
    print(f"\nDAM parameters (declared defaults, then flags): {declared | learn}")
    print(f"\n| merge ({task} backdoored) | average acc. | {task} acc. | {task} ASR | seconds |\n|---|---|---|---|---|")
    adamerging = {"method": "adamerging", "steps": learn.get("adamerging_steps", declared["adamerging_steps"]),
                  "lr": learn.get("adamerging_lr", declared["adamerging_lr"]), "zoo": zoo}
    pairs = [(label, kwargs, {"base": base, **learn}) for base, label, kwargs in
             (("task_arithmetic", "task_arithmetic", TA), ("adamerging", "adamerging (layer)", adamerging))
             if base in bases]
    for name, base_kwargs, dam_kwargs in pairs:
        for label, kwargs in ((name, base_kwargs), (f"dam on {name}", {"method": "dam", "zoo": zoo, **dam_kwargs})):
            start = time.perf_counter()
            res = ex.merge(tv, **kwargs)
            seconds = time.perf_counter() - start
            s = ex.evaluate(zoo, res)
            print(f"| {label} | {pct(s.mean['merged'])} | {pct(s.table.set_index('task').loc[task, 'merged'])} | "
                  f"{pct(s.attack['merged'].iloc[0])} | {seconds:.0f} |", flush=True)


def lock(tasks: list[str]) -> None:
    zoo = ex.load_zoo("demo")
    print("\n| task | expert | alone | TA lambda (validation) | TA on the task | TA on the others | base on the task |"
          "\n|---|---|---|---|---|---|---|")
    for task in tasks:
        for _, r in mergelock_study(zoo, task).iterrows():
            print(f"| {task} | {r['expert']} | {pct(r['expert_alone'])} | {r['scale']:g} | {pct(r['merged_task'])} | "
                  f"{pct(r['merged_others'])} | {pct(r['base'])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dam-steps", type=int, help="DAM's mask steps")
    parser.add_argument("--dam-adamerging-steps", type=int, help="DAM's and the compared AdaMerging's steps")
    parser.add_argument("--dam-task", default="digits")
    parser.add_argument("--dam-lr", type=float, help="DAM's mask learning rate")
    parser.add_argument("--dam-adv-lr", type=float, help="DAM's perturbation learning rate")
    parser.add_argument("--dam-adv-weight", type=float, help="DAM's weight of the entropy on perturbed images")
    parser.add_argument("--dam-eval-mask", choices=FROZEN, help="DAM's evaluation mask")
    parser.add_argument("--dam-bases", nargs="+", choices=("task_arithmetic", "adamerging"),
                        default=["task_arithmetic", "adamerging"], help="the base merges DAM runs on")
    parser.add_argument("--lock-tasks", nargs="+", default=["scenes", "signs"])
    parser.add_argument("--skip-dam", action="store_true")
    parser.add_argument("--skip-lock", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    backdoors()
    if not args.skip_dam:
        dam(args.dam_task, {"steps": args.dam_steps, "adamerging_steps": args.dam_adamerging_steps,
                            "lr": args.dam_lr, "adv_lr": args.dam_adv_lr, "adv_weight": args.dam_adv_weight,
                            "eval_mask": args.dam_eval_mask}, args.dam_bases)
    if not args.skip_lock:
        lock(args.lock_tasks)
    print(f"\n{time.perf_counter() - start:.0f} s in all, torch {torch.__version__}, {args.threads} thread(s)")


if __name__ == "__main__":
    main()
