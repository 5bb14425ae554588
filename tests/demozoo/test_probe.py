"""The demo-zoo recipe probe: its figures on a tiny built zoo, the record store and the table the card shows."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from explorer.cli import main as cli_main
from explorer.demozoo import probe as p
from explorer.demozoo.build import Recipe, build, pretrain
from explorer.demozoo.card import probe_section

SMALL = {"pretrain": 48, "train": 48, "validation": 24, "test": 24}
TINY = Recipe(tasks=("signs", "clock"), split_sizes=SMALL, pretrain_steps=4, finetune_steps=3, batch_size=16,
              pretrain_labels="fine", logit_scale=30.0)


def test_low_entropy_auroc_by_hand():
    # correct {0.1, 0.9} vs wrong {0.2, 1.0}: 3 of the 4 (correct, wrong) pairs have the correct one lower
    assert p.low_entropy_auroc(np.array([0.1, 0.2, 0.9, 1.0]), np.array([1, 0, 1, 0])) == pytest.approx(0.75)
    assert p.low_entropy_auroc(np.array([0.1, 0.2, 0.9, 1.0]), np.array([1, 1, 0, 0])) == 1.0
    assert np.isnan(p.low_entropy_auroc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_settings_are_typed_and_bad_ones_named():
    assert p.parse_settings(["logit_scale=30", "pretrain_labels=fine", "finetune_steps=150"]) == {
        "logit_scale": 30.0, "pretrain_labels": "fine", "finetune_steps": 150}
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        p.parse_settings(["logit-scale=30"])
    with pytest.raises(ValueError, match="is not a int"):
        p.parse_settings(["finetune_steps=lots"])
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        p.parse_settings(["arch=wide"])  # a dict field cannot be set from one string


def test_recipe_changes_name_only_what_differs():
    assert p.recipe_changes(Recipe(seed=3)) == {}
    assert p.recipe_changes(Recipe(logit_scale=30.0, pretrain_labels="fine")) == {
        "logit_scale": 30.0, "pretrain_labels": "fine"}


def test_bad_recipes_are_refused_before_training(tmp_path):
    for bad, match in (({"pretrain_labels": "medium"}, "pretrain_labels"), ({"label_smoothing": 1.0},
                       "label_smoothing"), ({"logit_scale": 0.0}, "logit_scale")):
        with pytest.raises(ValueError, match=match):
            build(tmp_path / "z", replace(TINY, **bad))
    assert not (tmp_path / "z").exists()


def test_fine_labels_pretrain_a_different_base():
    coarse = pretrain(replace(TINY, pretrain_labels="coarse"))
    fine = pretrain(TINY)
    assert coarse.keys() == fine.keys() and any(not torch.equal(coarse[k], fine[k]) for k in coarse)


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread; the count is restored for the tests after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_probe_on_a_tiny_zoo_measures_consistent_figures(tmp_path, one_thread):
    entry = p.probe(TINY, tmp_path / "zoo", name="tiny", adamerging_steps=2)
    m = entry["mean"]
    assert entry["changes"]["pretrain_labels"] == "fine" and entry["seed"] == 0
    assert m["ties_gain"] == pytest.approx(m["ties"] - m["task_arithmetic"])
    assert m["adamerging_gain"] == pytest.approx(m["adamerging_layer"] - m["task_arithmetic"])
    for task in TINY.tasks:
        for figure in ("base", "experts", "linear_probe", "task_arithmetic", "ties", "adamerging_layer"):
            value = entry["per_task"][figure][task]
            assert 0 <= value <= 100 and (value * SMALL["test"] / 100) == pytest.approx(
                round(value * SMALL["test"] / 100), abs=0.06)  # a count of the 24 test images
    assert m["base"] == pytest.approx(np.mean(list(entry["per_task"]["base"].values())), abs=0.06)
    assert 0 <= m["auroc"] <= 1 or np.isnan(m["auroc"])
    assert -1 <= m["premise_r"] <= 1 or np.isnan(m["premise_r"])
    assert entry["chosen"]["task_arithmetic"] in [round(0.1 * i, 1) for i in range(1, 11)]


def _entry(name: str, seed: int, ta: float) -> dict:
    mean = {k: 50.0 for k in p.FIGURES} | {"task_arithmetic": ta}
    return {"name": name, "seed": seed, "build_minutes": 2.0, "mean": mean}


def test_records_replace_the_same_seed_and_summarise_mean_and_spread(tmp_path):
    path = tmp_path / "probes.json"
    assert p.load_records(path) == []
    p.record(_entry("a", 0, 60.0), path)
    p.record(_entry("a", 1, 64.0), path)
    p.record(_entry("a", 1, 66.0), path)  # a re-run replaces seed 1
    p.record(_entry("b", 0, 70.0), path)
    rows = p.summarise(p.load_records(path))
    assert [r["name"] for r in rows] == ["a", "b"] and rows[0]["seeds"] == [0, 1]
    assert rows[0]["mean"]["task_arithmetic"] == 63.0 and rows[0]["spread"]["task_arithmetic"] == 6.0
    text = p.table(p.load_records(path))
    assert "| a | 0, 1 | 2.0 |" in text and "63.0 ±3.0" in text and "| b | 0 | 2.0 |" in text
    assert "## Recipes probed" in probe_section(p.load_records(path)) and probe_section([]) == ""
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        p.load_records(path)


def test_probe_command_reads_a_built_zoo_and_records_nothing_unasked(tmp_path, capsys, monkeypatch, one_thread):
    build(tmp_path / "zoo", TINY)
    store = tmp_path / "probes.json"
    monkeypatch.setattr(p, "RECORDS", store)
    assert cli_main(["zoo", "probe", "--root", str(tmp_path / "zoo"), "--threads", "1", "--name", "built",
                     "--adamerging-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "| built | 0 |" in out and not store.exists()
    assert cli_main(["zoo", "probe", "--root", str(tmp_path / "zoo"), "--threads", "1", "--name", "built",
                     "--adamerging-steps", "2", "--record"]) == 0
    assert [r["name"] for r in json.loads(store.read_text())] == ["built"]
