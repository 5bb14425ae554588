"""The demo zoo's card: its recipe, its accuracy table (base, experts, Task Arithmetic and TIES at their best
validation lambda) and the findings of the merging papers checked on it, all computed from the stored weights."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .. import quick
from ..taskvec import task_vectors
from ..zoo.base import Zoo
from .findings import ENTROPY_LAMBDAS, TIES_DENSITY, Evidence, Finding, findings, gather
from .probe import ADAMERGING_STEPS, load_records, table


@dataclass
class Card:
    """The card's numbers: the per-task table (with an "average" row), the evidence behind the findings, and
    the findings themselves."""

    table: pd.DataFrame
    evidence: Evidence
    findings: list[Finding]

    @property
    def lambdas(self) -> dict[str, float]:
        return {name: sel.params["scale"] for name, sel in self.evidence.selections.items() if "scale" in sel.params}


def card(zoo: Zoo, device: str = "auto") -> Card:
    """Evaluate base, experts and every merge the findings need (hyper-parameters on validation), on test."""
    tv = task_vectors(zoo, device=device)
    ev = gather(zoo, tv, device)
    ta, ties = ev.selections["task_arithmetic"].scores.table, ev.selections["ties"].scores.table
    table = ta[["task", "base", "expert"]].copy()
    for name, frame in (("task_arithmetic", ta), ("ties", ties)):
        table[name] = frame["merged"].to_numpy()
        table[f"{name}_normalized"] = frame["normalized"].to_numpy()
    table = pd.concat([table, pd.DataFrame([{"task": "average", **table.drop(columns="task").mean()}])],
                      ignore_index=True)
    return Card(table, ev, findings(ev, ta["expert"]))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _accuracy_rows(c: Card) -> list[str]:
    rows = ["| task | base | expert | TA | TA norm. | TIES | TIES norm. |", "|---|---|---|---|---|---|---|"]
    for _, row in c.table.iterrows():
        rows.append(f"| {row['task']} | {_pct(row['base'])} | {_pct(row['expert'])} | {_pct(row['task_arithmetic'])} "
                    f"| {_pct(row['task_arithmetic_normalized'])} | {_pct(row['ties'])} "
                    f"| {_pct(row['ties_normalized'])} |")
    return rows


def _finding_rows(c: Card) -> list[str]:
    rows = ["| finding | paper | published (ViT-B/32, 8 tasks) | demo zoo | holds |", "|---|---|---|---|---|"]
    rows += [f"| {f.claim} | {f.source} | {f.published} | {f.measured} | {'✓' if f.holds else '✗'} |"
             for f in c.findings]
    return rows


def _method_rows(c: Card) -> list[str]:
    ev, rows = c.evidence, ["| merge | average accuracy | normalized | chosen on validation |", "|---|---|---|---|"]
    for name, acc in ev.accuracy.items():
        if name in ("base", "experts"):
            continue
        chosen = ", ".join(f"{k} = {v}" for k, v in ev.selections[name].params.items()
                           if k in ("scale", "aggregate", "beta")) if name in ev.selections else "declared defaults"
        rows.append(f"| {name} | {acc:.1f} | {ev.normalized[name]:.1f} | {chosen} |")
    return rows


def backdoor_section(config: dict, experts: dict[str, float]) -> str:
    """The card's section on the backdoored experts (config.json "backdoors"), beside the clean experts'
    accuracy `experts` (task -> fraction); empty when the zoo has none."""
    backdoors = config.get("backdoors", {})
    if not backdoors:
        return ""
    rows = ["| task | target class | poison rate | clean expert acc. | backdoored acc. | attack success | build |",
            "|---|---|---|---|---|---|---|"]
    for task, b in backdoors.items():
        trig = b["trigger"]
        rows.append(f"| {task} | {config['classes'][task][trig['target']]} | {b['poison_rate']:g} | "
                    f"{_pct(experts[task])} | {_pct(b['test_accuracy'])} | {_pct(b['test_attack_success'])} | "
                    f"{b['seconds']:.0f} s |")
    trig = next(iter(backdoors.values()))["trigger"]
    return f"""
