"""The Security tab's handlers: the backdoored zoo flags its experts, the accuracy table carries attack success,
the backdoor view returns both merges' numbers, the MergeLock view its table and three figures."""
from __future__ import annotations

import explorer as ex
from explorer.app import handlers, security


def test_the_backdoored_zoo_flags_its_experts_in_the_picker():
    assert security.expert_label("demo-backdoored", "digits") == "digits ⚠ backdoored"
    assert security.expert_label("demo-backdoored", "signs") == "signs"
    assert security.expert_label("demo", "digits") == "digits"


def test_a_run_on_the_backdoored_zoo_shows_attack_success_beside_accuracy():
    state, view = handlers.run(handlers.new_state(), "demo-backdoored", ["digits", "signs"], "task_arithmetic",
                               {"scale": 0.3})
    table = view.table.set_index("task")
    assert table.loc["signs", "attack merged"] == "—" and float(table.loc["digits", "attack expert"]) >= 90
    assert state["runs"][0]["scores"][0]["attack merged"] is not None


def test_backdoor_view_covers_both_merges_and_every_backdoored_task():
    table, figure = security.backdoor_view()
    zoo = ex.load_zoo("demo")
    assert len(table) == len(security.MERGES) * len(zoo.backdoored_tasks())
    assert table["attack_success"].between(0, 100).all() and len(figure.data) == 3


def test_mergelock_view_without_protection_is_the_clean_merge_alone():
    table, bars, cosine, norms = security.mergelock_view("clock", protect=False, unlock="none", scales=[0.3])
    assert table["expert"].tolist() == ["clean"] and "clean" in cosine.layout.title.text
    assert len(norms.data) == len(ex.load_zoo("demo").tasks)
