"""The report opens in a browser with every network request blocked, and each of its figures is drawn; the
dashboard's Download report button gives that page for the current run."""
from __future__ import annotations

from pathlib import Path

import pytest

from explorer.app import export, handlers

from .conftest import ZOO

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect
DRAWN = "() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d.querySelector('svg.main-svg'))"
WAIT = 60_000  # ms


def drawn_offline(browser, path: Path) -> int:
    """Open the report at `path` with everything but file:// blocked; the number of figures, each drawn."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page, blocked = context.new_page(), []

    def only_files(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_files)
    try:
        page.goto(path.as_uri(), wait_until="load")
        page.wait_for_function(DRAWN, timeout=WAIT)
        divs = page.locator(".plotly-graph-div")
        assert all(divs.nth(i).locator("svg.main-svg").count() >= 1 for i in range(divs.count()))
        assert blocked == []
        return divs.count()
    finally:
        context.close()


def test_report_draws_every_figure_offline(browser, tiny_zoo, tmp_path):
    state, _ = handlers.run(handlers.new_state(), ZOO, tiny_zoo.tasks, "ties", {"density": 0.2}, limit=8)
    path = export.export_report(state, None, tmp_path)
    assert drawn_offline(browser, path) == 13  # TIES on the tiny zoo, scored: every figure of the dashboard


def test_download_report_button(page, browser, tmp_path):
    expect(page.locator("#status")).to_contain_text("Run #1 task_arithmetic(scale=0.3)", timeout=WAIT)
    page.get_by_role("tab", name="Export").click()
    page.locator("#export-report").click()
    link = page.locator("#report-file a").first
    expect(link).to_be_visible(timeout=WAIT)
    with page.expect_download() as download:
        link.click()
    path = tmp_path / "report.html"
    download.value.save_as(path)
    assert "task_arithmetic" in path.read_text() and drawn_offline(browser, path) == 11  # no masks
