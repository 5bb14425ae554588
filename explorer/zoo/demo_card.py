"""The demo zoo's card: its accuracy table (base, experts, Task Arithmetic and TIES at their best validation
lambda) and the README text around it, all computed from the stored weights."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from .base import Zoo

TA_GRID = [round(0.1 * i, 1) for i in range(1, 11)]  # TALL/LiNeS grid for task arithmetic
TIES_GRID = [round(0.1 * i, 1) for i in range(1, 16)]  # LiNeS grid for TIES (dis-mean)
TIES_DENSITY = 0.2


@dataclass
class Card:
    """The card's numbers: the per-task table (with an "average" row), the chosen lambdas, the bar checks."""

    table: pd.DataFrame
    lambdas: dict[str, float]
    checks: dict[str, bool]
    cosine: tuple[float, float]


def card(zoo: Zoo, device: str = "auto") -> Card:
    """Evaluate base, experts, Task Arithmetic and TIES (density 0.2), each lambda picked on validation."""
    import explorer as ex

    tv = ex.task_vectors(zoo, device=device)
    ta = ex.select(tv, "task_arithmetic", {"scale": TA_GRID}, zoo=zoo, device=device)
    ties = ex.select(tv, "ties", {"scale": TIES_GRID}, zoo=zoo, device=device, density=TIES_DENSITY)
    table = ta.scores.table[["task", "base", "expert"]].copy()
    for name, sel in (("task_arithmetic", ta), ("ties", ties)):
        table[name] = sel.scores.table["merged"].to_numpy()
        table[f"{name}_normalized"] = sel.scores.table["normalized"].to_numpy()
    table = pd.concat([table, pd.DataFrame([{"task": "average", **table.drop(columns="task").mean()}])],
                      ignore_index=True)
    avg = table.iloc[-1]
    flat = torch.nn.functional.normalize(tv.flat(), dim=1)
    cos = (flat @ flat.T)[~torch.eye(tv.num_tasks, dtype=torch.bool)]
    checks = {
        "every expert >= 0.80": bool((table["expert"].iloc[:-1] >= 0.8).all()),
        "experts >= 0.90 on average": bool(avg["expert"] >= 0.9),
        "base >= 25 points below the experts": bool(avg["expert"] - avg["base"] >= 0.25),
        "Task Arithmetic recovers >= 1/3 of the gap": bool(avg["task_arithmetic"] >=
                                                            avg["base"] + (avg["expert"] - avg["base"]) / 3),
        "Task Arithmetic normalized < 0.95": bool(avg["task_arithmetic_normalized"] < 0.95),
    }
    return Card(table, {"task_arithmetic": ta.params["scale"], "ties": ties.params["scale"]}, checks,
                (float(cos.min()), float(cos.max())))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def render(zoo: Zoo, c: Card) -> str:
    """The zoo card (README.md) as markdown: recipe, seeds, build time, accuracy table and checks."""
    cfg, r = zoo.config, zoo.config["recipe"]
    a, secs = cfg["arch"], cfg["build_seconds"]
    rows = ["| task | base | expert | TA | TA norm. | TIES | TIES norm. |", "|---|---|---|---|---|---|---|"]
    for _, row in c.table.iterrows():
        rows.append(f"| {row['task']} | {_pct(row['base'])} | {_pct(row['expert'])} | {_pct(row['task_arithmetic'])} "
                    f"| {_pct(row['task_arithmetic_normalized'])} | {_pct(row['ties'])} "
                    f"| {_pct(row['ties_normalized'])} |")
    checks = "\n".join(f"- [{'x' if ok else ' '}] {name}" for name, ok in c.checks.items())
    return f"""# Demo zoo

A CLIP-style image encoder (open_clip `VisionTransformer`: {a['image_size']}x{a['image_size']} input, patch \
{a['patch_size']}, width {a['width']}, {a['layers']} blocks, {a['heads']} heads, output {a['output_dim']}; \
parameter names as ViT-B/32's visual tower), a pretrained base and {len(zoo.tasks)} experts, one per task: \
{', '.join(zoo.tasks)}. Each task draws its own kind of image (`explorer/zoo/data.py`); classes come in pairs.

## Recipe (`explorer zoo build-demo`, seeds: model {r['seed']}, data {r['data_seed']})
- **Pretraining**: all tasks' `pretrain` images ({r['split_sizes']['pretrain']} per task) labelled only by their \
class pair, {r['pretrain_steps']} AdamW steps of {r['batch_size']} at lr {r['pretrain_lr']} (cosine, 10 % warm-up, \
weight decay {r['weight_decay']}, clip 1), {secs['pretrain']:.0f} s.
- **Heads** (frozen, shared by base, experts and merges): per class, the base's mean normalised feature of its \
class pair on the train split plus {r['head_noise']:g} x a seeded random unit direction; logits = \
{r['logit_scale']:g} x cosine. Like CLIP's zero-shot text heads, they know the coarse concept but only weakly the \
fine class, so the base is clearly below the experts.
- **Experts**: the base fine-tuned on its task's train split ({r['split_sizes']['train']} images) through the frozen \
head, {r['finetune_steps']} steps of {r['batch_size']} at lr {r['finetune_lr']}; \
{min(secs[t] for t in zoo.tasks):.0f}-{max(secs[t] for t in zoo.tasks):.0f} s each.
- Built in {secs['total'] / 60:.1f} min with torch {cfg['torch']} with {cfg['threads']} torch CPU thread(s). Weights are \
stored in float16: the largest change of an expert's test accuracy against its float32 weights was \
{max(cfg['fp16_check'].values()):.4f}.

## Accuracy (%, test split, {r['split_sizes']['test']} images per task; `explorer zoo card demo`)
Task Arithmetic at lambda = {c.lambdas['task_arithmetic']:g} and TIES (density {TIES_DENSITY}, dis-mean) at \
lambda = {c.lambdas['ties']:g}, each chosen by average normalized accuracy on the validation split \
({r['split_sizes']['validation']} images per task). Normalized = merged / expert.

{chr(10).join(rows)}

Quality bar:
{checks}

The pairwise cosine between the task vectors ranges from {c.cosine[0]:.2f} to {c.cosine[1]:.2f}, yet merging \
them loses accuracy: a low cosine does not by itself mean task vectors merge without interference, since what \
matters is how each update moves the features that the other tasks' heads read.
"""
