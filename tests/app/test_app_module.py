"""app.py: importing it launches nothing, the layout has every control and tab, errors become page messages."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from explorer.app import controls

from .conftest import ZOO


@pytest.fixture(scope="module")
def app_module(tmp_path_factory):
    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("gradio"))
    import app
    return app


def test_importing_the_dashboard_turns_gradio_analytics_off_whatever_the_environment_says():
    code = "import explorer.app.ui, gradio.analytics as a, os; print(os.environ['GRADIO_ANALYTICS_ENABLED'], " \
           "a.analytics_enabled())"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "True"}  # not what the Makefile sets
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_parses_safe_defaults(app_module):
    args = app_module.parse_args([])
    assert (args.host, args.port, args.share, args.zoo) == ("127.0.0.1", 7860, False, "demo")
    args = app_module.parse_args(["--host", "0.0.0.0", "--port", "9000", "--zoo", "x", "--share"])
    assert (args.host, args.port, args.share, args.zoo) == ("0.0.0.0", 9000, True, "x")


def test_layout_has_a_widget_per_parameter_and_the_tested_elements(app_module, zoo):
    demo = app_module.build_demo(ZOO)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {c.elem_id for c in controls.controls()} <= ids
    assert {"zoo", "experts", "method", "run", "cancel", "status", "accuracy-table", "cosine", "signs",
            "overlap", "coefficients", "history", "compare-plot", "export-weights", "export-figures"} <= ids
    assert ZOO in app_module.zoo_choices(ZOO) and "demo" in app_module.zoo_choices(ZOO)


def test_guarded_turns_errors_into_a_status_message():
    from explorer.app.widgets import guarded

    @guarded(3, toast=False)
    def fails(x):
        raise ValueError(f"parameter 'density': {x} is out of range")

    status, *rest = fails(5.0)
    assert status == "⚠️ parameter 'density': 5.0 is out of range"
    assert len(rest) == 2

    @guarded(2, toast=False)
    def streams():
        yield "step 1", 1
        raise RuntimeError("boom")

    out = list(streams())
    assert out[0] == ("step 1", 1)
    assert out[1][0].startswith("⚠️ Something went wrong (RuntimeError: boom)")
