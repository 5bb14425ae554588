"""`explorer space`: a Hugging Face Space folder (front matter, app.py, pinned requirements, the package, the zoo);
refusals are one line. The Space itself is served from a fresh venv in tests/e2e/test_space.py."""
from __future__ import annotations

import importlib.metadata as md
import json
import re
import sys
from pathlib import Path

import gradio as gr
import pytest
import tomllib

import explorer as ex
from explorer import space
from explorer.app import serve
from explorer.cli import main
from tests.conftest import write_zoo_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_space(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("space") / "my-space"
    assert main(["space", str(out)]) == 0
    return out


def front_matter(readme: Path) -> dict[str, str]:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    block = text.split("---\n")[1]
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in block.splitlines())}


def test_front_matter_names_the_installed_gradio_and_the_running_python(demo_space):
    meta = front_matter(demo_space / "README.md")
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gr.__version__ == md.version("gradio")
    assert meta["python_version"] == f'"{sys.version_info.major}.{sys.version_info.minor}"'
    assert meta["app_file"] == "app.py" and meta["pinned"] == "false"
    assert meta["title"] and meta["emoji"] and meta["colorFrom"] and meta["colorTo"]
    assert "# Model Merging Explorer" in (demo_space / "README.md").read_text(encoding="utf-8")


def test_requirements_pin_every_runtime_dependency_to_the_installed_version(demo_space):
    lines = (demo_space / "requirements.txt").read_text().splitlines()
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[0-9][^\s]*", line) for line in lines), lines
    pinned = {name.lower().replace("_", "-"): version for name, _, version in (line.partition("==") for line in lines)}
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [re.match(r"[A-Za-z0-9._-]+", r).group(0).lower().replace("_", "-") for r in wanted]
    assert sorted(pinned) == sorted(names)
    assert all(pinned[n] == md.version(n) for n in names)
    assert "pytest" not in pinned and "jupyterlab" not in pinned  # no test or notebook extras


def test_the_package_and_demo_zoo_are_copied_and_app_py_serves_them(demo_space):
    source = {p.relative_to(ROOT / "explorer") for p in (ROOT / "explorer").rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    copied = {p.relative_to(demo_space / "explorer") for p in (demo_space / "explorer").rglob("*") if p.is_file()}
    assert copied == source and not list(demo_space.rglob("__pycache__"))
    assert Path("demozoo/weights/base.safetensors") in copied
    app = (demo_space / "app.py").read_text()
    assert 'ZOO = "demo"' in app and "from explorer.app.serve import main" in app
    compile(app, "app.py", "exec")


def test_the_dashboard_listens_where_spaces_say(monkeypatch):
    assert (serve.parse_args([]).host, serve.parse_args([]).port) == ("127.0.0.1", 7860)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    args = serve.parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 7861)
    assert serve.parse_args(["--host", "127.0.0.1", "--port", "9000"]).port == 9000  # flags still win


def test_a_non_empty_folder_is_refused_in_one_line_unless_forced(tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["space", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("explorer space: error: ") and "--force" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert main(["space", str(out), "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "app.py").is_file()


def test_a_folder_zoo_is_copied_and_opened(tmp_path):
    folder, _, _ = write_zoo_folder(tmp_path)
    out = space.build_space(tmp_path / "sp", zoo=str(folder))
    assert sorted(p.name for p in (out / "zoo").iterdir()) == sorted(p.name for p in folder.iterdir())
    assert 'ZOO = str(HERE / "zoo")' in (out / "app.py").read_text()
    assert ex.load_zoo(str(out / "zoo")).tasks == ex.load_zoo(str(folder)).tasks


def test_a_zoo_file_comes_with_the_files_it_names(tmp_path):
    folder, _, _ = write_zoo_folder(tmp_path)
    (folder / "unrelated.bin").write_bytes(b"x")
    spec = {"base": "base.safetensors", "experts": {t: f"{t}.safetensors" for t in ("task0", "task1")}}
    (folder / "mine.json").write_text(json.dumps(spec))
    out = space.build_space(tmp_path / "sp", zoo=str(folder / "mine.json"))
    assert sorted(p.name for p in (out / "zoo").iterdir()) == ["base.safetensors", "mine.json", "task0.safetensors",
                                                              "task1.safetensors"]
    assert 'ZOO = str(HERE / "zoo/mine.json")' in (out / "app.py").read_text()
    assert ex.load_zoo(str(out / "zoo" / "mine.json")).tasks == ["task0", "task1"]


def test_a_zoo_file_pointing_outside_its_folder_is_refused_in_one_line(tmp_path, capsys):
    folder, _, _ = write_zoo_folder(tmp_path)
    inner = tmp_path / "files"
    inner.mkdir()
    (inner / "zoo.json").write_text(json.dumps({"base": "../zoo/base.safetensors", "experts": str(folder)}))
    out = tmp_path / "sp"
    assert main(["space", str(out), "--zoo", str(inner / "zoo.json")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "points outside its folder (base: '../zoo/base.safetensors')" in err
    assert not out.exists()  # refused before anything was written
    assert main(["space", str(out), "--zoo", str(tmp_path / "nothing-here")]) == 2
    assert "no such folder or zoo file" in capsys.readouterr().err and not out.exists()


def test_an_installed_package_reads_its_dependencies_from_its_metadata(monkeypatch, tmp_path):
    wanted = space.dependencies()
    monkeypatch.setattr(space, "PKG", tmp_path / "site-packages" / "explorer")  # no pyproject.toml beside it
    assert space.dependencies() == wanted
    assert space.requirement_name('numpy>=1.24; python_version >= "3.10"') == "numpy"


def test_a_space_inside_the_package_it_copies_is_refused(capsys):
    assert main(["space", str(ROOT / "explorer" / "my-space")]) == 2
    assert "inside the explorer package" in capsys.readouterr().err
    assert not (ROOT / "explorer" / "my-space").exists()
