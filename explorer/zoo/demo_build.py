"""Builds the demo zoo from seeds: CLIP-style pretraining, zero-shot heads from a concept tower, one expert per task.

Mirrors the real benchmark's recipe at toy scale. The base image encoder and a small concept ("text")
tower are trained contrastively on every task's *shifted-domain* images (blurred, greyed, noisy: the web
images CLIP saw are not the benchmark's) with noisy captions and a learned temperature, so the base is a
broad, calibrated but clearly imperfect zero-shot model. Each task's frozen head is the concept tower's
embedding of its class names at the learned temperature, as CLIP's text heads. Each expert is the base
fine-tuned on its task's clean images with AdamW at a small learning rate through that frozen head: the
small-move regime in which task vectors add up.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..scoring import task_accuracy
from ..weights import write_weights
from .data import CLASSES, SPLIT_SIZES, TASKS, generate
from .demo import CosineHead, DemoZoo, build_encoder

ARCH = {"image_size": 32, "patch_size": 8, "width": 128, "layers": 6, "heads": 4, "mlp_ratio": 4.0,
        "output_dim": 128}
MAX_LOGIT_SCALE = 100.0  # CLIP clamps its learned temperature at 100


@dataclass(frozen=True)
class Recipe:
    """Every number that decides the demo zoo; `build(recipe)` is a function of it alone."""

    seed: int = 0
    data_seed: int = 0
    tasks: tuple[str, ...] = tuple(TASKS)
    arch: dict = field(default_factory=lambda: dict(ARCH))
    split_sizes: dict = field(default_factory=lambda: dict(SPLIT_SIZES))
    pretrain_steps: int = 1500
    pretrain_batch: int = 64
    pretrain_lr: float = 1e-3
    shift: float = 1.0  # strength of the pretraining domain shift (blur, grey, noise, contrast): 0 = none
    caption_noise: float = 0.1  # share of pretraining images captioned with a random class of their task
    pair_noise: float = 0.3  # share captioned with the other class of their pair (0-1, 2-3, ...): near concepts
    finetune_steps: int = 800
    finetune_batch: int = 32
    finetune_lr: float = 1e-4
    weight_decay: float = 0.1

    def scaled(self, factor: float) -> "Recipe":
        """The same recipe with both step counts multiplied by `factor` (at least 1 step each)."""
        if factor <= 0:
            raise ValueError(f"steps scale must be > 0, got {factor}")
        return replace(self, pretrain_steps=max(1, round(self.pretrain_steps * factor)),
                       finetune_steps=max(1, round(self.finetune_steps * factor)))


def concept_prompts(tasks: tuple[str, ...]) -> tuple[list[list[str]], dict[str, slice]]:
    """Each class's prompt as words (its name's words plus a task token, as "a photo of a X, a kind of T")
    and the slice of the concept list that belongs to each task."""
    prompts, spans = [], {}
    for task in tasks:
        spans[task] = slice(len(prompts), len(prompts) + len(CLASSES[task]))
        prompts += [name.lower().replace("'", "").split() + [f"<{task}>"] for name in CLASSES[task]]
    return prompts, spans


class ConceptTower(nn.Module):
    """The toy text tower: a prompt's word embeddings averaged, then projected to the joint space [C, D]."""

    def __init__(self, prompts: list[list[str]], width: int, dim: int):
        super().__init__()
        vocab = sorted({w for p in prompts for w in p})
        index = {w: i for i, w in enumerate(vocab)}
        self.register_buffer("tokens", torch.tensor([index[w] for p in prompts for w in p]))
        self.register_buffer("offsets", torch.tensor([0] + [len(p) for p in prompts[:-1]]).cumsum(0))
        self.embed = nn.EmbeddingBag(len(vocab), width, mode="mean")
        self.proj = nn.Linear(width, dim, bias=False)

    def forward(self) -> Tensor:
        return self.proj(self.embed(self.tokens, self.offsets))


