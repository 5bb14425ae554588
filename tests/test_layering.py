"""Dependencies run one way: no module of the library imports a layer above it, and function-local imports of the
library's own modules (which can hide a cycle) appear only in the CLI commands, which load lazily to start fast.
A layer is a top-level name, or "package.module" where a package puts one module lower than itself."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "explorer"
# Lowest first; a module may import its own layer and the ones below. The demo zoo's loader and data (and so its
# package's __init__, which importing them runs) sit at the zoo layer, which registers them; its tools sit higher.
LAYERS = [("checks", "device", "weights", "engines", "quick", "registry", "layouts"),
          ("zoo", "demozoo.__init__", "demozoo.zoo", "demozoo.data"), ("taskvec", "result"),
          ("inference",),
          ("methods", "security"), ("merging", "evaluate", "sweep", "stream"),
          ("tuning", "analysis", "runs", "interop"),
          ("demozoo",), ("plots", "figure_catalog", "notebook", "report", "space"), ("app",),
          ("commands", "cli", "__main__", "__init__")]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def layer(parts: list[str]) -> str:
    """The layer of module explorer.<parts>: "package.module" where LAYERS lists it, else its top-level name."""
    sub = ".".join(parts[:2])
    return sub if sub in RANK else parts[0] if parts else "__init__"


class _Imports(ast.NodeVisitor):
    """Collects (layer of explorer imported, inside a function?) for one file."""

    def __init__(self, package: list[str]):
        self.package, self.depth, self.found = package, 0, []

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package[:len(self.package) - (node.level - 1)]
            parts = base + (node.module.split(".") if node.module else [node.names[0].name])
        else:
            parts = (node.module or "").split(".")
        if parts[0] == "explorer":
            self.found.append((layer(parts[1:]), self.depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            parts = alias.name.split(".")
            if parts[0] == "explorer":
                self.found.append((layer(parts[1:]), self.depth > 0))


def imports(path: Path) -> list[tuple[str, bool]]:
    """(layer of explorer the file imports, whether the import sits inside a function)."""
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    visitor = _Imports(parts if path.name == "__init__.py" else parts[:-1])
    visitor.visit(ast.parse(path.read_text()))
    return visitor.found


def test_the_check_sees_a_function_local_import_from_above():
    visitor = _Imports(["explorer", "zoo"])
    visitor.visit(ast.parse("from ..taskvec import TaskVectors\ndef f():\n    from ..evaluate import evaluate\n"))
    assert visitor.found == [("taskvec", False), ("evaluate", True)]


def test_a_sub_layer_ranks_its_module_alone():
    visitor = _Imports(["explorer", "zoo"])
    visitor.visit(ast.parse("from ..demozoo.zoo import DemoZoo\nfrom ..demozoo import build\n"
                            "import explorer.demozoo.data\n"))
    assert visitor.found == [("demozoo.zoo", False), ("demozoo", False), ("demozoo.data", False)]
    assert layer(["demozoo", "zoo"]) == "demozoo.zoo" and layer(["demozoo", "card"]) == "demozoo"
    assert RANK["demozoo.zoo"] == RANK["zoo"] < RANK["evaluate"] < RANK["demozoo"]
    for name in (n for n in RANK if "." in n):  # each names a module, and its package's __init__ is no higher
        assert (PKG / name.replace(".", "/")).with_suffix(".py").is_file(), name
        package = name.split(".")[0]
        assert RANK.get(f"{package}.__init__", RANK[package]) <= RANK[name], name


FILES = sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_imports_a_layer_above_it(path):
    rel = path.relative_to(PKG)
    own = layer(list(rel.with_suffix("").parts))
    above = [(name, local) for name, local in imports(path) if RANK[name] > RANK[own]]
    assert not above, f"{rel} ({own}) imports {above} from a higher layer"
    if own != "commands":
        assert not [n for n, local in imports(path) if local], f"{rel} hides an explorer import in a function"
