"""The dashboard's method controls, described from the registry: which widget each parameter gets, and how the
widgets' values turn back into validated merge parameters. Pure data, so the UI and the tests share it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..methods import registry
from ..methods.registry import Method, Param

MAX_SLIDER_STEPS = 10_000  # wider integer ranges (seeds, log intervals) get a number box instead of a slider


@dataclass(frozen=True)
class Control:
    """One widget: `kind` is slider, number, dropdown, text or checkbox; `elem_id` is what tests and CSS find."""

    method: str
    param: Param
    kind: str

    @property
    def elem_id(self) -> str:
        return f"param-{self.method}-{self.param.name}"

    @property
    def label(self) -> str:
        paper = "" if self.param.paper is None else f" (paper: {self.param.paper})"
        return f"{self.param.name}{paper}"


def widget_kind(p: Param) -> str:
    """Slider for a bounded numeric range with a reasonable number of steps, number box otherwise; a dropdown for
    declared choices, a text box for free text (e.g. Surgery's `on_params`), a checkbox for a flag."""
    if p.type is bool:
        return "checkbox"
    if p.choices is not None:
        return "dropdown"
    if p.type is str:
        return "text"
    if p.low is None or p.high is None:
        return "number"
    step = p.step or (1 if p.type is int else (p.high - p.low) / 100)
    return "slider" if (p.high - p.low) / step <= MAX_SLIDER_STEPS else "number"


def controls() -> list[Control]:
    """Every method's controls, in registry order: the dashboard builds one widget per entry."""
    return [Control(m.name, p, widget_kind(p)) for m in registry.all_methods() for p in m.params]


def method_choices() -> list[tuple[str, str]]:
    """(label, name) pairs for the method picker; methods that read the zoo's images are marked (they run on
    the Run button only and take longer)."""
    return [(m.title if is_live(m.name) else f"{m.title} · reads data, press Run", m.name)
            for m in registry.all_methods()]


def is_live(method: str) -> bool:
    """Whether slider releases re-run `method` at once: yes for methods that read no data (fast), no for those
    that learn or select on the zoo's images (AdaMerging, aTLAS, TALL masks' validation search)."""
    return not registry.get(method).reads_data


def method_card(method: str) -> str:
    """Markdown shown beside a method's controls: what it does, its formula and its paper."""
    m: Method = registry.get(method)
    kind = "data-free: releasing a slider re-runs it" if is_live(method) else \
        "reads the zoo's images: press Run (progress and status show above the results)"
    per_task = " It gives one model per task (the task id picks the mask)." if m.per_task else (
        f" **At inference it {m.inference_note}**: its result is not one state dict." if m.inference else "")
    return (f"### {m.title}\n{m.summary}{per_task}\n\n**Formula:** `{m.formula}`\n\n"
            f"**Paper:** {m.paper}\n\n*{kind}.*")


def params_from_values(method: str, values: Sequence[Any]) -> dict[str, Any]:
    """The validated parameters of `method` from the flat list of every control's value (in `controls()`
    order). Out-of-range or mistyped values raise ValueError naming the parameter and the allowed range."""
    every = controls()
    if len(values) != len(every):
        raise ValueError(f"expected {len(every)} control values, got {len(values)}")
    given = {c.param.name: _coerce(c.param, v) for c, v in zip(every, values) if c.method == method}
    return registry.get(method).resolve(given)


def value_note(c: Control, value: Any) -> str:
    """The status line after Enter in a number box of a method that runs on Run only: the value is kept, or the
    range message (ValueError) when it is out of range."""
    checked = c.param.validate(_coerce(c.param, value))
    return f"{c.param.name} = {checked} is set: press **Run** to start {c.method}."


def _coerce(p: Param, value: Any) -> Any:
    """Widgets send floats for integer sliders and None for emptied number boxes: map those back."""
    if value is None or value == "":
        raise ValueError(f"parameter {p.name!r} is empty; allowed {p.describe_range()}")
    if p.type is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value
