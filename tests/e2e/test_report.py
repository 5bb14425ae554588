"""The report opens in a browser with every network request blocked, and each of its figures is drawn."""
from __future__ import annotations

from explorer.app import export, handlers

from .conftest import ZOO

DRAWN = "() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d.querySelector('svg.main-svg'))"


def test_report_draws_every_figure_offline(browser, tiny_zoo, tmp_path):
    state, _ = handlers.run(handlers.new_state(), ZOO, tiny_zoo.tasks, "ties", {"density": 0.2}, limit=8)
    path = export.export_report(state, None, tmp_path)
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
        page.wait_for_function(DRAWN, timeout=60_000)
        divs = page.locator(".plotly-graph-div")
        assert divs.count() == 13  # TIES on the tiny zoo, scored: every figure of the dashboard
        assert all(divs.nth(i).locator("svg.main-svg").count() >= 1 for i in range(divs.count()))
        assert blocked == []
    finally:
        context.close()
