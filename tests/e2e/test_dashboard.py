"""The dashboard in a real browser: pick TIES, move the density slider, Run, and check the accuracy table and the
cosine heatmap against the library; sessions are isolated; bad input gives a message in the page."""
from __future__ import annotations

import re

import pytest

import explorer as ex
from explorer.app.handlers import LIVE_LIMIT

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect
WAIT = 60_000  # ms; a first merge on a loaded shared CPU can take a while


def status(page):
    return page.locator("#status")


def pick_method(page, title: str) -> None:
    page.locator("#method input").click()
    page.get_by_role("option", name=re.compile("^" + re.escape(title))).click()  # titles start the labels


def drag_slider(page, elem_id: str, start: float, stop: float) -> float:
    """Drag a slider's thumb from `start` to `stop` (fractions of its width); the value it landed on."""
    box = page.locator(f"#{elem_id} input[type=range]").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + start * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + stop * box["width"], y, steps=6)
    page.mouse.up()
    return float(page.locator(f"#{elem_id} input[type=number]").input_value())


def body_rows(page, elem_id: str):
    """The data rows of a gr.Dataframe (a grid of role=row elements holding role=gridcell cells)."""
    return page.locator(f"#{elem_id} [role=row]:has([role=gridcell])")


def table_rows(page, elem_id: str) -> list[list[str]]:
    rows = body_rows(page, elem_id)
    return [[c.strip() for c in rows.nth(i).locator("[role=gridcell]").all_inner_texts()]
            for i in range(rows.count())]


def test_ties_run_matches_the_library(page, tiny_zoo):
    expect(status(page)).to_contain_text("Run #1 task_arithmetic(scale=0.3)", timeout=WAIT)
    pick_method(page, "TIES")
    expect(status(page)).to_contain_text("#2 ties(density=0.2", timeout=WAIT)  # picking a method runs it live
    density = drag_slider(page, "param-ties-density", 0.2, 0.6)
    assert 0.3 < density < 0.9
    expect(status(page)).to_contain_text(f"#3 ties(density={density:g},", timeout=WAIT)  # slider release: live
    page.locator("#run").click()
    expect(status(page)).to_contain_text(f"#4 ties(density={density:g},", timeout=WAIT)

    tv = ex.task_vectors(tiny_zoo)
    scores = ex.evaluate(tiny_zoo, ex.merge(tv, "ties", density=density), limit=LIVE_LIMIT).table
    expected = [[r.task, *[f"{100 * r[c]:.1f}" for c in ("base", "expert", "merged", "normalized")]]
                for _, r in scores.iterrows()]
    assert table_rows(page, "accuracy-table") == expected

    page.get_by_role("tab", name="Cosine conflicts").click()
    plot = page.locator("#cosine .js-plotly-plot")
    expect(plot).to_be_visible(timeout=WAIT)
    cosine = ex.analysis.cosine(tv)
    z = plot.evaluate("el => el._fullData[0].z")  # the values plotly drew (decoded from the figure JSON)
    for i, a in enumerate(cosine.index):
        for j, b in enumerate(cosine.columns):
            if i != j:  # the diagonal is left blank
                assert z[i][j] == pytest.approx(cosine.loc[a, b], abs=1e-9)
    shown = set(page.locator("#cosine .js-plotly-plot text").all_text_contents())
    assert {f"{cosine.iloc[0, 1]:.3f}", f"{cosine.iloc[1, 2]:.3f}"} <= shown


