"""WEMoE's ceiling on the demo zoo: each task's test images through its own expert's MLPs (what a router that knew
the task would pick), every other weight Task Arithmetic at 0.3, next to plain Task Arithmetic. Prints the average
test accuracy and the summed mean prediction entropy (WEMoE's training loss) of both, to compare with what entropy
training reaches.

Run: PYTHONPATH=. .venv/bin/python bench/bench_wemoe_oracle.py [--threads 1]
"""
from __future__ import annotations

import argparse

import torch
from torch.func import functional_call

import explorer as ex
from explorer.inference import eval_data
from explorer.methods.adaptive import softmax_entropy


def own_mlps(tv: ex.TaskVectors, task: int, scale: float) -> dict[str, torch.Tensor]:
    """The merged delta with the MLPs of task `task`'s expert and Task Arithmetic at `scale` elsewhere."""
    return {n: d[task] if ".mlp." in n else scale * d.sum(dim=0) for n, d in tv.deltas.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scale", type=float, default=0.3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    zoo = ex.load_zoo("demo")
    tv = ex.task_vectors(zoo)
    model = zoo.build_model().eval()
    ta = {n: args.scale * d.sum(dim=0) for n, d in tv.deltas.items()}
    print("| merge | test acc % | summed mean entropy |\n|---|---|---|")
    for label, delta_of in (("Task Arithmetic", lambda i: ta), ("own expert's MLPs (oracle router)",
                                                                lambda i: own_mlps(tv, i, args.scale))):
        accuracy, entropy = [], 0.0
        for i, task in enumerate(tv.tasks):
            images, labels = eval_data(zoo, task, "test", None, torch.device("cpu"))
            with torch.no_grad():
                logits = zoo.head(task)(functional_call(model, tv.state_dict(delta_of(i)), (images,)))
            accuracy.append(float((logits.argmax(dim=1) == labels).float().mean()))
            entropy += float(softmax_entropy(logits).mean())
        print(f"| {label} | {100 * sum(accuracy) / len(accuracy):.1f} | {entropy:.2f} |", flush=True)


if __name__ == "__main__":
    main()
