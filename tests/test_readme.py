"""The README's generated parts stay in sync with the code."""
from __future__ import annotations

from pathlib import Path

from explorer.methods.table import methods_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    block = lines[lines.index("```bash") + 1: lines.index("```")]
    assert [line.split()[0:2] for line in block] == [["make", "app"], ["make", "test"]]


def test_readme_methods_table_is_the_generated_one():
    text = README.read_text()
    table = text.split("<!-- methods:start -->\n")[1].split("\n<!-- methods:end -->")[0]
    assert table == methods_markdown(), "regenerate it with `explorer methods --markdown`"
