"""Browser fixtures: the dashboard served in-process on a free port (on a tiny zoo), and headless Debian Chromium
driven by Playwright. Without /usr/bin/chromium (or playwright) every e2e test is skipped with the reason."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from explorer.app import cache
from tests.tinyzoo import TinyZoo

CHROMIUM = Path("/usr/bin/chromium")
ZOO = "tiny-e2e"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--no-first-run", "--disable-component-update", "--disable-sync"]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_zoo() -> TinyZoo:
    zoo = TinyZoo()
    cache.register_zoo(ZOO, zoo)
    return zoo


@pytest.fixture(autouse=True)
def _zoo_registered(tiny_zoo) -> None:
    """Each browser test starts with the served zoo registered: under pytest-xdist a worker may run tests/app between
    two browser tests, and their fixture clears the dashboard's caches (its registered zoos among them)."""
    cache.register_zoo(ZOO, tiny_zoo)


@pytest.fixture(scope="session")
def server(tiny_zoo, tmp_path_factory):
    """The dashboard on 127.0.0.1:<free port>, opened on the tiny zoo; its URL."""
    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("gradio"))
    import torch

    from explorer.app import serve, ui

    torch.set_num_threads(1)  # tiny models; a shared CPU makes more threads slower
    demo = ui.build_demo(ZOO)
    port = free_port()
    serve.launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}"
    demo.close()


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    page = context.new_page()
    page.goto(server, wait_until="load", timeout=90_000)  # a shared, loaded CPU can be slow to serve the page
    yield page
    context.close()
