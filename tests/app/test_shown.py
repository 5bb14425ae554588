"""A run sends a figure as a plain value only where that session's page shows its plot already."""
from __future__ import annotations

import gradio as gr
import plotly.graph_objects as go

from explorer.app import shown

NAMES = ("a", "b", "c")


def kinds(outputs: list) -> list[str]:
    """Each output as what Gradio does with it: skip, update (visible True/False) or value."""
    def kind(o):
        if isinstance(o, dict) and o.get("__type__") == "update" and set(o) == {"__type__"}:
            return "skip"
        if isinstance(o, dict) and o.get("__type__") == "update":
            return f"update {o['visible']}"
        return "value"
    return [kind(o) for o in outputs]


def test_a_session_gets_updates_until_its_plots_are_known_then_plain_values():
    session, fig = "test-session-1", go.Figure()
    assert kinds(shown.figure_outputs(session, {"a": fig, "b": None, "c": fig}, NAMES)) == [
        "update True", "update False", "update True"]  # nothing known: as before, every plot told
    out = shown.figure_outputs(session, {"a": fig, "b": None, "c": fig}, NAMES)
    assert kinds(out) == ["value", "skip", "value"] and out[0] is fig  # visible already / hidden already
    assert kinds(shown.figure_outputs(session, {"a": None, "b": fig}, NAMES)) == [
        "update False", "update True", "skip"]  # c not drawn (a closed tab): skipped, still known visible
    assert kinds(shown.figure_outputs(session, {"a": fig, "b": fig, "c": fig}, NAMES)) == [
        "update True", "value", "value"]


def test_sessions_are_kept_apart_and_an_unknown_session_always_gets_updates():
    fig = go.Figure()
    shown.figure_outputs("test-session-2", {"a": fig}, NAMES)
    assert kinds(shown.figure_outputs("test-session-3", {"a": fig}, NAMES)) == ["update True", "skip", "skip"]
    for _ in range(2):
        assert kinds(shown.figure_outputs(None, {"a": fig}, NAMES)) == ["update True", "skip", "skip"]
    shown.SENT.clear()  # forgotten (the LRU dropped it): updates again, never a value into a hidden plot
    assert kinds(shown.figure_outputs("test-session-2", {"a": fig}, NAMES)) == ["update True", "skip", "skip"]


def test_skip_is_gradios_skip():
    assert kinds([gr.skip()]) == ["skip"]
