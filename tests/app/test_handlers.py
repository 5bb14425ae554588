"""Handlers merge and evaluate exactly what the library does, keep sessions apart and explain bad input."""
from __future__ import annotations

import threading

import pandas as pd
import pytest
import torch

import explorer as ex
from explorer.app import cache, handlers, views

from .conftest import ZOO

TIES = {"density": 0.3, "scale": 1.0}


def test_run_scores_equal_the_librarys_for_the_same_parameters(zoo):
    state, view = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "ties", TIES, limit=16)
    expected = ex.evaluate(zoo, ex.merge(ex.task_vectors(zoo), "ties", **TIES), limit=16).table
    got = pd.DataFrame(view.record["scores"])
    pd.testing.assert_frame_equal(got, expected)
    # the page's table is the same numbers in % with one decimal
    assert list(view.table.merged) == [f"{100 * v:.1f}" for v in expected.merged]
    assert view.record["mean_normalized"] == pytest.approx(expected.normalized.mean())
    assert view.record["label"] == "#1 ties(density=0.3, scale=1, sign=mass, aggregate=mean, scope=global)"
    assert "first 16 test images" in view.status and state["current"] == view.record["id"]


def test_sessions_are_separate_states_and_inputs_are_not_mutated(zoo):
    alice, bob = handlers.new_state(), handlers.new_state()
    alice2, _ = handlers.run(alice, ZOO, zoo.tasks, "task_arithmetic", {"scale": 0.3}, limit=8)
    bob2, _ = handlers.run(bob, ZOO, zoo.tasks, "ties", TIES, limit=8)
    assert alice == handlers.new_state() and bob == handlers.new_state()
    assert [r["method"] for r in alice2["runs"]] == ["task_arithmetic"]
    assert [r["method"] for r in bob2["runs"]] == ["ties"]
    with pytest.raises(ValueError, match="not in this session"):
        handlers.find(alice2, bob2["current"])


def test_state_holds_only_small_plain_records(zoo):
    state, _ = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "ties", TIES, limit=8)
    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list):
            return all(plain(v) for v in x)
        return x is None or isinstance(x, (str, int, float, bool))
    assert plain(state)
    assert not any(isinstance(v, torch.Tensor) for r in state["runs"] for v in r.values())


@pytest.mark.parametrize("tasks", [None, [], ["task0"]])
def test_fewer_than_two_experts_is_a_readable_error(zoo, tasks):
    with pytest.raises(ValueError, match="at least 2 experts"):
        handlers.run(handlers.new_state(), ZOO, tasks, "ties", TIES)


def test_a_zoo_that_fails_to_load_is_a_readable_error():
    with pytest.raises(ValueError, match=r"could not load zoo 'no-such-zoo'.*demo zoo works offline"):
        handlers.run(handlers.new_state(), "no-such-zoo", ["a", "b"], "ties", TIES)


def test_history_keeps_pinned_runs_and_drops_old_unpinned_ones(zoo, monkeypatch):
    monkeypatch.setattr(handlers, "MAX_UNPINNED", 2)
    state, _ = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "task_arithmetic", {"scale": 0.1}, limit=4)
    from explorer.app.history import toggle_pin
    state = toggle_pin(state, state["current"])
    for scale in (0.2, 0.3, 0.4):
        state, _ = handlers.run(state, ZOO, zoo.tasks, "task_arithmetic", {"scale": scale}, limit=4)
    assert [r["params"]["scale"] for r in state["runs"]] == [0.1, 0.3, 0.4]
    assert [r["pinned"] for r in state["runs"]] == [True, False, False]
    assert [r["n"] for r in state["runs"]] == [1, 3, 4]


def test_full_split_evaluation_updates_the_record(zoo):
    state, _ = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "ties", TIES, limit=8)
    state, view = handlers.evaluate_full(state)
    full = ex.evaluate(zoo, ex.merge(ex.task_vectors(zoo), "ties", **TIES)).table
    assert view.record["limit"] is None and "full test split" in view.status
    assert [r["merged"] for r in view.record["scores"]] == list(full.merged)
    assert len(state["runs"]) == 1


def test_evicted_results_are_merged_again_identically(zoo):
    state, _ = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "dare", {"drop": 0.5, "seed": 3}, limit=4)
    record = handlers.find(state, state["current"])
    first = handlers.result_of(record)
    cache.RESULTS.clear()
    again = handlers.result_of(record)
    assert again is not first
    assert all(torch.equal(first.delta[n], again.delta[n]) for n in first.delta)


def test_results_learned_from_data_are_not_silently_retrained(zoo):
    record = {"id": "x", "label": "#1 adamerging()", "method": "adamerging"}
    with pytest.raises(ValueError, match="learned from data.*run it again"):
        handlers.result_of(record)


