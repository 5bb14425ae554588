"""The `explorer` command line: one sub-command per module in `explorer.commands`."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines `add_parser(subparsers)`, which sets `func` on its parser.
COMMANDS = ("methods", "merge", "sweep", "list_zoos", "zoo", "analyse", "report", "export", "space", "app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explorer", description="Model Merging Explorer: merge CLIP experts "
                                     "and look at what happened.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"explorer.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one readable line and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"explorer {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
