"""Gradio pieces of the dashboard: the widget of a declared parameter, and the guard that turns any handler error
into a readable line in the page (never a traceback). Only app.py imports this module."""
from __future__ import annotations

import functools
import inspect
import sys
import traceback
from typing import Callable

import gradio as gr

from .controls import Control


def widget(c: Control) -> gr.components.Component:
    """The widget of one declared parameter: slider, number box, dropdown, text box or checkbox."""
    p = c.param
    common = {"label": c.label, "info": p.help, "elem_id": c.elem_id}
    if c.kind == "slider":
        return gr.Slider(p.low, p.high, value=p.default, step=p.step, **common)
    if c.kind == "number":
        return gr.Number(value=p.default, minimum=p.low, maximum=p.high, step=p.step or 1,
                         precision=0 if p.type is int else None, **common)
    if c.kind == "dropdown":
        return gr.Dropdown(list(p.choices), value=p.default, **common)
    if c.kind == "text":
        return gr.Textbox(value=p.default, max_lines=1, **common)
    return gr.Checkbox(value=p.default, **common)


def _problem(err: Exception, toast: bool) -> str:
    if isinstance(err, (ValueError, FileNotFoundError, KeyError, TypeError)):
        text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    else:  # a bug: the log gets the traceback, the page a short line
        traceback.print_exc(file=sys.stderr)
        text = f"Something went wrong ({type(err).__name__}: {err}). The server log has the details."
    if toast:
        gr.Warning(text)
    return f"⚠️ {text}"


def guarded(n_outputs: int, toast: bool = True) -> Callable:
    """Wrap a handler whose first output is the status box: on error, show the message there (and as a toast
    unless the handler is a follow-up step of another event) and leave every other output as it was. Works for
    plain and generator handlers."""
    def wrap(fn: Callable) -> Callable:
        def failed(err: Exception) -> tuple | str:
            text = _problem(err, toast)
            return text if n_outputs == 1 else (text, *[gr.skip()] * (n_outputs - 1))  # one output: no tuple

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen(*args, **kwargs):
                try:
                    yield from fn(*args, **kwargs)
                except Exception as err:
                    yield failed(err)
            return gen

        @functools.wraps(fn)
        def plain(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as err:
                return failed(err)
        return plain
    return wrap