def test_sessions_do_not_see_each_others_runs(browser, server):
    pages = []
    for _ in range(2):
        context = browser.new_context(viewport={"width": 1500, "height": 1100})
        pages.append(context.new_page())
        pages[-1].goto(server, wait_until="load", timeout=90_000)
    alice, bob = pages
    for p in pages:
        expect(status(p)).to_contain_text("Run #1", timeout=WAIT)
    pick_method(alice, "TIES")
    expect(status(alice)).to_contain_text("#2 ties(", timeout=WAIT)
    alice.locator("#run").click()
    expect(status(alice)).to_contain_text("#3 ties(", timeout=WAIT)
    for p in pages:
        p.get_by_role("tab", name="History & compare").click()
    expect(body_rows(alice, "history")).to_have_count(3, timeout=WAIT)
    expect(body_rows(bob, "history")).to_have_count(1, timeout=WAIT)
    assert "ties" not in bob.locator("#history").inner_text()
    assert "ties" in alice.locator("#history").inner_text()
    for p in pages:
        p.context.close()


def test_bad_input_shows_a_message_not_a_traceback(page):
    expect(status(page)).to_contain_text("Run #1", timeout=WAIT)
    pick_method(page, "TIES")
    expect(status(page)).to_contain_text("#2 ties(", timeout=WAIT)
    box = page.locator("#param-ties-density input[type=number]")
    box.fill("5")
    box.press("Tab")  # leaving the box releases the slider with the typed value
    expect(status(page)).to_contain_text("'density': 5.0 is out of range; allowed [0.0, 1.0]", timeout=WAIT)
    for task in ("task1", "task2"):
        page.locator("#experts").get_by_label(task).uncheck()
    expect(status(page)).to_contain_text("at least 2 experts", timeout=WAIT)
    assert "Traceback" not in page.content()


def enter(page, selector: str, value: str, shows: str) -> None:
    """Type `value` into a box, press Enter, and wait for the status to show `shows`."""
    box = page.locator(selector)
    box.fill(value)
    box.press("Enter")
    expect(status(page)).to_contain_text(shows, timeout=WAIT)


def test_enter_in_a_number_box_applies_the_value(page):
    expect(status(page)).to_contain_text("Run #1 task_arithmetic(scale=0.3)", timeout=WAIT)
    # a slider's number box
    enter(page, "#param-task_arithmetic-scale input[type=number]", "0.55", "task_arithmetic(scale=0.55)")
    pick_method(page, "DARE (Drop And REscale)")
    expect(status(page)).to_contain_text("dare(drop=0.5", timeout=WAIT)
    # a number box of a live method: the value runs, or the range message shows
    enter(page, "#param-dare-seed input", "5", "seed=5)")
    enter(page, "#param-dare-seed input", "-3", "'seed': -3 is out of range; allowed [0, 2147483647]")
    pick_method(page, "AdaMerging")
    expect(status(page)).to_contain_text("press Run to start it", timeout=WAIT)
    # a method that runs on Run only: Enter confirms the value, or shows the range message
    enter(page, "#param-adamerging-log_every input", "0", "'log_every': 0 is out of range; allowed [1, 100000]")
    enter(page, "#param-adamerging-log_every input", "7", "log_every = 7 is set: press Run to start adamerging")


