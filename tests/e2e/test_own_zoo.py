"""A zoo of your own in a real browser: open a folder of checkpoints (no model definition, heads or data) from the
page's zoo picker, move a slider, and see the cosine and mask views follow the library while the accuracy view
explains what is missing, with no error toast."""
from __future__ import annotations

import pytest

import explorer as ex
from tests.conftest import write_zoo_folder

from .test_dashboard import WAIT, drag_slider, pick_method, status

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect


def plot_z(page, elem_id: str) -> list[list[float | None]]:
    """The matrix a heatmap drew (decoded by plotly from the figure JSON)."""
    plot = page.locator(f"#{elem_id} .js-plotly-plot")
    expect(plot).to_be_visible(timeout=WAIT)
    return plot.evaluate("el => el._fullData[0].z")


def assert_matrix(z, frame) -> None:
    for i in range(len(frame.index)):
        for j in range(len(frame.columns)):
            if i != j:  # the diagonal is left blank
                assert z[i][j] == pytest.approx(frame.iloc[i, j], abs=1e-6)


def test_open_a_folder_zoo_from_the_picker_and_explore_it_without_data(page, tmp_path):
    folder, _, _ = write_zoo_folder(tmp_path)
    tv = ex.task_vectors(ex.load_zoo(str(folder)), device="cpu")
    expect(status(page)).to_contain_text("Run #1", timeout=WAIT)

    page.locator("#zoo-path").get_by_role("textbox").fill(str(folder))
    page.locator("#open-zoo").click()
    expect(status(page)).to_contain_text("Run #2 task_arithmetic(scale=0.3)", timeout=WAIT)
    expect(status(page)).to_contain_text("Accuracy not measured", timeout=WAIT)
    expect(page.locator("#zoo input")).to_have_value(str(folder))
    note = page.locator("#accuracy-note")
    expect(note).to_contain_text("No accuracy for this zoo yet", timeout=WAIT)
    expect(note).to_contain_text("a model definition")
    expect(note).to_contain_text("class names for task 'task0'")

    page.get_by_role("tab", name="Cosine conflicts").click()
    assert_matrix(plot_z(page, "cosine"), ex.analysis.cosine(tv))  # the view follows the opened zoo

    pick_method(page, "TIES")
    expect(status(page)).to_contain_text("#3 ties(density=0.2", timeout=WAIT)
    page.get_by_role("tab", name="Mask overlaps").click()
    assert_matrix(plot_z(page, "overlap"), ex.analysis.mask_overlap(ex.merge(tv, "ties", density=0.2)))
    density = drag_slider(page, "param-ties-density", 0.2, 0.7)
    expect(status(page)).to_contain_text(f"#4 ties(density={density:g},", timeout=WAIT)
    want = ex.analysis.mask_overlap(ex.merge(tv, "ties", density=density))
    page.wait_for_function("(v) => { const el = document.querySelector('#overlap .js-plotly-plot');"
                           " return el && Math.abs(el._fullData[0].z[0][1] - v) < 1e-6; }",
                           arg=float(want.iloc[0, 1]), timeout=WAIT)
    assert_matrix(plot_z(page, "overlap"), want)
    expect(page.locator("#mask-note")).to_contain_text("Masks of **ties**".replace("**", ""))

    page.get_by_role("tab", name="Accuracy").click()
    expect(note).to_contain_text("No accuracy for this zoo yet")
    assert page.locator(".toast-body").count() == 0  # no error toast anywhere on the way
    assert "Traceback" not in page.content()


def test_a_path_without_a_zoo_is_reported(page, tmp_path):
    expect(status(page)).to_contain_text("Run #1", timeout=WAIT)
    box = page.locator("#zoo-path").get_by_role("textbox")
    box.fill(str(tmp_path / "nowhere"))
    page.locator("#open-zoo").click()
    expect(status(page)).to_contain_text("no such file or folder", timeout=WAIT)
    (tmp_path / "empty").mkdir()
    box.fill(str(tmp_path / "empty"))
    box.press("Enter")
    expect(status(page)).to_contain_text("holds no zoo", timeout=WAIT)