def test_figures_of_a_run_and_of_the_zoo(zoo):
    _, ta = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "task_arithmetic", {"scale": 0.3}, limit=4)
    assert ta.figures["overlap"] is None and ta.figures["usage"] is None and "keeps no masks" in ta.mask_note
    _, ties = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "ties", TIES, limit=4)
    assert ties.figures["overlap"] is not None and ties.figures["usage"] is not None
    # the effective coefficient of task arithmetic is its lambda in every layer
    coef = ta.figures["coefficients"].data[0]
    assert list(coef.y) == pytest.approx([0.3] * len(coef.y))
    figures = views.zoo_figures(ZOO, zoo.tasks)
    assert views.zoo_figures(ZOO, zoo.tasks) is figures  # built once, shared
    heat = figures["cosine"].data[0]
    expected = ex.analysis.cosine(ex.task_vectors(zoo)).to_numpy()
    z = pd.DataFrame(list(heat.z)).to_numpy(dtype=float)
    off = ~torch.eye(3, dtype=torch.bool).numpy()
    assert z[off] == pytest.approx(expected[off])


def test_adaptive_runs_report_progress_and_stop_when_cancelled(zoo):
    params = {**ex.merging.registry.get("adamerging").defaults(), "steps": 4, "log_every": 1, "batch": 4}
    reports = []
    _, view = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "adamerging", params, limit=4,
                           callback=reports.append)
    assert [p.step for p in reports][-1] == 4 and not view.record["cancelled"]
    _, stopped = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "adamerging", params, limit=4,
                              cancel=lambda: True)
    assert stopped.record["cancelled"] and "Cancelled" in stopped.status and "Cancelled" not in view.status


def test_a_repeated_event_with_the_current_settings_is_recognised(zoo):
    state, _ = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "ties", TIES, limit=8)
    assert handlers.repeats_current(state, ZOO, zoo.tasks, "ties", TIES)
    assert handlers.repeats_current(state, ZOO, zoo.tasks, "ties", {**TIES, "sign": "mass"})  # the default
    assert not handlers.repeats_current(state, ZOO, zoo.tasks, "ties", {**TIES, "density": 0.4})
    assert not handlers.repeats_current(state, ZOO, zoo.tasks[:2], "ties", TIES)
    assert not handlers.repeats_current(handlers.new_state(), ZOO, zoo.tasks, "ties", TIES)


def test_sessions_with_the_same_settings_share_one_merge(zoo):
    _, first = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "ties", TIES, limit=8)
    _, again = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "ties", dict(TIES), limit=8)
    _, other = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "ties", {**TIES, "density": 0.5}, limit=8)
    assert not first.record["reused"] and again.record["reused"] and not other.record["reused"]
    assert handlers.result_of(again.record) is handlers.result_of(first.record)
    assert again.record["id"] != first.record["id"] and again.record["scores"] == first.record["scores"]
    assert "its merge reused" in again.status and "merge took" in first.status
    assert handlers.result_of(other.record) is not handlers.result_of(first.record)
    _, fewer = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "ties", TIES, limit=4)  # another live subset
    assert not fewer.record["reused"]


def test_the_shared_cache_makes_a_value_once_and_keeps_to_its_budget():
    calls, gate = [], threading.Event()

    def slow() -> str:
        calls.append(1)
        gate.wait(10)
        return "made"
    lru = cache.LRU(8, weigh=len, budget=10)
    waiters = [threading.Thread(target=lambda: lru.get("k", slow)) for _ in range(3)]
    for t in waiters:
        t.start()
    assert lru.get("other", lambda: "x") == "x"  # another key is not held up by the one being made
    gate.set()
    for t in waiters:
        t.join(10)
    assert calls == [1] and lru.get("k") == "made"
    lru.put("big", "123456789")  # 9 + 4 + 1 > 10: the oldest go first
    assert lru.get("other") is None and lru.get("k") is None and lru.get("big") == "123456789"


def test_a_run_draws_only_the_open_tabs_figures_and_a_tab_draws_its_own_when_opened(zoo):
    state, on_masks = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "ties", TIES, limit=8, tab="masks")
    assert tuple(on_masks.figures) == views.SHOWN["masks"] == ("usage", "overlap")
    _, everything = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "ties", TIES, limit=8)
    assert tuple(everything.figures) == views.RUN_FIGURES  # tab None: every figure (exports, notebooks)
    spectra = handlers.tab_figures(state, "spectra")
    assert set(spectra) == {"spectrum", "effective_ranks"} and all(f is not None for f in spectra.values())
    assert handlers.tab_figures(state, "cosine") == {}  # the task vectors' tab: no figure of a run
    with pytest.raises(ValueError, match="unknown tab 'nope'"):
        handlers.run(handlers.new_state(), ZOO, zoo.tasks, "ties", TIES, limit=8, tab="nope")