def set_number(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(value)
    box.press("Tab")


def test_adaptive_method_streams_a_loss_curve_and_can_be_cancelled(page):
    expect(status(page)).to_contain_text("Run #1", timeout=WAIT)
    pick_method(page, "AdaMerging")
    expect(status(page)).to_contain_text("press Run to start it", timeout=WAIT)  # no live run for a data method
    expect(page.locator("#cancel")).to_be_visible()
    set_number(page, "param-adamerging-steps", "20")
    set_number(page, "param-adamerging-batch", "4")
    set_number(page, "param-adamerging-log_every", "2")
    page.locator("#run").click()
    expect(status(page)).to_contain_text("#2 adamerging(granularity=layer", timeout=WAIT)
    expect(status(page)).not_to_contain_text("Cancelled")
    expect(page.locator("#loss-curve")).to_be_visible()
    curve = page.locator("#loss-curve .js-plotly-plot")
    expect(curve).to_be_visible(timeout=WAIT)
    assert curve.evaluate("el => Array.from(el._fullData[0].x)") == list(range(1, 21))  # every step, integers

    set_number(page, "param-adamerging-steps", "10000")
    set_number(page, "param-adamerging-log_every", "1")
    page.locator("#run").click()
    expect(status(page)).to_contain_text("step ", timeout=WAIT)  # progress streams into the status box
    page.locator("#cancel").click()
    expect(status(page)).to_contain_text("#3 adamerging(", timeout=WAIT)
    expect(status(page)).to_contain_text("Cancelled", timeout=WAIT)


def test_page_fetches_nothing_from_outside(browser, server):
    context = browser.new_context()
    page = context.new_page()
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto(server, wait_until="load", timeout=90_000)
    expect(status(page)).to_contain_text("Run #1", timeout=WAIT)
    page.get_by_role("tab", name="Cosine conflicts").click()
    expect(page.locator("#cosine .js-plotly-plot")).to_be_visible(timeout=WAIT)
    outside = [u for u in urls if not u.startswith((server, "data:", "blob:"))]
    assert urls and not outside
    context.close()


def test_a_zoo_that_fails_to_load_is_reported_in_the_page(page, monkeypatch):
    from explorer.app import cache

    name = ex.list_zoos()[1]  # a real zoo from zoos/*.json, offered in the zoo picker

    def broken(name, **kwargs):
        raise OSError(f"checkpoint of {name} is unreadable")

    monkeypatch.setattr(cache, "load_zoo", broken)  # the server runs in this process
    expect(status(page)).to_contain_text("Run #1", timeout=WAIT)
    page.locator("#zoo input").click()
    page.get_by_role("option", name=name, exact=True).click()
    expect(status(page)).to_contain_text(f"could not load zoo '{name}': checkpoint of {name} is unreadable",
                                         timeout=WAIT)
    assert "Traceback" not in page.content()


def test_tsv_scale_slider_and_the_spectra_tab(page, tiny_zoo):
    expect(status(page)).to_contain_text("Run #1 task_arithmetic(scale=0.3)", timeout=WAIT)
    pick_method(page, "TSV-Merge (Task Singular Vectors)")
    expect(status(page)).to_contain_text("#2 tsv(scale=1,", timeout=WAIT)
    scale = drag_slider(page, "param-tsv-scale", 1 / 3, 0.6)
    assert 1.2 < scale < 2.4
    expect(status(page)).to_contain_text(f"#3 tsv(scale={scale:g},", timeout=WAIT)  # slider release: live
    page.get_by_role("tab", name="Spectra").click()
    for elem_id in ("subspace-overlap", "interference", "spectrum", "effective-ranks"):
        expect(page.locator(f"#{elem_id} .js-plotly-plot")).to_be_visible(timeout=WAIT)
    overlap = ex.analysis.subspace_overlap(ex.task_vectors(tiny_zoo))
    z = page.locator("#subspace-overlap .js-plotly-plot").evaluate("el => el._fullData[0].z")
    assert z[0][1] == pytest.approx(overlap.iloc[0, 1], abs=1e-6)
    names = page.locator("#spectrum .js-plotly-plot").evaluate("el => el._fullData.map(t => t.name)")
    assert names[-1] == "merged" and len(names) == len(tiny_zoo.tasks) + 1  # the current TSV merge beside the tasks
    assert "Error" not in status(page).inner_text()
    first = page.locator("#spectrum .js-plotly-plot").evaluate("el => el._fullData.at(-1).y[0]")
    page.locator("#param-tsv-scale input[type=number]").fill("0.5")
    page.locator("#param-tsv-scale input[type=number]").press("Enter")
    expect(status(page)).to_contain_text("#4 tsv(scale=0.5,", timeout=WAIT)  # a run redraws the open tab's figures
    page.wait_for_function(f"() => document.querySelector('#spectrum .js-plotly-plot')._fullData.at(-1).y[0] "
                           f"!= {first}", timeout=WAIT)
