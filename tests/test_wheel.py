"""A built wheel is a working tool outside the repository: installed into a fresh folder, its `explorer` merges
the packaged demo zoo and serves the dashboard, from a directory that holds no checkout."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv", "notebooks", "tests", "bench", "docs", "assets", "build", "dist",
                              "*.egg-info", "__pycache__", ".pytest_cache")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The wheel built from a copy of the source and installed with --target; the env and folder to run it in."""
    tmp = tmp_path_factory.mktemp("wheel")
    source, target, elsewhere = tmp / "src", tmp / "target", tmp / "elsewhere"
    shutil.copytree(ROOT, source, ignore=SKIP)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp), str(source)],
                           capture_output=True, text=True)
    if built.returncode != 0 and "No module named" in built.stderr:
        pytest.skip(f"cannot build a wheel offline here: {built.stderr.strip()[-200:]}")
    assert built.returncode == 0, built.stderr
    wheel = next(tmp.glob("model_merging_explorer-*.whl"))
    done = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "NO_PROXY": "localhost,127.0.0.1", "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    return {"explorer": str(target / "bin" / "explorer"), "env": env, "cwd": elsewhere, "target": target}


def test_the_wheel_carries_the_dashboard_and_the_demo_zoo(installed):
    package = installed["target"] / "explorer"
    assert (package / "app" / "ui.py").is_file() and (package / "app" / "serve.py").is_file()
    assert (package / "demozoo" / "weights" / "config.json").is_file()
    assert len(list((package / "demozoo" / "weights" / "experts").glob("*.safetensors"))) == 8
    assert len(list((package / "demozoo" / "weights" / "experts" / "backdoored").glob("*.safetensors"))) == 2


def test_installed_cli_merges_the_demo_zoo_from_outside_the_repository(installed):
    out = installed["cwd"] / "merged.safetensors"
    done = subprocess.run([installed["explorer"], "merge", "--zoo", "demo", "--method", "ties", "-p", "density=0.2",
                           "--tasks", "digits,letters", "--out", str(out)], capture_output=True, text=True,
                          cwd=installed["cwd"], env=installed["env"], timeout=300)
    assert done.returncode == 0, done.stderr
    assert "MergeResult(ties(density=0.2" in done.stdout and out.is_file()
    where = subprocess.run([sys.executable, "-c", "import explorer; print(explorer.__file__)"], capture_output=True,
                           text=True, cwd=installed["cwd"], env=installed["env"])
    assert where.stdout.strip().startswith(str(installed["target"]))  # the wheel's copy, not the checkout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_installed_explorer_app_serves_the_dashboard(installed):
    port = _free_port()
    server = subprocess.Popen([installed["explorer"], "app", "--port", str(port), "--threads", "1"],
                              cwd=installed["cwd"], env=installed["env"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.monotonic() + 120, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    status, page = response.status, response.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        assert status == 200, server.stdout.read() if server.poll() is not None else "no answer in 120 s"
        assert "Model Merging Explorer" in page
    finally:
        server.terminate()
        server.wait(timeout=30)
