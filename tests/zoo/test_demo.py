"""The embedded demo zoo: its data generators, the shipped weights and card, and the builder."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import explorer as ex
from explorer.cli import main as cli_main
from explorer.demozoo.build import Recipe, build
from explorer.zoo import data
from explorer.zoo.demo import DEFAULT_DIR, DemoZoo

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


def _card_rows() -> dict[str, list[float]]:
    text = (DEFAULT_DIR / "README.md").read_text()
    rows = re.findall(r"^\| (\w+)" + r" \| ([\d.]+)" * 6 + r" \|$", text, re.M)
    return {r[0]: [float(v) for v in r[1:]] for r in rows}


@pytest.mark.slow
def test_card_matches_evaluation():
    zoo = ex.load_zoo("demo")
    rows = _card_rows()
    assert set(rows) == set(zoo.tasks) | {"average"}
    lam = float(re.search(r"Task Arithmetic at lambda = ([\d.]+)", (DEFAULT_DIR / "README.md").read_text()).group(1))
    scores = ex.evaluate(zoo, ex.merge(ex.task_vectors(zoo), "task_arithmetic", scale=lam))
    for _, r in scores.table.iterrows():
        base, expert, ta, ta_norm = rows[r["task"]][:4]
        assert (base, expert, ta, ta_norm) == pytest.approx(
            (100 * r["base"], 100 * r["expert"], 100 * r["merged"], 100 * r["normalized"]), abs=0.051)


@pytest.mark.slow
def test_card_file_equals_what_the_card_command_prints(capsys):
    """The shipped card (with its findings-of-the-papers table) is exactly `explorer zoo card demo`'s output."""
    torch.set_num_threads(2)  # the card was written with 2 threads; the learned merges are seeded
    assert cli_main(["zoo", "card", "demo", "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    assert "## Findings of the papers" in printed and "| prediction entropy rises with error" in printed
    assert printed.strip() == (DEFAULT_DIR / "README.md").read_text().strip()


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
