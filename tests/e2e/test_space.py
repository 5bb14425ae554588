"""The folder `explorer space` writes runs as Spaces run it: its pinned requirements.txt installed into a fresh venv
(nothing from this one: no system site-packages, no PYTHONPATH), `python app.py` in that folder with
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT set, and the demo dashboard answering a browser: a merge scores, and a
slider moved merges again.

The venv is made by uv when it is installed (the test extra): about 1 s with uv's cache warm (its files hard-linked
from the cache), about 20 s cold; pip takes over 2 minutes for the same pins. The Space folder is written afresh each
run at one place in pytest's cache folder, with NUMBA_CACHE_DIR beside it, so that the merges' numba loops compile on
the first run only (about 30 s of a cold start here), as they would on a Space after its first boot."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from explorer.space import build_space

from .conftest import free_port
from .test_dashboard import WAIT, drag_slider, status

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect
pytestmark = pytest.mark.slow
START = 240  # s: a fresh interpreter imports torch, open_clip and gradio cold, then builds the demo page


def uv_bin() -> str | None:
    try:
        import uv
    except ImportError:
        return shutil.which("uv")
    return uv.find_uv_bin()


def fresh_venv(venv: Path, requirements: Path) -> Path:
    """A new venv of this Python holding exactly `requirements` (and what they need); its python."""
    uv = uv_bin()
    if uv:
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120)
        install = [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python")]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        install = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*install, "-r", str(requirements)], check=True, timeout=900)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    return venv / "bin" / "python"


def space_root(request, tmp_path: Path) -> Path:
    """Where the Space is written: the same folder each run (pytest's cache, per checkout), else a temporary one."""
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    return Path(cache.mkdir("space-e2e")) if cache is not None else tmp_path


def space_env(port: int, tmp: Path, numba: Path) -> dict[str, str]:
    """This environment without what would lead the Space's python to this checkout or venv, plus what Spaces set."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "GRADIO_TEMP_DIR": str(tmp),
            "NUMBA_CACHE_DIR": str(numba),
            "NO_PROXY": "localhost,127.0.0.1", "no_proxy": "localhost,127.0.0.1", "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1"}


def wait_until_served(url: str, proc: subprocess.Popen, log: Path) -> None:
    """Until the page answers 200 and the app has said where it listens (it prints that once serving)."""
    deadline = time.monotonic() + START
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"python app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                if reply.status == 200 and f"Model Merging Explorer on {url}" in log.read_text():
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"python app.py did not answer {url} in {START} s:\n{log.read_text()[-3000:]}")


def scored(n: int, scale: float) -> re.Pattern:
    """The status line of run `n`, task arithmetic at `scale` on the demo's 8 experts, with its mean accuracy."""
    return re.compile(rf"Run #{n} task_arithmetic\(scale={scale:g}\) on 8 experts of demo: mean accuracy \d+\.\d%")


def test_the_space_installs_into_a_fresh_venv_and_serves_the_demo(browser, request, tmp_path):
    root = space_root(request, tmp_path)
    space = build_space(root / "my-space", force=True)
    python = fresh_venv(tmp_path / "venv", space / "requirements.txt")
    port, log = free_port(), tmp_path / "app.log"
    env = space_env(port, tmp_path, root / "numba")
    found = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('explorer'))"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert found.stdout.strip() == "None", found  # the venv does not see this checkout: only app.py's folder does
    with log.open("w") as out:
        proc = subprocess.Popen([str(python), "app.py"], cwd=space, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_served(url, proc, log)
        context = browser.new_context(viewport={"width": 1500, "height": 1100})
        page = context.new_page()
        page.goto(url, wait_until="load", timeout=90_000)
        expect(status(page)).to_contain_text(scored(1, 0.3), timeout=1000 * START)  # the cold first view: figures
        scale = drag_slider(page, "param-task_arithmetic-scale", 0.3, 0.7)
        assert scale != 0.3
        expect(status(page)).to_contain_text(scored(2, scale), timeout=2 * WAIT)  # slider release: merged again
        context.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
