"""The CLI: `explorer methods` and an `explorer merge` round trip on a folder of safetensors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import explorer as ex
from explorer.cli import main
from explorer.weights import read_weights
from tests.conftest import write_zoo_folder


@pytest.fixture
def zoo_folder(tmp_path):
    return write_zoo_folder(tmp_path)


def test_methods_lists_every_method_with_ranges_and_defaults(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for m in ex.list_methods():
        assert f"{m['name']}  -  " in out
    assert "density     float default 0.2" in out and "range [0.0, 1.0]" in out


def test_merge_round_trip_equals_in_memory_result(zoo_folder, tmp_path, capsys):
    folder, base, experts = zoo_folder
    out = tmp_path / "merged.safetensors"
    code = main(["merge", "--zoo", str(folder), "--method", "ties", "-p", "density=0.3", "-p", "scale=0.8",
                 "--device", "cpu", "--out", str(out)])
    assert code == 0
    reloaded = read_weights(out)
    expected = ex.merge(ex.task_vectors(base, experts, device="cpu"), "ties", density=0.3, scale=0.8).state_dict()
    assert set(reloaded) == set(expected)
    for name in expected:
        assert torch.equal(reloaded[name], expected[name])
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["method"] == "ties" and record["params"]["density"] == 0.3
    assert set(record["inputs"]) == {"base.safetensors", "task0.safetensors", "task1.safetensors",
                                     "task2.safetensors"}
    assert record["versions"]["torch"] == torch.__version__.split("+")[0]
    assert record["seconds"] > 0 and record["weights"]["merged.safetensors"]
    assert ex.load_run(out.with_suffix(".json")).params == record["params"]


def test_merge_per_task_method_writes_every_task_model(zoo_folder, tmp_path):
    folder, base, experts = zoo_folder
    out = tmp_path / "emr.safetensors"
    assert main(["merge", "--zoo", str(folder), "--method", "emr", "--device", "cpu", "--out", str(out)]) == 0
    weights = read_weights(out)
    assert {k.split("/")[0] for k in weights} == {"task0", "task1", "task2"}
    assert json.loads(out.with_suffix(".json").read_text())["layout"] == "per_task"


@pytest.mark.parametrize("argv,fragment", [
    (["-p", "density=2"], "'density': 2.0 is out of range"),
    (["-p", "density"], "write parameters as NAME=VALUE"),
    (["-p", "dens=0.1"], "has no parameter 'dens'"),
])
def test_merge_bad_input_gives_one_readable_line(zoo_folder, capsys, argv, fragment):
    folder, _, _ = zoo_folder
    assert main(["merge", "--zoo", str(folder), "--method", "ties", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_merge_missing_base_file_says_what_to_do(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["merge", "--zoo", str(tmp_path / "empty"), "--method", "average"]) == 2
    assert "has no base.safetensors" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path):
    done = subprocess.run([sys.executable, "-m", "explorer", "methods", "--markdown"], capture_output=True,
                          text=True, check=True)
    assert done.stdout.startswith("| method |") and "`ties`" in done.stdout


def test_merge_on_the_demo_zoo_with_eval_prints_the_library_scores(tmp_path, capsys):
    report = tmp_path / "run.json"
    assert main(["merge", "--zoo", "demo", "--method", "task_arithmetic", "-p", "scale=0.3", "--eval",
                 "--limit", "32", "--device", "cpu", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    zoo = ex.load_zoo("demo")
    expected = ex.evaluate(zoo, ex.merge(ex.task_vectors(zoo, device="cpu"), "task_arithmetic", scale=0.3),
                           limit=32, device="cpu").table
    for row in expected.itertuples():
        assert f"{row.task}" in out and f"{100 * row.merged:.2f}" in out  # in %
    record = json.loads(report.read_text())
    assert record["zoo"] == "demo" and len(record["scores"]) == len(zoo.tasks)
    assert record["inputs"]["zoo_fingerprint"] == zoo.fingerprint()


def test_eval_on_a_folder_zoo_explains_what_is_missing(zoo_folder, capsys):
    folder, _, _ = zoo_folder
    assert main(["merge", "--zoo", str(folder), "--method", "average", "--eval", "--device", "cpu"]) == 2
    assert "--eval needs a zoo with heads and data" in capsys.readouterr().err
