"""Screenshots of every dashboard tab for the README (not a test): serves the app on the demo zoo, drives it with
Playwright and Debian's chromium, and writes assets/screenshots/<tab>.png.

Run: .venv/bin/python -m tests.e2e.screenshots [--zoo demo] [--out assets/screenshots]
"""
from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABS = [("Cosine conflicts", "cosine"), ("Sign conflicts", "signs"), ("Mask overlaps", "masks"),
        ("Layer-wise scaling", "layers"), ("Spectra", "spectra")]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
WAIT = 600_000  # ms: the first view warms the caches


def choose(page, element: str, option: str) -> None:
    page.locator(f"#{element} input").click()
    page.get_by_role("option", name=re.compile("^" + re.escape(option))).click()  # titles start the labels


def type_value(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(value)
    box.press("Tab")


def tour(page, out: Path) -> None:
    """TIES at density 0.3 after task arithmetic: every tab, a comparison, an export, then an AdaMerging run."""
    from playwright.sync_api import expect

    status = page.locator("#status")

    def shot(name: str) -> None:
        time.sleep(1.5)  # let plotly finish drawing
        page.screenshot(path=str(out / f"{name}.png"), full_page=True)

    expect(status).to_contain_text("Run #1", timeout=WAIT)
    choose(page, "method", "TIES")
    expect(status).to_contain_text("#2 ties(", timeout=WAIT)
    type_value(page, "param-ties-density", "0.3")
    expect(status).to_contain_text("#3 ties(density=0.3", timeout=WAIT)
    shot("accuracy")
    for tab, name in TABS:
        page.get_by_role("tab", name=tab).click()
        shot(name)
    page.get_by_role("tab", name="History & compare").click()
    page.locator("#compare-b input").click()
    page.get_by_role("option", name="#1 task_arithmetic").click()
    page.locator("#compare").click()
    expect(page.locator("#compare-plot .js-plotly-plot")).to_be_visible(timeout=WAIT)
    shot("history")
    page.get_by_role("tab", name="Export").click()
    page.locator("#export-weights").click()
    expect(status).to_contain_text("Exported", timeout=WAIT)
    shot("export")
    page.get_by_role("tab", name="Accuracy").click()
    choose(page, "method", "AdaMerging")
    type_value(page, "param-adamerging-steps", "60")
    type_value(page, "param-adamerging-log_every", "2")
    page.locator("#run").click()
    expect(status).to_contain_text("#4 adamerging(", timeout=WAIT)
    shot("adaptive")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="demo")
    parser.add_argument("--out", default=str(ROOT / "assets" / "screenshots"))
    args = parser.parse_args()
    os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="explorer-shots-"))
    import torch
    from playwright.sync_api import sync_playwright

    from explorer.app import serve, ui
    from tests.e2e.conftest import free_port

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo, port = ui.build_demo(args.zoo), free_port()
    serve.launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}", wait_until="load")
        tour(page, out)
        browser.close()
    demo.close()


if __name__ == "__main__":
    main()
