"""`explorer app`: start the dashboard (`explorer.app.serve`) on the demo zoo, offline."""
from __future__ import annotations

import os


def add_parser(sub) -> None:
    parser = sub.add_parser("app", help="start the dashboard (http://127.0.0.1:7860 by default)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1", help="address to "
                        "listen on (0.0.0.0: every interface; default $GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=os.environ.get("GRADIO_SERVER_PORT") or "7860", help="port "
                        "(default $GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--zoo", default="demo", help="zoo to open (default: demo): a named zoo, a "
                        "folder of checkpoints (base + one per task: open_clip, Hugging Face CLIP, TALL) or a zoo file "
                        "(JSON/YAML)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.set_defaults(func=run)


def argv_of(args) -> list[str]:
    """The dashboard's own flags from the parsed `explorer app` ones."""
    argv = ["--host", args.host, "--port", str(args.port), "--zoo", args.zoo] + (["--share"] if args.share else [])
    return argv + (["--threads", str(args.threads)] if args.threads else [])


def run(args) -> int:
    from ..app.serve import main  # gradio loads only for this command

    return main(argv_of(args))
