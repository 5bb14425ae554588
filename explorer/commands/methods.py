"""`explorer methods`: every registered method with its parameters, ranges and defaults."""
from __future__ import annotations


def add_parser(sub) -> None:
    parser = sub.add_parser("methods", help="list merge methods and their parameters")
    parser.add_argument("--markdown", action="store_true", help="print the README's markdown table instead")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..methods.table import methods_markdown, methods_text

    print(methods_markdown() if args.markdown else methods_text())
    return 0
