"""The Model Merging Explorer dashboard, from a checkout: `python app.py [--port 7860] [--zoo demo]`.

The dashboard lives in the package (`explorer.app.ui` lays it out, `explorer.app.serve` starts it), so an
installed `explorer app` serves the same page.
"""
from __future__ import annotations

import sys

from explorer.app.serve import launch, main, parse_args
from explorer.app.ui import build_demo, zoo_choices

__all__ = ["build_demo", "launch", "main", "parse_args", "zoo_choices"]

if __name__ == "__main__":
    sys.exit(main())
