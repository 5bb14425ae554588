"""The methods table, generated from the registry's declarations (CLI text and README markdown)."""
from __future__ import annotations

from .registry import Method, all_methods


def _fmt(value) -> str:
    return "-" if value is None else str(value)


def methods_text(methods: list[Method] | None = None) -> str:
    """A plain-text listing: each method, its paper and formula, then one line per parameter."""
    lines = []
    for m in methods or all_methods():
        tags = [t for t, on in (("needs data", m.needs_data), (m.inference_note, bool(m.inference_note))) if on]
        lines.append(f"{m.name}  -  {m.title}" + (f"  [{', '.join(tags)}]" if tags else ""))
        lines.append(f"    paper:   {m.paper}")
        lines.append(f"    formula: {m.formula}")
        for p in m.params:
            lines.append(f"    {p.name:<11} {p.type.__name__:<5} default {_fmt(p.default):<16} "
                         f"range {p.describe_range():<28} paper {_fmt(p.paper):<16} {p.help}")
        if not m.params:
            lines.append("    (no parameters)")
        lines.append("")
    return "\n".join(lines)


def methods_markdown(methods: list[Method] | None = None) -> str:
    """A markdown table for the README: method, paper, parameters with default and range."""
    rows = ["| method | what it does | parameters (default, range) | paper |", "|---|---|---|---|"]
    for m in methods or all_methods():
        params = "<br>".join(f"`{p.name}`={_fmt(p.default)} {p.describe_range()}" for p in m.params) or "none"
        note = f" *At inference it {m.inference_note}.*" if m.inference else ""
        rows.append(f"| `{m.name}` | {m.title}: {m.summary}{note} | {params} | {m.paper} |")
    return "\n".join(rows)
