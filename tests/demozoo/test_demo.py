"""The embedded demo zoo: its data generators, the shipped weights and card, and the builder."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import explorer as ex
from explorer import quick
from explorer.cli import main as cli_main
from explorer.demozoo import data
from explorer.demozoo.build import Recipe, build
from explorer.demozoo.zoo import DEFAULT_DIR, DemoZoo

SMALL = {"pretrain": 64, "train": 64, "validation": 32, "test": 32}


@pytest.mark.parametrize("task", data.TASKS)
def test_generators_are_seeded_balanced_and_in_range(task):
    img, y = data.generate_uint8(task, "validation", 48)
    again, y2 = data.generate_uint8(task, "validation", 48)
    other, _ = data.generate_uint8(task, "validation", 48, seed=1)
    assert img.shape == (48, 32, 32, 3) and img.dtype == np.uint8
    assert np.array_equal(img, again) and np.array_equal(y, y2)
    assert not np.array_equal(img, other)
    counts = np.bincount(y, minlength=len(data.CLASSES[task]))
    assert counts.max() - counts.min() <= 1  # balanced
    assert img.std() > 10  # not blank


def test_splits_and_tasks_differ():
    a, _ = data.generate_uint8("clock", "train", 32)
    b, _ = data.generate_uint8("clock", "test", 32)
    assert not np.array_equal(a, b)
    ranges = [data._DIGIT_RANGES[s] for s in ("test", "validation", "train")]
    assert all(hi <= lo for (_, hi), (lo, _) in zip(ranges, ranges[1:]))  # disjoint digit writers per split
    x, y = data.generate("letters", "test", 16)
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    with pytest.raises(ValueError, match="unknown demo task"):
        data.generate("cifar", "test")


def test_shipped_zoo_loads_with_matching_names():
    zoo = ex.load_zoo("demo")
    assert zoo.tasks == data.TASKS
    keys = set(zoo.build_model().state_dict())
    assert set(zoo.base_state_dict()) == keys
    assert "transformer.resblocks.5.attn.in_proj_weight" in keys
    for task in zoo.tasks:
        assert set(zoo.expert_state_dict(task)) == keys
        head = zoo.head(task)
        assert not any(p.requires_grad for p in head.parameters())
        logits = head(torch.randn(5, zoo.config["arch"]["output_dim"]))
        assert logits.shape == (5, len(zoo.class_names(task)))
        assert len(zoo.dataset(task, "validation")) == zoo.config["split_sizes"]["validation"]


def test_a_demo_build_opened_by_its_path_is_a_demo_zoo():
    """A folder holding a demo-zoo build (config.json + heads.safetensors) opens through the demo loader, like
    "demo" itself; the zoo registry finds that loader by name (explorer/zoo/local.py no longer imports it)."""
    zoo = ex.load_zoo(str(DEFAULT_DIR))
    assert isinstance(zoo, DemoZoo) and zoo.root == DEFAULT_DIR and zoo.tasks == data.TASKS


def _card_rows() -> dict[str, list[float]]:
    text = (DEFAULT_DIR / "README.md").read_text()
    rows = re.findall(r"^\| (\w+)" + r" \| ([\d.]+)" * 6 + r" \|$", text, re.M)
    return {r[0]: [float(v) for v in r[1:]] for r in rows}


QUICK_CARD = Path(__file__).parent / "data" / "card_quick.md"


@pytest.mark.slow
def test_card_matches_evaluation():
    """The shipped card's Task Arithmetic and TIES columns are what a full evaluation of those merges gives, at the
    lambda (and TIES aggregate) the card reports it chose on validation."""
    zoo = ex.load_zoo("demo")
    rows, text = _card_rows(), (DEFAULT_DIR / "README.md").read_text()
    assert set(rows) == set(zoo.tasks) | {"average"}
    lam = float(re.search(r"Task Arithmetic at lambda = ([\d.]+)", text).group(1))
    ties_scale, aggregate = re.search(r"^\| ties \| [\d.]+ \| [\d.]+ \| scale = ([\d.]+), aggregate = (\w+) \|$",
                                      text, re.M).groups()
    tv = ex.task_vectors(zoo)
    merges = {0: ex.merge(tv, "task_arithmetic", scale=lam),
              2: ex.merge(tv, "ties", density=0.2, scale=float(ties_scale), aggregate=aggregate)}
    for column, result in merges.items():
        for _, r in ex.evaluate(zoo, result).table.iterrows():
            base, expert, merged, normalized = rows[r["task"]][:2] + rows[r["task"]][2 + column:4 + column]
            assert (base, expert, merged, normalized) == pytest.approx(
                (100 * r["base"], 100 * r["expert"], 100 * r["merged"], 100 * r["normalized"]), abs=0.051)


@pytest.mark.slow
def test_quick_card_equals_the_committed_quick_card():
    """`explorer zoo card demo` in quick mode (EXPLORER_QUICK=1: 64 images per split, a few steps per learned merge,
    the first, middle and last value of each swept grid; in a child process, so no cache of this one is shared)
    prints exactly tests/demozoo/data/card_quick.md: every grid
    search, learned merge, finding and section of the card runs end to end and gives the numbers it gave when
    `make card` last wrote both cards. The full card takes ~8 minutes, too long for the suite: its accuracy table is
    checked above on the full test split, and `make card` rewrites it (git diff shows any drift). Both cards have
    the same rows."""
    env = {**os.environ, quick.ENV: "1"}
    out = subprocess.run([sys.executable, "-m", "explorer", "zoo", "card", "demo", "--threads", "1"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "## Findings of the papers" in out.stdout and "| prediction entropy rises with error" in out.stdout
    assert out.stdout.strip() == QUICK_CARD.read_text().strip()
    labels = re.compile(r"^\| ([^|]+) \|", re.M)
    assert labels.findall(out.stdout) == labels.findall((DEFAULT_DIR / "README.md").read_text())


@pytest.mark.slow
def test_builder_cli_builds_one_expert(tmp_path):
    out = tmp_path / "zoo"
    assert cli_main(["zoo", "build-demo", "--out", str(out), "--tasks", "clock", "--steps-scale", "0.01",
                     "--threads", "1", "--no-card"]) == 0
    zoo = DemoZoo(out)
    assert zoo.tasks == ["clock"] and zoo.config["recipe"]["finetune_steps"] == round(0.01 * Recipe().finetune_steps)
    base, expert = zoo.base_state_dict(), zoo.expert_state_dict("clock")
    assert any(not torch.equal(base[k], expert[k]) for k in base)
    assert zoo.config["fp16_check"]["clock"] <= 0.02  # float16 storage keeps the accuracy
    scores = ex.evaluate(zoo, expert, limit=64).table  # the expert's own weights, scored as a "merge"
    assert scores.merged[0] == scores.expert[0]


@pytest.mark.slow
def test_builder_is_reproducible(tmp_path):
    recipe = Recipe(tasks=("signs", "scenes"), split_sizes=SMALL, pretrain_steps=3, finetune_steps=2, batch_size=16)
    build(tmp_path / "a", recipe)
    build(tmp_path / "b", recipe)
    for name in ("base.safetensors", "heads.safetensors", "experts/signs.safetensors", "experts/scenes.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    with pytest.raises(ValueError, match="unknown or no demo task"):
        build(tmp_path / "c", Recipe(tasks=("cifar",)))
    with pytest.raises(FileNotFoundError, match="build-demo"):
        DemoZoo(tmp_path / "missing")
