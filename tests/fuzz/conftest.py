"""Property-based fuzzing of the public entry points. Only ValueError, TypeError, KeyError or FileNotFoundError with a
message that names the problem may reach a user; anything else (or a silent wrong answer) fails the test.

The "ci" profile is derandomized, so a failure reproduces; HYPOTHESIS_PROFILE=dev explores new cases."""
from __future__ import annotations

import os
from typing import Any, Callable

import torch
from hypothesis import HealthCheck, event, settings

ALLOWED = (ValueError, TypeError, KeyError, FileNotFoundError)
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                 HealthCheck.data_too_large])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
torch.set_num_threads(1)


def message_of(err: BaseException) -> str:
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


def outcome(call: Callable[[], Any], *names: str) -> Any:
    """`call()`'s value, or the allowed exception it raised, checked to carry a real message (and, when `names`
    are given, to mention one of them). Any other exception type propagates and fails the test."""
    try:
        value = call()
        event("accepted")
        return value
    except ALLOWED as err:
        event(f"refused: {type(err).__name__}")
        text = message_of(err)
        assert len(text) >= 15, f"{type(err).__name__} with no useful message: {text!r}"
        assert "Traceback" not in text
        if names:
            assert any(n in text for n in names), f"{type(err).__name__} does not name the problem: {text!r}"
        return err
