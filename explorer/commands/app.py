"""`explorer app`: start the dashboard (the repository's app.py) on the demo zoo, offline."""
from __future__ import annotations

import importlib.util
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app.py"


def add_parser(sub) -> None:
    parser = sub.add_parser("app", help="start the dashboard (http://127.0.0.1:7860 by default)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--zoo", default="demo", help="zoo to open (default: demo)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.set_defaults(func=run)


def run(args) -> int:
    if not APP.is_file():
        raise FileNotFoundError(f"the dashboard lives in the repository's app.py ({APP}), which is missing; run "
                                "`explorer app` from a clone of the repository (pip install -e .)")
    spec = importlib.util.spec_from_file_location("explorer_dashboard", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--host", args.host, "--port", str(args.port), "--zoo", args.zoo] + (["--share"] if args.share else [])
    module.main(argv)
    return 0
