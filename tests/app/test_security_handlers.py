"""The Security tab's handlers: the backdoored zoo flags its experts, the accuracy table carries attack success,
the backdoor view returns both merges' numbers, the MergeLock view its table and three figures."""
from __future__ import annotations

from explorer.app import cache, handlers
from explorer.app import security_handlers as security
from tests.security.test_attack import TriggeredTinyZoo
from tests.tinyzoo import TinyZoo, one_thread  # noqa: F401  (autouse fixture)


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


def test_backdoor_view_covers_both_merges_and_the_backdoored_task():
    cache.register_zoo("tiny-triggered", TriggeredTinyZoo(predicts=0))
    table, figure = security.backdoor_view("tiny-triggered")
    assert table["merge"].tolist() == list(security.MERGES) and (table["attack_success"] == 100.0).all()
    assert len(figure.data) == 3


def test_mergelock_view_protected_and_unlocked():
    cache.register_zoo("tiny-lock", TinyZoo(noise=0.05))
    table, bars, cosine, norms = security.mergelock_view("task0", protect=True, unlock="kabsch", scales=[0.3],
                                                         zoo_name="tiny-lock")
    assert table["expert"].tolist() == ["clean", "protected", "unlocked (kabsch)"]
    assert table["expert_alone"].nunique() == 1 and "task0 protected" in cosine.layout.title.text
    assert len(norms.data) == 3 and len(bars.data) == 3
    clean = security.mergelock_view("task0", protect=False, unlock="none", scales=[0.3], zoo_name="tiny-lock")
    assert clean[0]["expert"].tolist() == ["clean"] and "task0 clean" in clean[2].layout.title.text
