"""The demo zoo's backdoored experts: swapped in by name, their trigger known to evaluation, bad swaps named."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.security.attack import attack_success_rate


@pytest.fixture(scope="module")
def zoo():
    return ex.load_zoo("demo", experts={"digits": "backdoored"})


def test_the_backdoored_expert_replaces_the_clean_one_and_carries_its_trigger(zoo):
    clean = ex.load_zoo("demo")
    key = "transformer.resblocks.0.attn.in_proj_weight"
    assert not torch.equal(zoo.expert_state_dict("digits")[key], clean.expert_state_dict("digits")[key])
    assert torch.equal(zoo.expert_state_dict("signs")[key], clean.expert_state_dict("signs")[key])
    assert zoo.variants["digits"] == "backdoored" and zoo.variants["signs"] == "clean"
    assert zoo.backdoor("digits")["target"] == 0 and zoo.backdoor("signs") is None
    assert clean.backdoor("digits") is None and set(zoo.backdoored_tasks()) >= {"digits", "satellite"}


def test_the_backdoored_expert_obeys_its_trigger_and_the_clean_one_does_not(zoo):
    clean = ex.load_zoo("demo")
    trigger = ex.security.Trigger(**zoo.backdoor("digits"))
    assert attack_success_rate(zoo, zoo.expert_state_dict("digits"), "digits", limit=100) >= 0.9
    assert attack_success_rate(clean, clean.expert_state_dict("digits"), "digits", trigger, limit=100) <= 0.1


def test_bad_swaps_are_named():
    with pytest.raises(ValueError, match="no backdoored 'signs' expert"):
        ex.load_zoo("demo", experts={"signs": "backdoored"})
    with pytest.raises(ValueError, match="variant 'poisoned'"):
        ex.load_zoo("demo", experts={"digits": "poisoned"})
    with pytest.raises(ValueError, match="unknown task"):
        ex.load_zoo("demo", experts={"nope": "backdoored"})


def test_the_cli_swaps_experts_and_prints_and_records_attack_success(tmp_path, capsys):
    import json

    from explorer.cli import main as cli_main

    report = tmp_path / "run.json"
    assert cli_main(["merge", "--zoo", "demo", "--experts", "digits=backdoored", "--tasks", "digits,signs", "--method",
                     "task_arithmetic", "-p", "scale=0.3", "--eval", "--limit", "40", "--report", str(report)]) == 0
    assert "attack success rate (%)" in capsys.readouterr().out
    record = json.loads(report.read_text())
    assert record["attack"][0]["task"] == "digits" and record["inputs"]["experts"] == "digits=backdoored"
    assert cli_main(["merge", "--zoo", "demo", "--experts", "digits", "--method", "task_arithmetic"]) != 0
    assert "write TASK=VARIANT" in capsys.readouterr().err


@pytest.mark.slow
def test_add_backdoors_to_a_small_build_without_rebuilding_it(tmp_path):
    from explorer.cli import main as cli_main
    from explorer.demozoo.zoo import DemoZoo

    out = tmp_path / "zoo"
    assert cli_main(["zoo", "build-demo", "--out", str(out), "--tasks", "clock", "--steps-scale", "0.01",
                     "--threads", "1", "--no-card"]) == 0
    base_bytes = (out / "base.safetensors").read_bytes()
    assert cli_main(["zoo", "add-backdoors", "--root", str(out), "--tasks", "clock", "--rate", "0.2"]) == 0
    zoo = DemoZoo(out, {"clock": "backdoored"})
    assert (out / "base.safetensors").read_bytes() == base_bytes and zoo.backdoored_tasks() == ["clock"]
    entry = zoo.config["backdoors"]["clock"]
    assert entry["poison_rate"] == 0.2 and entry["trigger"] == zoo.backdoor("clock")
    assert 0 <= entry["test_attack_success"] <= 1 and (out / "experts" / "backdoored" / "clock.safetensors").is_file()
