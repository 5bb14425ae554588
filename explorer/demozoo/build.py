"""Builds the demo zoo from seeds: generic pretraining, frozen prototype heads, then one expert per task.

Mirrors the real benchmark's recipe at toy scale: the base is pretrained on every task's images, with
coarse labels only (which pair of classes: useful features that cannot tell the classes of a pair apart)
or with fine labels (every class: features that already separate each task's classes, as CLIP's linear
probes show, while the zero-shot heads stay poor); each task's head is frozen from the base (class
prototypes, as CLIP's text heads); each expert is the base fine-tuned on its task with AdamW, a cosine
schedule and that frozen head.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..inference import task_accuracy
from ..weights import write_weights
from .data import CLASSES, SPLIT_SIZES, TASKS, generate
from .zoo import CosineHead, DemoZoo, build_encoder

ARCH = {"image_size": 32, "patch_size": 8, "width": 128, "layers": 6, "heads": 4, "mlp_ratio": 4.0,
        "output_dim": 64}


@dataclass(frozen=True)
class Recipe:
    """Every number that decides the demo zoo; `build(recipe)` is a function of it alone."""

    seed: int = 0
    data_seed: int = 0
    tasks: tuple[str, ...] = tuple(TASKS)
    arch: dict = field(default_factory=lambda: dict(ARCH))
    split_sizes: dict = field(default_factory=lambda: dict(SPLIT_SIZES))
    batch_size: int = 64
    pretrain_steps: int = 1200
    pretrain_lr: float = 1e-3
    finetune_steps: int = 300
    finetune_lr: float = 5e-4
    weight_decay: float = 0.1
    logit_scale: float = 100.0
    head_noise: float = 0.5
    pretrain_labels: str = "coarse"  # "coarse": (task, class pair); "fine": (task, class), the head discarded
    label_smoothing: float = 0.0  # the experts' fine-tuning loss (softer targets: less confidently wrong merges)

    def scaled(self, factor: float) -> "Recipe":
        """The same recipe with both step counts multiplied by `factor` (at least 1 step each)."""
        if factor <= 0:
            raise ValueError(f"steps scale must be > 0, got {factor}")
        return replace(self, pretrain_steps=max(1, round(self.pretrain_steps * factor)),
                       finetune_steps=max(1, round(self.finetune_steps * factor)))


def _train(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, steps: int,
           lr: float, recipe: Recipe, seed: int) -> list[float]:
    """AdamW with 10 % linear warm-up, cosine decay and gradient clipping at 1; returns the loss per step."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=recipe.weight_decay)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 0.5 * (
        1 + torch.cos(torch.tensor(torch.pi * max(0, s - warm) / max(1, steps - warm))).item())))
    gen = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(y), (recipe.batch_size,), generator=gen)
        loss = loss_fn(x[idx], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


PRETRAIN_LABELS = ("coarse", "fine")


def check(recipe: Recipe) -> None:
    """A ValueError naming the first field of `recipe` that no build can use."""
    unknown = [t for t in recipe.tasks if t not in TASKS]
    if unknown or not recipe.tasks:
        raise ValueError(f"unknown or no demo task(s) {unknown}; choose from {TASKS}")
    if recipe.pretrain_labels not in PRETRAIN_LABELS:
        raise ValueError(f"pretrain_labels must be one of {PRETRAIN_LABELS}, got {recipe.pretrain_labels!r}")
    if not 0.0 <= recipe.label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {recipe.label_smoothing}")
    if recipe.logit_scale <= 0:
        raise ValueError(f"logit_scale must be > 0, got {recipe.logit_scale}")


def pretrain(recipe: Recipe) -> dict[str, Tensor]:
    """theta_0: the encoder trained on all tasks' "pretrain" images to predict (task, class pair) or, with
    `pretrain_labels="fine"`, (task, class); the linear head of that pretraining is discarded."""
    xs, ys, offset = [], [], 0
    fine = recipe.pretrain_labels == "fine"
    for task in recipe.tasks:
        x, y = generate(task, "pretrain", recipe.split_sizes["pretrain"], recipe.data_seed)
        xs.append(x)
        ys.append(offset + (y if fine else y // 2))
        offset += len(CLASSES[task]) if fine else (len(CLASSES[task]) + 1) // 2
    torch.manual_seed(recipe.seed)
    encoder = build_encoder(recipe.arch)
    probe = nn.Linear(recipe.arch["output_dim"], offset)
    model = nn.Sequential(encoder, probe)
    _train(model, lambda a, b: F.cross_entropy(model(a), b), torch.cat(xs), torch.cat(ys),
           recipe.pretrain_steps, recipe.pretrain_lr, recipe, recipe.seed)
    return {k: v.detach().clone() for k, v in encoder.state_dict().items()}


@torch.no_grad()
def features(encoder: nn.Module, x: Tensor, batch: int = 512) -> Tensor:
    """Encoder outputs [N, D] for images [N, 3, H, W], in batches."""
    encoder.eval()
    return torch.cat([encoder(x[i:i + batch]) for i in range(0, len(x), batch)])


def prototype_heads(recipe: Recipe, base: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each task's frozen head weight [C, D]: the mean normalised base feature of the class's pair on the
    train split plus `head_noise` times a seeded random unit direction per class, so (as CLIP's text heads)
    a head knows the coarse concept and only weakly the fine class."""
    encoder = build_encoder(recipe.arch)
    encoder.load_state_dict(base)
    gen = torch.Generator().manual_seed(recipe.seed)
    heads = {}
    for task in recipe.tasks:
        x, y = generate(task, "train", recipe.split_sizes["train"], recipe.data_seed)
        f = F.normalize(features(encoder, x), dim=-1)
        classes = len(CLASSES[task])
        pairs = F.normalize(torch.stack([f[y // 2 == p].mean(0) for p in range((classes + 1) // 2)]), dim=-1)
        noise = F.normalize(torch.randn(classes, f.shape[1], generator=gen), dim=-1)
        heads[task] = F.normalize(pairs[torch.arange(classes) // 2] + recipe.head_noise * noise, dim=-1)
    return heads


def finetune(recipe: Recipe, base: dict[str, Tensor], head: Tensor, task: str,
             data: tuple[Tensor, Tensor] | None = None) -> dict[str, Tensor]:
    """theta_t: the base fine-tuned on `task`'s train split through its frozen head; `data` (images, labels)
    replaces the train split (a backdoored expert's poisoned copy of it)."""
    x, y = data if data is not None else generate(task, "train", recipe.split_sizes["train"], recipe.data_seed)
    encoder = build_encoder(recipe.arch)
    encoder.load_state_dict(base)
    frozen = CosineHead(head, recipe.logit_scale).requires_grad_(False)
    smooth = recipe.label_smoothing
    _train(encoder, lambda a, b: F.cross_entropy(frozen(encoder(a)), b, label_smoothing=smooth), x, y,
           recipe.finetune_steps,
           recipe.finetune_lr, recipe, recipe.seed + 1 + TASKS.index(task))
    return {k: v.detach().clone() for k, v in encoder.state_dict().items()}


def _save(path: Path, tensors: dict[str, Tensor]) -> None:
    write_weights({k: v.to(torch.float16) for k, v in tensors.items()}, path)


def build(out: str | Path, recipe: Recipe = Recipe(), log: Callable[[str], None] | None = None) -> dict:
    """Train and write a demo zoo (base, experts, heads, config.json) to `out`; returns the config written.

    Weights are stored in float16; `config["fp16_check"]` records how much each expert's test accuracy
    moves between the trained float32 weights and the stored ones.
    """
    check(recipe)
    say = log or (lambda _msg: None)
    out, start, seconds = Path(out), time.perf_counter(), {}
    base = pretrain(recipe)
    seconds["pretrain"] = time.perf_counter() - start
    say(f"pretrained the base in {seconds['pretrain']:.0f} s")
    heads = prototype_heads(recipe, base)
    _save(out / "base.safetensors", base)
    _save(out / "heads.safetensors", heads)
    experts = {}
    for task in recipe.tasks:
        t0 = time.perf_counter()
        experts[task] = finetune(recipe, base, heads[task], task)
        _save(out / "experts" / f"{task}.safetensors", experts[task])
        seconds[task] = time.perf_counter() - t0
        say(f"fine-tuned the {task} expert in {seconds[task]:.0f} s")
    seconds["total"] = time.perf_counter() - start
    config = {"tasks": list(recipe.tasks), "classes": {t: CLASSES[t] for t in recipe.tasks}, "arch": recipe.arch,
              "logit_scale": recipe.logit_scale, "split_sizes": recipe.split_sizes, "data_seed": recipe.data_seed,
              "recipe": asdict(recipe), "build_seconds": {k: round(v, 1) for k, v in seconds.items()},
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    zoo = DemoZoo(out)
    config["fp16_check"] = {t: abs(task_accuracy(zoo, zoo.expert_state_dict(t), t) -
                                   task_accuracy(zoo, experts[t], t)) for t in recipe.tasks}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return config