def shift_domain(x: Tensor, gen: torch.Generator, strength: float) -> Tensor:
    """The pretraining domain: per image, 2x blur (p = strength/2), greyscale (p = 0.5 strength), lower
    contrast and Gaussian noise (sd 0.3 strength) on normalised images [N, 3, H, W]."""
    if strength <= 0:
        return x
    n = len(x)
    coin = lambda p: (torch.rand(n, 1, 1, 1, generator=gen) < p).float()  # noqa: E731
    blur = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    b = coin(0.5 * strength)
    x = b * blur + (1 - b) * x
    g = coin(0.5 * strength)
    x = g * x.mean(1, keepdim=True).expand_as(x) + (1 - g) * x
    contrast = 1 - 0.5 * strength * torch.rand(n, 1, 1, 1, generator=gen)
    return x * contrast + 0.3 * strength * torch.randn(x.shape, generator=gen)


def _schedule(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """10 % linear warm-up, then cosine decay to 0."""
    warm = max(1, steps // 10)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 0.5 * (
        1 + math.cos(math.pi * max(0, s - warm) / max(1, steps - warm)))))


def _train(params: list[Tensor], loss_fn: Callable[[Tensor], Tensor], n: int, steps: int, batch: int, lr: float,
           weight_decay: float, seed: int) -> list[float]:
    """AdamW on `loss_fn(batch indices)` with the schedule above and gradient clipping at 1; loss per step."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched, gen, losses = _schedule(opt, steps), torch.Generator().manual_seed(seed), []
    for _ in range(steps):
        loss = loss_fn(torch.randint(n, (batch,), generator=gen))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def _noisy_captions(y: Tensor, classes: int, recipe: Recipe, gen: torch.Generator) -> Tensor:
    """Web-style captions: the true class, its pair partner (p = pair_noise) or a random class of the task
    (p = caption_noise); pair confusion keeps the base unsure between near concepts, as CLIP between car models."""
    u = torch.rand(len(y), generator=gen)
    partner = torch.where((y ^ 1) < classes, y ^ 1, y)
    y = torch.where(u < recipe.pair_noise, partner, y)
    random = torch.randint(classes, y.shape, generator=gen)
    return torch.where((u >= recipe.pair_noise) & (u < recipe.pair_noise + recipe.caption_noise), random, y)


def pretrain(recipe: Recipe) -> tuple[dict[str, Tensor], dict[str, Tensor], float]:
    """(theta_0, the zero-shot head of each task [C, D], the learned logit scale): contrastive pretraining of
    the encoder and the concept tower on shifted-domain images with noisy captions, over all concepts."""
    prompts, spans = concept_prompts(recipe.tasks)
    gen = torch.Generator().manual_seed(recipe.seed)
    xs, ys = [], []
    for task in recipe.tasks:
        x, y = generate(task, "pretrain", recipe.split_sizes["pretrain"], recipe.data_seed)
        y = _noisy_captions(y, len(CLASSES[task]), recipe, gen)
        xs.append(x)
        ys.append(spans[task].start + y)
    x, y = torch.cat(xs), torch.cat(ys)
    torch.manual_seed(recipe.seed)
    encoder, a = build_encoder(recipe.arch), recipe.arch
    tower = ConceptTower(prompts, a["width"], a["output_dim"])
    log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def loss(idx: Tensor) -> Tensor:
        img = F.normalize(encoder(shift_domain(x[idx], gen, recipe.shift)), dim=-1)
        logits = log_scale.exp().clamp(max=MAX_LOGIT_SCALE) * img @ F.normalize(tower(), dim=-1).t()
        return F.cross_entropy(logits, y[idx])

    encoder.train()
    _train([*encoder.parameters(), *tower.parameters(), log_scale], loss, len(y), recipe.pretrain_steps,
           recipe.pretrain_batch, recipe.pretrain_lr, recipe.weight_decay, recipe.seed)
    encoder.eval()
    with torch.no_grad():
        text = F.normalize(tower(), dim=-1)
    heads = {t: text[spans[t]].clone() for t in recipe.tasks}
    scale = float(log_scale.detach().exp().clamp(max=MAX_LOGIT_SCALE))
    return {k: v.detach().clone() for k, v in encoder.state_dict().items()}, heads, scale


def finetune(recipe: Recipe, base: dict[str, Tensor], head: Tensor, scale: float, task: str) -> dict[str, Tensor]:
    """theta_t: the base fine-tuned on `task`'s clean train split through its frozen zero-shot head."""
    x, y = generate(task, "train", recipe.split_sizes["train"], recipe.data_seed)
    encoder = build_encoder(recipe.arch)
    encoder.load_state_dict(base)
    frozen = CosineHead(head, scale).requires_grad_(False)
    encoder.train()
    _train(list(encoder.parameters()), lambda idx: F.cross_entropy(frozen(encoder(x[idx])), y[idx]), len(y),
           recipe.finetune_steps, recipe.finetune_batch, recipe.finetune_lr, recipe.weight_decay,
           recipe.seed + 1 + TASKS.index(task))
    encoder.eval()
    return {k: v.detach().clone() for k, v in encoder.state_dict().items()}


