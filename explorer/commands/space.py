"""`explorer space`: write a folder that runs as a Hugging Face Space (gradio SDK, CPU) serving the dashboard."""
from __future__ import annotations


def add_parser(sub) -> None:
    parser = sub.add_parser("space", help="write a folder that runs as a Hugging Face Space", description="Write a "
                            "folder that runs as a Hugging Face Space on CPU: README.md with the Space's front matter, "
                            "app.py (python app.py, port 7860), a pinned requirements.txt, the explorer package and "
                            "the zoo. Publish it with: huggingface-cli upload <user>/<space> <dir> --repo-type space")
    parser.add_argument("dir", help="the folder to write (new or empty; --force replaces what it holds)")
    parser.add_argument("--zoo", default="demo", help="the zoo the Space serves: demo (default, inside the package), "
                        "a folder of checkpoints, a demo-zoo build, or a zoo file (copied in with the files it names)")
    parser.add_argument("--force", action="store_true", help="replace the contents of a non-empty folder")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..space import build_space

    out = build_space(args.dir, zoo=args.zoo, force=args.force)
    print(f"wrote the Space to {out}/ (try it: cd {out} && pip install -r requirements.txt && python app.py)")
    return 0
