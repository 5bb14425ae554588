"""The sweep engines give the same table on the demo zoo: this process, a local process pool, a local Ray instance
(one per module, started once: Ray's start-up costs seconds), and the `explorer sweep` command."""
from __future__ import annotations

import os
import sys

import pandas as pd
import pytest

import explorer as ex
from explorer import engines
from explorer.cli import main

TASKS = ["digits", "textures"]
GRID = {"density": [0.2, 0.5], "scale": [0.5, 1.0]}
LIMIT = 8


@pytest.fixture(scope="module")
def demo():
    """(task vectors of two demo tasks, the serial sweep every engine must reproduce)."""
    zoo = ex.load_zoo("demo")
    tv = ex.task_vectors(zoo, tasks=TASKS, device="cpu")
    return tv, ex.sweep(tv, "ties", GRID, limit=LIMIT, engine="serial", device="cpu")


@pytest.fixture
def demo_loaded(demo, monkeypatch):
    """`--zoo demo` opens the module's demo zoo, whose images are already made."""
    zoo = demo[0].zoo
    monkeypatch.setattr(ex, "load_zoo", lambda name: zoo)


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'model-merging-explorer[cluster]'")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token notice on a local test instance
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")  # a loaded CI machine starts Ray slowly
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_serial_table_has_every_point_and_task(demo):
    _, serial = demo
    assert len(serial.table) == 4 * len(TASKS) and serial.table.task.tolist() == TASKS * 4
    assert serial.summary()[["density", "scale"]].values.tolist() == [[0.2, 0.5], [0.2, 1.0], [0.5, 0.5], [0.5, 1.0]]


def test_local_processes_give_the_serial_table(demo):
    tv, serial = demo
    local = ex.sweep(tv, "ties", GRID, limit=LIMIT, engine="local", workers=2, device="cpu")
    pd.testing.assert_frame_equal(local.table, serial.table)
    assert local.best() == serial.best() and local.engine == "local"


def test_ray_tasks_give_the_serial_table(demo, ray_instance):
    tv, serial = demo
    on_ray = ex.sweep(tv, "ties", GRID, limit=LIMIT, engine="ray", device="cpu")
    pd.testing.assert_frame_equal(on_ray.table, serial.table)
    assert ray_instance.is_initialized()  # a running instance is joined, not stopped


def test_cli_writes_the_table_the_best_point_and_the_figure(demo, demo_loaded, tmp_path, capsys):
    _, serial = demo
    argv = ["sweep", "--zoo", "demo", "--method", "ties", "-p", "density=0.2:0.5:0.3", "-p", "scale=0.5,1.0",
            "--tasks", ",".join(TASKS), "--limit", str(LIMIT), "--engine", "serial", "--device", "cpu",
            "--out", str(tmp_path / "sweep.csv"), "--html", str(tmp_path / "sweep.html")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    best = serial.best()
    assert f"best (mean normalized accuracy): density={best['density']} scale={best['scale']}" in out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "sweep.csv"), serial.table, check_dtype=False)
    assert "plotly" in (tmp_path / "sweep.html").read_text()


def test_cli_rejects_bad_ranges_before_reading_the_zoo(capsys):
    assert main(["sweep", "--zoo", "no-such-zoo", "--method", "ties", "-p", "density=0.5:2:0.5"]) == 2
    assert "'density': 1.5 is out of range; allowed [0.0, 1.0]" in capsys.readouterr().err


def test_engine_arguments_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="only applies to engine='ray'"):
        engines.run(max, 0, [1], "local", address="auto")
    with pytest.raises(ValueError, match="positive number of processes"):
        engines.run(max, 0, [1], "local", workers=0)
    assert engines.run(max, 2, [1, 3], "local", workers=1) == [2, 3]  # a pool of one runs here
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(RuntimeError, match=r"needs Ray, which is not installed: pip install"):
        engines.run(max, 0, [1], "ray")
