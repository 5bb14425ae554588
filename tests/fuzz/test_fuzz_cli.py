"""Fuzz the CLI's `-p NAME=VALUE` strings: parsed into validated values, or one readable line and exit status 2."""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.cli import main
from explorer.commands.merge import parse_params
from explorer.methods import registry
from tests.conftest import write_zoo_folder

from .conftest import outcome

METHODS = [m.name for m in registry.all_methods()]
NUMBERISH = ["0", "1", "-1", "0.2", "1e-3", "1e309", "nan", "inf", "-inf", "0x10", "1_000", " 3 ", "", "true",
             "False", "yes", "2.", ".5", "١", "1/2", "None"]


@st.composite
def pairs(draw, method: str) -> list[str]:
    names = [p.name for p in registry.get(method).params] or ["scale"]
    out = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.one_of(st.sampled_from(names), st.text(max_size=6)))
        value = draw(st.one_of(st.sampled_from(NUMBERISH), st.text(max_size=8)))
        sep = draw(st.sampled_from(["=", "=", "=", ":", " = ", "", "=="]))
        out.append(f"{name}{sep}{value}")
    return out


@settings(max_examples=250)
@given(data=st.data())
def test_parse_params_fuzz(data):
    method = data.draw(st.sampled_from(METHODS), label="method")
    given_pairs = data.draw(pairs(method), label="pairs")
    parsed = outcome(lambda: parse_params(method, given_pairs), "-p", "parameter", "NAME=VALUE", method)
    if isinstance(parsed, dict):
        assert registry.get(method).resolve(parsed) == {**registry.get(method).defaults(), **parsed}


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as tmp:
        yield str(write_zoo_folder(Path(tmp), num_tasks=2)[0])


@settings(max_examples=60)
@given(data=st.data())
def test_cli_merge_exits_0_or_2_with_one_message(folder, data):
    method = data.draw(st.sampled_from([m for m in METHODS if not registry.get(m).needs_data]), label="method")
    argv = ["merge", "--zoo", folder, "--method", method, "--device", "cpu"]
    for pair in data.draw(pairs(method), label="pairs"):
        argv += ["-p", pair]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    assert code in (0, 2)
    if code == 2:
        text = err.getvalue()
        assert text.startswith("explorer merge: error: ") and "Traceback" not in text
