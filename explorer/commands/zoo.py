"""`explorer zoo ...`: zoo maintenance verbs (build-demo, card, convert), each from its own module."""
from __future__ import annotations

import importlib

# Each module defines `add_verbs(subparsers)`.
VERB_MODULES = ("zoo_demo", "zoo_convert")


def add_parser(sub) -> None:
    parser = sub.add_parser("zoo", help="build, describe and convert zoos")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in VERB_MODULES:
        importlib.import_module(f"explorer.commands.{name}").add_verbs(verbs)
