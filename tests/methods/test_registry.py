"""The registry: declarations, validation, and every registered method on a tiny random zoo."""
from __future__ import annotations

import dataclasses
import time

import pytest
import torch

import explorer as ex
from explorer.methods import registry
from explorer.methods.registry import Param, register

DATA_FREE = [m["name"] for m in ex.list_methods() if not m["needs_data"]]


def test_the_ten_data_free_methods_are_registered():
    assert {"average", "task_arithmetic", "ties", "dare", "magnitude", "breadcrumbs", "tall_masks",
            "consensus", "lines", "emr"} <= set(DATA_FREE)


def test_every_method_documents_paper_formula_and_params():
    for m in registry.all_methods():
        assert m.paper and m.formula and m.summary, m.name
        assert any(ch.isdigit() for ch in m.paper), f"{m.name}: the paper reference should name its year"
        for p in m.params:
            assert p.help, f"{m.name}.{p.name} has no help"


@pytest.mark.parametrize("name", DATA_FREE)
def test_every_method_runs_finite_and_deterministic(tiny_tv, name):
    first = ex.merge(tiny_tv, name)
    second = ex.merge(tiny_tv, name)
    assert first.method == name and first.params == registry.get(name).defaults()
    for task in tiny_tv.tasks:
        delta = first.task_delta(task)
        assert set(delta) == set(tiny_tv.keys())
        for key, value in delta.items():
            assert value.shape == tiny_tv[key].shape[1:]
            assert torch.isfinite(value).all()
            assert torch.equal(value, second.task_delta(task)[key])
    if first.masks is not None:
        assert set(first.masks) == set(tiny_tv.tasks)
        for task_masks in first.masks.values():
            assert all(m.dtype == torch.bool for m in task_masks.values())


def test_merge_times_the_methods_own_work(tiny_tv, monkeypatch):
    average = registry.get("average")
    slow = dataclasses.replace(average, fn=lambda tv: (time.sleep(0.05), average.fn(tv))[1])
    monkeypatch.setitem(registry._REGISTRY._entries, "average", slow)
    assert 0.05 <= ex.merge(tiny_tv, "average").info["seconds"] < 5


@pytest.mark.parametrize("kwargs,fragment", [
    ({"density": 1.5}, "'density': 1.5 is out of range; allowed [0.0, 1.0]"),
    ({"density": "a lot"}, "'density': 'a lot' is not a number"),
    ({"sign": "votes"}, "'sign': 'votes' is not allowed; allowed {mass, count}"),
    ({"lambda": 0.3}, "has no parameter 'lambda'"),
])
def test_bad_parameters_name_the_parameter_value_and_range(tiny_tv, kwargs, fragment):
    with pytest.raises(ValueError) as err:
        ex.merge(tiny_tv, "ties", **kwargs)
    assert fragment in str(err.value)


def test_unknown_method_lists_the_known_ones(tiny_tv):
    with pytest.raises(ValueError, match="unknown method 'tie'.*ties"):
        ex.merge(tiny_tv, "tie")


def test_integer_parameter_rejects_fractions_and_parses_cli_text():
    k = registry.get("consensus").param("k")
    assert k.parse("3") == 3
    with pytest.raises(ValueError, match="not an integer"):
        k.validate(2.5)
    with pytest.raises(ValueError, match="'k': 'two' is not a valid int"):
        k.parse("two")


def test_register_checks_the_declaration_against_the_signature():
    with pytest.raises(TypeError, match="do not match"):
        @register("mismatched", Param("alpha", float, 0.5, "a", low=0, high=1), title="x", paper="x 2024",
                  formula="x", summary="x")
        def mismatched(tv, *, beta):  # pragma: no cover - never called
            return None
    assert "mismatched" not in [m.name for m in registry.all_methods()]


def test_a_default_outside_its_range_is_refused_at_declaration():
    with pytest.raises(ValueError, match="out of range"):
        Param("p", float, 2.0, "help", low=0.0, high=1.0)
