"""Concurrent sessions: 8 gradio_client sessions move sliders of different methods on one dashboard for a minute.

Run: .venv/bin/python bench/bench_sessions.py [--sessions 8] [--seconds 60] [--zoo demo] [--threads 1]
The dashboard runs as its own process on 127.0.0.1 (loopback only). Each session presses Run with its method and a
new slider value, again and again until the time is up. Afterwards every reply is checked: its accuracy table must
equal the library's for that session's own settings (merge + evaluate on the same live subset), and its history must
hold only its own runs (no state leaking between sessions). Prints sessions, requests, errors, mismatches, leaks and
the p50/p95 latency; exits 1 when anything failed.
"""
from __future__ import annotations

import argparse
import itertools
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "localhost,127.0.0.1"

# One slider per session's method, and the values it is moved through (cycled).
SLIDERS = [("task_arithmetic", "scale", [0.1, 0.2, 0.3, 0.4, 0.5]), ("ties", "density", [0.1, 0.2, 0.3, 0.5]),
           ("dare", "drop", [0.1, 0.3, 0.5, 0.7]), ("magnitude", "density", [0.1, 0.2, 0.4]),
           ("breadcrumbs", "keep", [0.1, 0.15, 0.2]), ("consensus", "k", [1, 2, 3]),
           ("lines", "beta", [0.0, 0.5, 1.0]), ("emr", None, [None])]


@dataclass
class Session:
    method: str
    param: str | None
    values: list
    calls: list = field(default_factory=list)   # (params, seconds, table, history labels)
    errors: list = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(zoo: str, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port),
                             "--zoo", zoo, "--threads", str(threads)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the dashboard did not answer within 120 s")


def run_args(zoo: str, tasks: list[str], method: str, params: dict) -> list:
    """The /run endpoint's inputs: zoo, experts, method and every control's value (defaults, then `params`)."""
    from explorer.app import controls

    values = [params.get(c.param.name, c.param.default) if c.method == method else c.param.default
              for c in controls.controls()]
    return [zoo, tasks, method, *values]


def connect(url: str, tries: int = 5):
    """A gradio_client session (its first request reads the API description: slow on a loaded machine)."""
    from gradio_client import Client

    for attempt in range(tries):
        try:
            return Client(url, verbose=False, httpx_kwargs={"timeout": 60})
        except Exception:  # a timeout while the server is busy: try again
            if attempt == tries - 1:
                raise
            time.sleep(2)


def drive(session: Session, url: str, zoo: str, tasks: list[str], until: float) -> None:
    """Press Run with the next slider value until `until`; record each reply (or the error)."""
    try:
        client = connect(url)
    except Exception as err:  # a session that cannot connect counts as an error
        session.errors.append(f"connect: {type(err).__name__}: {err}")
        return
    for value in itertools.cycle(session.values):
        if time.monotonic() >= until:
            return
        params = {} if session.param is None else {session.param: value}
        start = time.perf_counter()
        try:
            out = client.predict(*run_args(zoo, tasks, session.method, params), api_name="/run")
            status, table, history = out[0], out[1], out[7]
            if str(status).startswith("⚠️"):
                raise RuntimeError(status)
            session.calls.append((params, time.perf_counter() - start, table, [row[0] for row in history["data"]]))
        except Exception as err:  # a failed request is what this benchmark counts
            session.errors.append(f"{type(err).__name__}: {err}")


def check(sessions: list[Session], zoo_name: str) -> tuple[int, int]:
    """(mismatches, leaks): replies whose table differs from the library's for that session's settings, and
    histories holding a run of another method (or more runs than the session made)."""
    import explorer as ex
    from explorer.app.handlers import LIVE_LIMIT
    from explorer.evaluate import percent

    zoo = ex.load_zoo(zoo_name)
    tv, expected, mismatches, leaks = ex.task_vectors(zoo), {}, 0, 0
    for s in sessions:
        for i, (params, _, table, labels) in enumerate(s.calls):
            key = (s.method, tuple(sorted(params.items())))
            if key not in expected:
                scores = ex.evaluate(zoo, ex.merge(tv, s.method, **params), split="test", limit=LIVE_LIMIT).table
                expected[key] = percent(scores).values.tolist()
            got = [[str(v) for v in row] for row in table["data"]]
            mismatches += got != [[str(v) for v in row] for row in expected[key]]
            leaks += any(f" {s.method}(" not in label for label in labels) or len(labels) > i + 1
    return mismatches, leaks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--zoo", default="demo")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the dashboard process")
    args = parser.parse_args()
    import explorer as ex

    tasks = ex.load_zoo(args.zoo).tasks
    began = time.monotonic()
    proc, url = start_server(args.zoo, args.threads)
    connect(url)  # the first client fills the server's caches of the page and the API description
    print(f"dashboard up on {url} after {time.monotonic() - began:.1f} s", flush=True)
    try:
        sessions = [Session(*SLIDERS[i % len(SLIDERS)]) for i in range(args.sessions)]
        until = time.monotonic() + args.seconds
        workers = [threading.Thread(target=drive, args=(s, url, args.zoo, tasks, until)) for s in sessions]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=args.seconds + 300)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"load phase done: {sum(len(s.calls) for s in sessions)} replies; checking them against the library",
          flush=True)
    mismatches, leaks = check(sessions, args.zoo)
    times = sorted(t for s in sessions for _, t, _, _ in s.calls)
    errors = [e for s in sessions for e in s.errors]
    p50, p95 = (statistics.quantiles(times, n=100)[k] for k in (49, 94)) if len(times) > 1 else (float("nan"),) * 2
    print(f"sessions {len(sessions)} ({', '.join(s.method for s in sessions)}), {args.seconds:.0f} s, "
          f"zoo {args.zoo}, loopback {url}")
    print(f"requests {len(times)}, errors {len(errors)}, mismatches vs library {mismatches}, leaks {leaks}")
    print(f"latency p50 {p50:.2f} s, p95 {p95:.2f} s (queueing included: merges run one at a time)")
    for e in errors[:5]:
        print("  error:", e)
    return 1 if errors or mismatches or leaks or not times else 0


if __name__ == "__main__":
    sys.exit(main())
