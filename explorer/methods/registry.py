"""The method registry: each merge method is a function plus one declaration of its parameters.

The CLI flags, the app's controls, validation and the README's methods table all read these
declarations, so a parameter is described exactly once.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from ..registry import Registry

# Arguments the harness supplies: never user parameters.
INJECTED = frozenset({"zoo", "callback", "cancel", "device"})
# What a method's result needs at inference beyond one state dict: nothing, the task id, or a router per input.
INFERENCE = {"": "", "task": "needs the task id", "router": "routes each input (a router mixes weights)"}
# A streaming hook: (deltas name -> [T, ...] read on each access, resolved params) -> (name, merged delta) per
# parameter, its global passes (thresholds, sign votes) run before the first yield.
Stream = Callable[[Mapping[str, Any], dict[str, Any]], Iterator[tuple[str, Any]]]


@dataclass(frozen=True)
class Param:
    """One hyper-parameter: its type, default, allowed range or choices, help and the paper's value."""

    name: str
    type: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple | None = None
    paper: Any = None

    def __post_init__(self):
        if self.type not in (int, float, str, bool):
            raise TypeError(f"param {self.name}: type must be int, float, str or bool")
        self.validate(self.default)

    def describe_range(self) -> str:
        if self.choices is not None:
            return "{" + ", ".join(map(str, self.choices)) + "}"
        if self.type is bool:
            return "{true, false}"
        if self.low is not None or self.high is not None:
            return f"[{self.low}, {self.high}]"
        return "any"

    def parse(self, text: str) -> Any:
        """Convert a CLI string (`density=0.2`) into this parameter's type, then validate it."""
        if self.type is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"parameter {self.name!r}: {text!r} is not a boolean; allowed {self.describe_range()}")
            return self.validate(lowered in ("true", "1", "yes"))
        try:
            value = self.type(text)
        except ValueError as err:
            raise ValueError(f"parameter {self.name!r}: {text!r} is not a valid {self.type.__name__}; "
                             f"allowed {self.describe_range()}") from err
        return self.validate(value)

    def validate(self, value: Any) -> Any:
        """Return the value coerced to this type, or raise ValueError naming parameter, value and range."""
        allowed = self.describe_range()
        if self.type is bool:
            if not isinstance(value, bool):
                raise ValueError(f"parameter {self.name!r}: {value!r} is not a boolean; allowed {allowed}")
            return value
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"parameter {self.name!r}: {value!r} is not a number; allowed {allowed}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"parameter {self.name!r}: {value!r} is not a finite number; allowed {allowed}")
            if self.type is int and float(value) != int(value):
                raise ValueError(f"parameter {self.name!r}: {value!r} is not an integer; allowed {allowed}")
            value = self.type(value)
            if value != value or (self.low is not None and value < self.low) or (
                    self.high is not None and value > self.high):
                raise ValueError(f"parameter {self.name!r}: {value!r} is out of range; allowed {allowed}")
            return value
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"parameter {self.name!r}: {value!r} is not allowed; allowed {allowed}")
        if not isinstance(value, str):
            raise ValueError(f"parameter {self.name!r}: {value!r} is not a string; allowed {allowed}")
        return value

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.type.__name__, "default": self.default, "low": self.low,
                "high": self.high, "step": self.step, "choices": list(self.choices) if self.choices else None,
                "help": self.help, "paper": self.paper}


@dataclass(frozen=True)
class Method:
    """A registered merge method: the function, its declared parameters and its documentation."""

    name: str
    fn: Callable
    params: tuple[Param, ...]
    title: str
    paper: str
    formula: str
    summary: str
    needs_data: bool = False
    per_task: bool = False
    injected: frozenset = field(default_factory=frozenset)
    inference: str = ""
    stream: Stream | None = None  # merges parameter by parameter (a zoo larger than memory), where given

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ValueError(f"method {self.name!r} has no parameter {name!r}; "
                         f"its parameters are {[p.name for p in self.params]}")

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def resolve(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with validated user values; unknown names raise ValueError."""
        values = self.defaults()
        for name, value in given.items():
            values[name] = self.param(name).validate(value)
        return values

    @property
    def reads_data(self) -> bool:
        """Whether the method reads the zoo's models and images (learns or selects on data), so it is slow."""
        return "zoo" in self.injected

    @property
    def cancellable(self) -> bool:
        """Whether a running merge stops early, keeping what it learned, when asked to (a `cancel` callable)."""
        return "cancel" in self.injected

    @property
    def inference_note(self) -> str:
        """What inference needs beyond one state dict, in words ("" when nothing)."""
        return "one model per task (the task id picks it)" if self.per_task else INFERENCE[self.inference]

    @property
    def help(self) -> str:
        return f"{self.title}. {self.summary} Formula: {self.formula} Paper: {self.paper}."


_REGISTRY: Registry[Method] = Registry("method")


def register(name: str, *params: Param, title: str, paper: str, formula: str, summary: str,
             needs_data: bool = False, per_task: bool = False, inference: str = "",
             stream: Stream | None = None) -> Callable[[Callable], Callable]:
    """Decorator: register `fn(tv, *, <declared params>, [injected args])` under `name`.

    `inference` says what its results need at inference beyond one state dict: "" (nothing), "task" (the task
    id picks a per-task add-on module) or "router" (a router mixes weights per input). `stream`: the same merge
    parameter by parameter over deltas read on each access (`Stream`), for zoos larger than memory.
    Checks at import time that the function's keyword-only arguments are exactly the declared
    parameters plus harness-injected ones, so a declaration cannot drift from its code.
    """

    def wrap(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        kwonly = {n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
        declared = {p.name for p in params}
        injected = kwonly & INJECTED
        if kwonly - injected != declared:
            raise TypeError(f"method {name!r}: declared params {sorted(declared)} do not match the "
                            f"function's keyword arguments {sorted(kwonly - injected)}")
        if inference not in INFERENCE:
            raise ValueError(f"method {name!r}: inference must be one of {sorted(INFERENCE)}, got {inference!r}")
        _REGISTRY.add(name, Method(name, fn, tuple(params), title, paper, formula, summary,
                                   needs_data, per_task, frozenset(injected), inference, stream))
        return fn

    return wrap


def get(name: str) -> Method:
    """The method registered under `name`, or a ValueError listing the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"a method is named by a string (see ex.list_methods()), got {type(name).__name__}")
    return _REGISTRY.get(name)


def all_methods() -> list[Method]:
    return _REGISTRY.values()


def streamable() -> list[str]:
    """The methods that merge parameter by parameter (they declare a `stream` hook), in registration order."""
    return [m.name for m in _REGISTRY.values() if m.stream is not None]
