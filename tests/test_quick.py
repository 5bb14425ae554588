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
