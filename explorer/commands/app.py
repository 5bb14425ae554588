"""`explorer app`: start the dashboard (the repository's app.py) on the demo zoo, offline."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

APP = Path(__file__).resolve().parents[2] / "app.py"


def add_parser(sub) -> None:
    parser = sub.add_parser("app", help="start the dashboard (http://127.0.0.1:7860 by default)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--zoo", default="demo", help="zoo to open (default: demo)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.set_defaults(func=run)


def load_app() -> ModuleType:
    """The repository's app.py as a module (registered in sys.modules, as its dataclasses need)."""
    if not APP.is_file():
        raise FileNotFoundError(f"the dashboard lives in the repository's app.py ({APP}), which is missing; run "
                                "`explorer app` from a clone of the repository (pip install -e .)")
    spec = importlib.util.spec_from_file_location("explorer_dashboard", APP)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(args) -> int:
    module = load_app()
    argv = ["--host", args.host, "--port", str(args.port), "--zoo", args.zoo] + (["--share"] if args.share else [])
    argv += ["--threads", str(args.threads)] if args.threads else []
    module.main(argv)
    return 0