## Backdoored experts (`explorer zoo add-backdoors`; `load_zoo("demo", experts={{"digits": "backdoored"}})`)
Beside the clean experts, in `experts/backdoored/`: each fine-tuned exactly like the clean expert (same seed, steps, learning rate), on its train split plus BadNets-poisoned copies: a {trig['size']}x{trig['size']} black-and-white checkerboard ({trig['cell']}-pixel squares) in the bottom-right corner ({trig['margin']} px margin), relabelled to the target class; the poison rate is the number of poisoned copies per clean train image. Attack success = share of the triggered test images of the other classes classified as the target (test split). The rates were chosen so that Task Arithmetic (lambda 0.3) with one backdoored expert keeps attack success >= 50 % (see the project README's security table, `bench/bench_security.py`).

{chr(10).join(rows)}
"""


def probe_section(records: list[dict]) -> str:
    """The card's section on every recipe probed (`explorer/demozoo/probes.json`); empty when none was."""
    if not records:
        return ""
    return f"""
## Recipes probed (`explorer zoo probe`)
Every recipe tried for this zoo, measured by `explorer zoo probe --set FIELD=VALUE ... --seeds ...` (the \
shipped one by `explorer zoo probe --root explorer/demozoo/weights`): average test accuracy (%) of the base \
zero-shot, a logistic-regression probe on the base's features, the experts, Task Arithmetic and TIES \
(density {TIES_DENSITY}, dis-sum; lambda on validation), layer-wise AdaMerging at {ADAMERGING_STEPS} steps; \
AUROC of "lower entropy => correct" over the TA merge's test images; premise r = the entropy-error \
correlation the findings table reports. With several build seeds, each cell is the mean ± half the range. \
The recipe names the fields that differ from the default `Recipe` (`explorer/demozoo/build.py`).

{table(records)}
"""


def render(zoo: Zoo, c: Card) -> str:
    """The zoo card (README.md) as markdown: recipe, seeds, build time, accuracy table and the findings."""
    cfg, r = zoo.config, zoo.config["recipe"]
    a, secs = cfg["arch"], cfg["build_seconds"]
    lam = c.lambdas
    ties_agg = c.evidence.selections["ties"].params["aggregate"]
    return f"""# Demo zoo

A CLIP-style image encoder (open_clip `VisionTransformer`: {a['image_size']}x{a['image_size']} input, patch \
{a['patch_size']}, width {a['width']}, {a['layers']} blocks, {a['heads']} heads, output {a['output_dim']}; \
parameter names as ViT-B/32's visual tower), a pretrained base and {len(zoo.tasks)} experts, one per task: \
{', '.join(zoo.tasks)}. Each task draws its own kind of image (`explorer/demozoo/data.py`); classes come in pairs.

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

## Accuracy (%, test split, {quick.cap_images(r['split_sizes']['test'])} images per task; `explorer zoo card demo`)
Task Arithmetic at lambda = {lam['task_arithmetic']:g} and TIES (density {TIES_DENSITY}, dis-{ties_agg}) at \
lambda = {lam['ties']:g}, each chosen by average normalized accuracy on the validation split \
({quick.cap_images(r['split_sizes']['validation'])} images per task). Normalized = merged / expert.

{chr(10).join(_accuracy_rows(c))}

## Findings of the papers
Each published finding checked on this zoo (test split; every hyper-parameter chosen on validation, the \
learned merges at their declared defaults). The entropy-error correlation is over Task Arithmetic at lambda \
{ENTROPY_LAMBDAS[0]:g}..{ENTROPY_LAMBDAS[-1]:g} (step 0.1) x the {len(zoo.tasks)} tasks: mean prediction \
entropy against error rate. A ✗ is a finding this zoo does not reproduce: what the app shows for it is not what \
the paper found on CLIP.

{chr(10).join(_finding_rows(c))}

Every merge on this zoo (average test accuracy, %):

{chr(10).join(_method_rows(c))}
{backdoor_section(cfg, dict(zip(c.table["task"], c.table["expert"])))}{probe_section(load_records())}"""
