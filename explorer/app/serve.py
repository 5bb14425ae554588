"""Start the dashboard: `explorer app`, `python app.py` and `make app` all come here.

    explorer app [--host 127.0.0.1] [--port 7860] [--zoo demo] [--workers N] [--threads N] [--share]

Without --host / --port it listens where GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say (Hugging Face Spaces set them).
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import threading
import time
from typing import Any

import gradio as gr

from ..methods.engine import jit
from . import handlers, scheduler
from .ui import CSS, HEAD, build_demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Model Merging Explorer dashboard (offline by default).")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1", help="address to "
                        "listen on (0.0.0.0: every interface; default $GRADIO_SERVER_NAME, as Spaces set it, else "
                        "127.0.0.1)")
    parser.add_argument("--port", type=int, default=os.environ.get("GRADIO_SERVER_PORT") or "7860", help="port "
                        "(default $GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--zoo", default="demo", help="zoo to open: demo, a named zoo (explorer zoos), a "
                        "folder of checkpoints (base + one per task), a zoo file (JSON/YAML) or a demo-zoo build")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs the "
                        "internet; off by default)")
    parser.add_argument("--workers", type=int, default=None, help="runs computed at once; the others wait their "
                        "turn, first come first served, and see how many are ahead (default: one per CPU core, "
                        "at most 4)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads of each computation "
                        "(default: the cores shared by the workers, at least 1: more threads than cores make every "
                        "parallel op wait for a descheduled thread)")
    return parser.parse_args(argv)


def worker_warmup(zoo: str) -> list:
    """The steps each worker runs while idle: the compiled merge kernels on this zoo (torch.compile traces them again
    in every thread; the numba loops are process-wide and compile in `warm`'s thread, not a worker's)."""
    try:
        return handlers.warm_steps(zoo)
    except Exception as err:  # noqa: BLE001 - a zoo that does not load says so on the page
        logging.getLogger(__name__).warning("no warm-up for zoo %r (%s: %s)", zoo, type(err).__name__, err)
        return []


def warm(zoo: str) -> None:
    """Fill the shared caches in the background, so the first page view is fast; errors show on page load. Then the
    merges' numba loops compile (or load from numba's cache) in this thread, not in a worker a user's run waits for:
    on a cold start (a Space's first boot) that takes 30 s, which the first view no longer waits behind."""
    start = time.monotonic()
    try:
        handlers.warm(zoo)
        jit.warm()
    except Exception as err:  # noqa: BLE001 - the page reports a zoo that does not load; the log says why here
        logging.getLogger(__name__).warning("warming the caches for zoo %r failed (%s: %s); the page shows the "
                                            "error when it loads", zoo, type(err).__name__, err)
    if scheduler.QUEUE.wait_warm():
        print(f"Workers warm (merge kernels compiled on {scheduler.QUEUE.workers} workers) after "
              f"{time.monotonic() - start:.0f} s", flush=True)


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           **kwargs: Any) -> tuple:
    """Start serving `demo` (local connections never go through a proxy)."""
    local = "localhost,127.0.0.1"
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), local]))
    return demo.launch(server_name=host, server_port=port, share=share, css=CSS, head=HEAD,
                       footer_links=["gradio", "settings"], max_threads=scheduler.QUEUE.limit + 16, **kwargs)


def start(demo: gr.Blocks, host: str, port: int, share: bool, tries: int = 3) -> None:
    """Launch without blocking. Gradio gives up when its own first request to the page takes over 3 s (a loaded
    machine), saying localhost is not accessible: close and try again, up to `tries` times."""
    for attempt in range(tries):
        try:
            launch(demo, host, port, share, prevent_thread_lock=True, quiet=True)
            return
        except ValueError as err:
            if "localhost is not accessible" not in str(err) or attempt == tries - 1:
                raise
            demo.close()


def port_taken(host: str, port: int) -> str:
    """The one line printed when another server holds the port."""
    return (f"explorer app: port {port} on {host} is already in use (another dashboard?). Stop it, or choose "
            f"another port: make app PORT={port + 1}, or explorer app --port {port + 1}")


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, start serving and block until interrupted; 2 when the port is taken."""
    args = parse_args(argv)
    workers = args.workers or scheduler.default_workers()
    scheduler.QUEUE.configure(workers, warmup=functools.partial(worker_warmup, args.zoo))
    import torch

    # 2 workers on 2 cores with torch's default of 2 threads each: 16 users' p50 0.84 s, p95 1.7 s after the
    # first third; one thread each: 0.60 s, 1.05-1.3 s (bench/bench_sessions.py --server-args "--threads 1").
    torch.set_num_threads(args.threads or max(1, torch.get_num_threads() // workers))
    demo = build_demo(args.zoo)
    try:
        start(demo, args.host, args.port, args.share)
    except OSError as err:
        if "port" not in str(err).lower():
            raise
        print(port_taken(args.host, args.port), file=sys.stderr)
        return 2
    print(f"Model Merging Explorer on {demo.local_url} (zoo {args.zoo}; Ctrl+C stops it)", flush=True)
    threading.Thread(target=warm, args=(args.zoo,), name="explorer-warm", daemon=True).start()  # once serving
    demo.block_thread()
    return 0
