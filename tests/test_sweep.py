"""Sweeps in this process: grids parsed and checked against the methods' declared ranges, tables equal to one
merge + evaluate per point, the best point, the saved table and the figure. Engines: tests/test_engines.py."""
from __future__ import annotations

import json

import pandas as pd
import pytest

import explorer as ex
from explorer import plots
from explorer.methods import registry
from explorer.sweep import grid_points, parse_grid, parse_values


def density(text: str) -> list:
    return parse_values(registry.get("ties").param("density"), text)


def test_ranges_include_stop_and_lists_are_checked():
    assert density("0.1:0.5:0.1") == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert density("0.1:0.45:0.1") == [0.1, 0.2, 0.3, 0.4]
    assert density("0.2") == [0.2] and density("0.3,0.6,1") == [0.3, 0.6, 1.0]
    assert parse_values(registry.get("consensus").param("k"), "0:4:2") == [0, 2, 4]
    assert parse_grid("ties", ["scope=global,tensor", "scale=0.5"]) == {"scope": ["global", "tensor"], "scale": [0.5]}


@pytest.mark.parametrize("pairs,fragment", [
    (["density=0.5:1.5:0.5"], "'density': 1.5 is out of range; allowed [0.0, 1.0]"),
    (["density=0.5:0.1:0.1"], "start <= stop and a positive step"),
    (["density=0.1:0.5:0"], "start <= stop and a positive step"),
    (["density=0.1:0.5"], "is not start:stop:step"),
    (["density=a,b"], "'a' is not a valid float"),
    (["scope=global:tensor:1"], "list its values with commas"),
    (["rho=0.1"], "method 'ties' has no parameter 'rho'"),
    (["density"], "write NAME=VALUES"),
    (["density=0.1", "density=0.2"], "given twice"),
])
def test_bad_grids_name_the_problem(pairs, fragment):
    with pytest.raises(ValueError) as err:
        parse_grid("ties", pairs)
    assert fragment in str(err.value)


def test_grid_points_in_order_with_fixed_params_checked():
    points = grid_points("ties", {"density": [0.1, 0.2], "scale": [1, 2]}, {"scope": "tensor"})
    assert points == [{"density": 0.1, "scale": 1.0}, {"density": 0.1, "scale": 2.0},
                      {"density": 0.2, "scale": 1.0}, {"density": 0.2, "scale": 2.0}]
    with pytest.raises(ValueError, match="non-empty list"):
        grid_points("ties", {"scale": []})
    with pytest.raises(ValueError, match="swept and fixed"):
        grid_points("ties", {"scale": [1.0]}, {"scale": 0.5})
    with pytest.raises(ValueError, match="'scope': 'row' is not allowed"):
        grid_points("ties", {"scale": [1.0]}, {"scope": "row"})
    with pytest.raises(ValueError, match="cannot sweep \\['base'\\]"):
        grid_points("lines", {"base": ["ties"]}, reserved=("base",))


@pytest.fixture(scope="module")
def tiny():
    from tests.tinyzoo import TinyZoo

    zoo = TinyZoo.known()
    return zoo, ex.task_vectors(zoo, device="cpu")


@pytest.fixture(scope="module")
def done(tiny):
    zoo, tv = tiny
    return ex.sweep(tv, "ties", {"density": [0.2, 1.0], "scale": [0.0, 1.0]}, engine="serial", device="cpu",
                    aggregate="sum")


def test_table_is_one_merge_and_evaluation_per_point(tiny, done):
    zoo, tv = tiny
    assert list(done.table.columns) == ["density", "scale", "task", "base", "expert", "merged", "normalized"]
    assert len(done.table) == 4 * 2 and done.split == "validation" and done.fixed == {"aggregate": "sum"}
    for (d, s), rows in done.table.groupby(["density", "scale"], sort=False):
        direct = ex.evaluate(zoo, ex.merge(tv, "ties", density=d, scale=s, aggregate="sum"), "validation").table
        pd.testing.assert_frame_equal(rows.drop(columns=["density", "scale"]).reset_index(drop=True), direct)
    zero = done.table[done.table.scale == 0.0]
    assert zero.merged.tolist() == zero.base.tolist()  # scale 0 is theta_0 at every density


def test_summary_and_best_follow_the_mean_over_tasks(done):
    summary = done.summary()
    assert list(summary.columns) == ["density", "scale", "base", "expert", "merged", "normalized"]
    assert summary[["density", "scale"]].values.tolist() == [[0.2, 0.0], [0.2, 1.0], [1.0, 0.0], [1.0, 1.0]]
    means = done.table.groupby(["density", "scale"], sort=False).normalized.mean().tolist()
    assert summary.normalized.tolist() == pytest.approx(means)
    top = summary.normalized.max()
    first = summary[summary.normalized == top].iloc[0]
    assert done.best() == {"density": first.density, "scale": first.scale}
    assert type(done.best()["scale"]) is float
    with pytest.raises(ValueError, match="this sweep scored"):
        done.best("entropy")


def test_save_csv_and_json_round_trip(done, tmp_path):
    csv = pd.read_csv(done.save(tmp_path / "sweep.csv"))
    pd.testing.assert_frame_equal(csv, done.table, check_dtype=False)
    record = json.loads(done.save(tmp_path / "out" / "sweep.json").read_text())
    assert record["method"] == "ties" and record["params"] == ["density", "scale"]
    assert record["best"] == done.best() and record["engine"] == "serial" and len(record["table"]) == 8
    with pytest.raises(ValueError, match=".csv or .json"):
        done.save(tmp_path / "sweep.txt")


def test_figure_draws_one_line_per_setting_and_stars_the_best(done):
    fig = plots.sweep_grid(done.summary(), done.params, done.best())
    lines = [t for t in fig.data if t.name != "best"]
    assert [t.name for t in lines] == ["scale=0.0", "scale=1.0"]
    assert list(lines[1].x) == [0.2, 1.0]
    assert list(lines[1].y) == pytest.approx(100 * done.summary().normalized[done.summary().scale == 1.0])
    star = [t for t in fig.data if t.name == "best"][0]
    assert star.y[0] == pytest.approx(100 * done.summary().normalized.max())


def test_a_sweep_needs_an_evaluable_zoo(tiny):
    zoo, tv = tiny
    bare = ex.task_vectors(zoo.base_state_dict(), {t: zoo.expert_state_dict(t) for t in zoo.tasks}, device="cpu")
    with pytest.raises(ValueError, match="needs a zoo"):
        ex.sweep(bare, "ties", {"scale": [1.0]}, engine="serial")
    with pytest.raises(ValueError, match="unknown engine 'spark'"):
        ex.sweep(tv, "ties", {"scale": [1.0]}, engine="spark")