def _save(path: Path, tensors: dict[str, Tensor]) -> None:
    write_weights({k: v.to(torch.float16) for k, v in tensors.items()}, path)


def _relative_norm(base: dict[str, Tensor], expert: dict[str, Tensor]) -> float:
    """||theta_t - theta_0|| / ||theta_0|| over all floating-point parameters."""
    keys = [k for k in base if base[k].is_floating_point()]
    delta = torch.cat([(expert[k] - base[k]).flatten() for k in keys])
    return float(delta.norm() / torch.cat([base[k].flatten() for k in keys]).norm())


def build(out: str | Path, recipe: Recipe = Recipe(), log: Callable[[str], None] | None = None) -> dict:
    """Train and write a demo zoo (base, experts, heads, config.json) to `out`; returns the config written.

    Weights are stored in float16; `config["fp16_check"]` records how much each expert's test accuracy
    moves between the trained float32 weights and the stored ones, `config["relative_norm"]` each task
    vector's norm relative to the base weights'.
    """
    unknown = [t for t in recipe.tasks if t not in TASKS]
    if unknown or not recipe.tasks:
        raise ValueError(f"unknown or no demo task(s) {unknown}; choose from {TASKS}")
    say = log or (lambda _msg: None)
    out, start, seconds = Path(out), time.perf_counter(), {}
    base, heads, scale = pretrain(recipe)
    seconds["pretrain"] = time.perf_counter() - start
    say(f"pretrained the base in {seconds['pretrain']:.0f} s (logit scale {scale:.1f})")
    _save(out / "base.safetensors", base)
    _save(out / "heads.safetensors", heads)
    experts = {}
    for task in recipe.tasks:
        t0 = time.perf_counter()
        experts[task] = finetune(recipe, base, heads[task], scale, task)
        _save(out / "experts" / f"{task}.safetensors", experts[task])
        seconds[task] = time.perf_counter() - t0
        say(f"fine-tuned the {task} expert in {seconds[task]:.0f} s")
    seconds["total"] = time.perf_counter() - start
    config = {"tasks": list(recipe.tasks), "classes": {t: CLASSES[t] for t in recipe.tasks}, "arch": recipe.arch,
              "logit_scale": scale, "split_sizes": recipe.split_sizes, "data_seed": recipe.data_seed,
              "recipe": asdict(recipe), "build_seconds": {k: round(v, 1) for k, v in seconds.items()},
              "relative_norm": {t: round(_relative_norm(base, experts[t]), 5) for t in recipe.tasks},
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    zoo = DemoZoo(out)
    config["fp16_check"] = {t: abs(task_accuracy(zoo, zoo.expert_state_dict(t), t) -
                                   task_accuracy(zoo, experts[t], t)) for t in recipe.tasks}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return config
