"""Quick mode caps the work of iterative methods and the demo zoo's splits only when EXPLORER_QUICK=1, and says so."""
from __future__ import annotations

import explorer as ex
from explorer import quick
from explorer.demozoo.zoo import DemoZoo


def test_off_by_default_leaves_every_value(monkeypatch):
    monkeypatch.delenv(quick.ENV, raising=False)
    values = {"steps": 300, "epochs": 20, "scale": 0.3}
    assert not quick.enabled() and quick.cap_work(values) == values and quick.cap_images(500) == 500


def test_on_caps_work_parameters_and_keeps_the_others(monkeypatch):
    monkeypatch.setenv(quick.ENV, "1")
    capped = quick.cap_work({"steps": 300, "adamerging_steps": 3, "epochs": 20, "examples": 256, "scale": 0.3,
                             "granularity": "layer"})
    assert capped == {"steps": 5, "adamerging_steps": 3, "epochs": 1, "examples": 32, "scale": 0.3,
                      "granularity": "layer"}
    assert quick.cap_images(500) == quick.IMAGES and quick.cap_images(10) == 10


def test_a_quick_merge_runs_the_capped_steps_and_is_marked(monkeypatch, tv, zoo):
    monkeypatch.setenv(quick.ENV, "1")
    res = ex.merge(tv, "wudi", steps=300)
    assert res.params["steps"] == quick.WORK["steps"] and res.info["quick"] is True
    monkeypatch.delenv(quick.ENV)
    assert "quick" not in ex.merge(tv, "wudi", steps=3).info


def test_the_demo_zoo_serves_short_splits_in_quick_mode_and_full_ones_after(monkeypatch):
    zoo = DemoZoo()
    monkeypatch.setenv(quick.ENV, "1")
    assert len(zoo.dataset("digits", "test")) == quick.IMAGES
    monkeypatch.delenv(quick.ENV)
    assert len(zoo.dataset("digits", "test")) == zoo.config["split_sizes"]["test"]


def test_thin_keeps_first_middle_and_last_only_in_quick_mode(monkeypatch):
    monkeypatch.delenv(quick.ENV, raising=False)
    assert quick.thin(range(10)) == list(range(10))
    monkeypatch.setenv(quick.ENV, "1")
    assert quick.thin(range(10)) == [0, 5, 9] and quick.thin([0.3, 0.1]) == [0.3, 0.1] and quick.thin([]) == []


def test_a_quick_sweep_runs_three_points_per_parameter(monkeypatch, tv, zoo):
    monkeypatch.setenv(quick.ENV, "1")
    done = ex.sweep(tv, "ties", {"scale": [0.1, 0.2, 0.3, 0.4, 0.5], "aggregate": ["mean", "sum"]}, zoo=zoo)
    assert done.summary()[["scale", "aggregate"]].values.tolist() == [[0.1, "mean"], [0.1, "sum"], [0.3, "mean"],
                                                                      [0.3, "sum"], [0.5, "mean"], [0.5, "sum"]]
