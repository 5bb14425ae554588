"""The dashboard's controls come from the method registry: one widget per declared parameter, values back."""
from __future__ import annotations

import pytest

from explorer.app import controls
from explorer.methods import registry
from explorer.methods.registry import Param


def defaults_everywhere() -> list:
    return [c.param.default for c in controls.controls()]


def test_one_control_per_declared_parameter_in_registry_order():
    expected = [(m.name, p.name) for m in registry.all_methods() for p in m.params]
    assert [(c.method, c.param.name) for c in controls.controls()] == expected
    ids = [c.elem_id for c in controls.controls()]
    assert len(set(ids)) == len(ids)
    assert "param-ties-density" in ids


@pytest.mark.parametrize("param, kind", [
    (Param("d", float, 0.2, "h", low=0.0, high=1.0, step=0.01), "slider"),
    (Param("k", int, 2, "h", low=0, high=20, step=1), "slider"),
    (Param("seed", int, 0, "h", low=0, high=2**31 - 1, step=1), "number"),  # 2e9 slider positions: a box
    (Param("x", float, 1.0, "h"), "number"),
    (Param("agg", str, "mean", "h", choices=("mean", "sum")), "dropdown"),
    (Param("pairs", str, "defaults", "h"), "text"),
    (Param("clamp", bool, True, "h"), "checkbox"),
])
def test_widget_kind(param, kind):
    assert controls.widget_kind(param) == kind


def test_defaults_round_trip_to_each_methods_defaults():
    values = defaults_everywhere()
    for m in registry.all_methods():
        assert controls.params_from_values(m.name, values) == m.defaults()


def test_values_of_other_methods_are_ignored_and_own_values_validated():
    every = controls.controls()
    values = defaults_everywhere()
    values[[c.elem_id for c in every].index("param-ties-density")] = 0.35
    values[[c.elem_id for c in every].index("param-task_arithmetic-scale")] = 99.0  # not TIES' business
    params = controls.params_from_values("ties", values)
    assert params["density"] == 0.35 and params["scale"] == 1.0


def test_out_of_range_value_names_parameter_and_range():
    values = defaults_everywhere()
    values[[c.elem_id for c in controls.controls()].index("param-ties-density")] = 5.0
    with pytest.raises(ValueError, match=r"'density'.*5\.0.*\[0\.0, 1\.0\]"):
        controls.params_from_values("ties", values)


def test_integer_widgets_send_floats_and_empty_boxes_are_errors():
    every = controls.controls()
    values = defaults_everywhere()
    k = [c.elem_id for c in every].index("param-consensus-k")
    values[k] = 3.0
    assert controls.params_from_values("consensus", values)["k"] == 3
    values[k] = None
    with pytest.raises(ValueError, match="'k' is empty"):
        controls.params_from_values("consensus", values)
    with pytest.raises(ValueError, match="expected"):
        controls.params_from_values("consensus", values[:-1])


def test_live_only_for_methods_that_read_no_data_and_cards_show_formula_and_paper():
    assert controls.is_live("ties") and controls.is_live("task_arithmetic")
    assert not controls.is_live("adamerging") and not controls.is_live("tall_masks")
    card = controls.method_card("ties")
    m = registry.get("ties")
    assert m.formula in card and m.paper in card
    labels = dict((v, k) for k, v in controls.method_choices())
    assert "press Run" in labels["adamerging"] and labels["ties"] == m.title


def test_enter_in_a_number_box_of_a_run_only_method_keeps_the_value_or_names_the_range():
    every = next(c for c in controls.controls() if c.method == "adamerging" and c.param.name == "log_every")
    assert every.kind == "number"
    assert controls.value_note(every, 7.0) == "log_every = 7 is set: press **Run** to start adamerging."
    with pytest.raises(ValueError, match=r"'log_every': 0 is out of range; allowed \[1, 100000\]"):
        controls.value_note(every, 0)
    with pytest.raises(ValueError, match="'log_every' is empty"):
        controls.value_note(every, None)
