"""`explorer report`: a saved run's record -> one offline HTML page; bad records and zoos give one error line."""
from __future__ import annotations

import html
import json
import re
import shlex

import pytest

from explorer.cli import main
from tests.conftest import write_zoo_folder


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`explorer merge --zoo demo --method ties -p density=0.2 --eval --out m.safetensors` (first 32 images)."""
    out = tmp_path_factory.mktemp("run") / "m.safetensors"
    assert main(["merge", "--zoo", "demo", "--method", "ties", "-p", "density=0.2", "--eval", "--limit", "32",
                 "--device", "cpu", "--out", str(out)]) == 0
    return out.with_suffix(".json")


def test_round_trip_on_the_demo_zoo(demo_run, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(demo_run), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    page = out.read_text()
    assert page.count('class="plotly-graph-div"') == 13 and page.count("* plotly.js v") == 1
    assert not re.search(r"<script[^>]*\bsrc=", page)
    record = json.loads(demo_run.read_text())
    assert record["evaluation"] == {"split": "test", "limit": 32}
    assert "Accuracy per task (%)" in page and all(f"<td>{r['task']}</td>" in page for r in record["scores"])
    assert f"<td>{100 * record['scores'][0]['merged']:.1f}</td>" in page
    assert "explorer merge --zoo demo --method ties -p density=0.2" in page and "--eval --limit 32" in page
    assert "explorer report merged.json -o report.html" in page


def test_a_run_without_scores_says_why(tmp_path, capsys):
    folder, _, _ = write_zoo_folder(tmp_path)
    weights = tmp_path / "avg.safetensors"
    assert main(["merge", "--zoo", str(folder), "--method", "task_arithmetic", "--device", "cpu",
                 "--out", str(weights)]) == 0
    out = tmp_path / "r.html"
    assert main(["report", str(weights.with_suffix(".json")), "-o", str(out)]) == 0
    page = out.read_text()
    assert "No accuracy table: the run was not evaluated" in page and "Accuracy per task" not in page
    assert page.count('class="plotly-graph-div"') == 10  # no accuracy and (task arithmetic) no mask figures
    assert "--eval" not in page.split("id='reproduce'")[1]


def one_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("explorer report: error: ")
    return err


def test_bad_inputs_give_one_line(tmp_path, capsys):
    missing = one_error(capsys, ["report", str(tmp_path / "nope.json")])
    assert "does not exist" in missing and "writes beside the weights" in missing
    (tmp_path / "bad.json").write_text("{not json")
    assert "is not a run record" in one_error(capsys, ["report", str(tmp_path / "bad.json")])
    (tmp_path / "w.safetensors").write_bytes(b"\xff\xfe\x00binary")
    assert "cannot be read" in one_error(capsys, ["report", str(tmp_path / "w.safetensors")])
    record = {"method": "ties", "params": {}, "tasks": ["a", "b"], "zoo": str(tmp_path / "gone")}
    (tmp_path / "gone.json").write_text(json.dumps(record))
    gone = one_error(capsys, ["report", str(tmp_path / "gone.json")])
    assert "cannot be opened" in gone and "--zoo" in gone
    (tmp_path / "nozoo.json").write_text(json.dumps({**record, "zoo": None}))
    assert "names no zoo" in one_error(capsys, ["report", str(tmp_path / "nozoo.json")])
    learned = {**record, "method": "adamerging", "zoo": "demo", "tasks": ["digits", "signs"],
               "weights": {"x.safetensors": "0"}}
    (tmp_path / "learned.json").write_text(json.dumps(learned))
    lost = one_error(capsys, ["report", str(tmp_path / "learned.json")])
    assert "x.safetensors" in lost and "are missing; pass them with --weights" in lost


def test_the_reproduce_command_gives_the_same_run(demo_run, tmp_path):
    out = tmp_path / "r.html"
    assert main(["report", str(demo_run), "-o", str(out)]) == 0
    merge = html.unescape(out.read_text().split("<pre id='reproduce'>")[1].split("</pre>")[0]).splitlines()[0]
    argv = shlex.split(merge)
    argv[argv.index("--out") + 1] = str(tmp_path / "again.safetensors")
    assert argv[:2] == ["explorer", "merge"] and main([*argv[1:], "--device", "cpu"]) == 0
    first, again = json.loads(demo_run.read_text()), json.loads((tmp_path / "again.json").read_text())
    assert again["params"] == first["params"] and again["tasks"] == first["tasks"]
    assert again["scores"] == first["scores"] and again["evaluation"] == first["evaluation"]
