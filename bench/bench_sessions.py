"""Many users on one dashboard: back-to-back sessions, and a classroom whose users read the plots between moves.

Run: .venv/bin/python bench/bench_sessions.py [--scenario backtoback|think|all] [--users 16 32] [--seconds 120]
         [--compare ecbcdd8] [--zoo demo] [--out bench/sessions]

Each scenario starts the dashboard as its own process on 127.0.0.1 (loopback only), with its default settings, and
begins once the dashboard says its workers are warm (the merge kernels compiled, as before a class).
- backtoback: `--sessions` (8) gradio_client sessions press Run with their own method and the next slider value,
  again and again, for `--seconds` (60).
- think: for each count in `--users`, users each move one slider of Task Arithmetic, TIES, DARE, magnitude,
  Breadcrumbs or Consensus to a random value of the slider's grid, wait for the reply, read for a random 2-6 s
  (`--think`), and move again, for `--seconds` (120). Each user first reads the page it opened for such a time,
  so the users do not all press at the same instant (back to back is that case).
  Whether a reply first said "N ahead of you" is recorded.
`--compare REV` runs the back-to-back scenario on the code of git revision REV first (a temporary worktree, with
`--threads 1`, how it was measured before), so before and after come from one run of the bench.
Afterwards every reply is checked: its accuracy table must equal the library's for that user's own settings (merge +
evaluate on the same live subset), and its run label must be the session's own next run (no state leaking between
sessions: a run of another session in its history would change the numbering).
Prints requests, errors, mismatches, leaks and p50/p95/max latency per scenario, writes them to `<out>.json` and
draws latency against users to `<out>.png` (and .html); exits 1 when anything failed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "localhost,127.0.0.1"

# Back to back: one slider per session's method, and the values it is moved through (cycled).
SLIDERS = [("task_arithmetic", "scale", [0.1, 0.2, 0.3, 0.4, 0.5]), ("ties", "density", [0.1, 0.2, 0.3, 0.5]),
           ("dare", "drop", [0.1, 0.3, 0.5, 0.7]), ("magnitude", "density", [0.1, 0.2, 0.4]),
           ("breadcrumbs", "keep", [0.1, 0.15, 0.2]), ("consensus", "k", [1, 2, 3]),
           ("lines", "beta", [0.0, 0.5, 1.0]), ("emr", None, [None])]
# A classroom: the slider each user moves, to random values of its grid.
CLASS = [("task_arithmetic", "scale"), ("ties", "density"), ("dare", "drop"), ("magnitude", "density"),
         ("breadcrumbs", "keep"), ("consensus", "k")]
BUSY = "ahead of you"
RUN = re.compile(r"Run #(\d+) (\w+)\(")  # the status line's run label


@dataclass
class Session:
    method: str
    param: str | None
    values: list
    calls: list = field(default_factory=list)   # (params, seconds, table, (run, method), said busy, started)
    errors: list = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(zoo: str, root: Path = ROOT, extra: tuple[str, ...] = (),
                 warm: bool = False) -> tuple[subprocess.Popen, str]:
    """The dashboard of checkout `root` on a free loopback port; returns once its page answers (with `warm`: once
    it also says its workers are warm, as a teacher starts it before the class comes in)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, str(root / "app.py"), "--host", "127.0.0.1", "--port", str(port),
                             "--zoo", zoo, *extra], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    said: list[str] = []
    threading.Thread(target=lambda: said.extend(proc.stdout), daemon=True).start()  # readline until it exits
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                pass
        except OSError:
            time.sleep(0.2)
            continue
        if not warm or any(line.startswith("Workers warm") for line in said):
            return proc, url
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("the dashboard did not answer (or warm up) within 300 s")


def run_args(zoo: str, tasks: list[str], method: str, params: dict) -> list:
    """The /run endpoint's inputs: zoo, experts, method and every control's value (defaults, then `params`)."""
    from explorer.app import controls

    values = [params.get(c.param.name, c.param.default) if c.method == method else c.param.default
              for c in controls.controls()]
    return [zoo, tasks, method, *values]


def grid(method: str, param: str) -> list:
    """Every value the slider of `method`'s `param` can take."""
    from explorer.methods import registry

    p = next(p for p in registry.get(method).params if p.name == param)
    steps = round((p.high - p.low) / p.step)
    return [p.type(round(p.low + i * p.step, 6)) for i in range(steps + 1)]


def connect(url: str, tries: int = 5):
    """A gradio_client session (its first request reads the API description: slow on a loaded machine)."""
    from gradio_client import Client

    for attempt in range(tries):
        try:
            return Client(url, verbose=False, httpx_kwargs={"timeout": 120})
        except Exception:  # a timeout while the server is busy: try again
            if attempt == tries - 1:
                raise
            time.sleep(2)


def press(client, session: Session, zoo: str, tasks: list[str], params: dict) -> None:
    """One Run with `params`; the reply (or the error) is recorded with its latency."""
    start = time.perf_counter()
    try:
        job = client.submit(*run_args(zoo, tasks, session.method, params), api_name="/run")
        out = job.result(timeout=300)
        seconds = time.perf_counter() - start
        status, table = str(out[0]), out[1]
        if status.startswith("⚠️"):
            raise RuntimeError(status)
        run = RUN.search(status)
        if run is None:
            raise RuntimeError(f"no run label in the status: {status[:120]!r}")
        busy = any(BUSY in str(o[0]) for o in job.outputs()[:-1])
        session.calls.append((params, seconds, table, (int(run[1]), run[2]), busy, start))
    except Exception as err:  # a failed request is what this benchmark counts
        session.errors.append(f"{type(err).__name__}: {err}")


def drive(session: Session, url: str, zoo: str, tasks: list[str], until: float, think: tuple[float, float] | None,
          rng: random.Random) -> None:
    """Move the session's slider until `until`: the next value at once (back to back), or a random value after
    reading for a random `think` seconds (the first view too: users open the page, read it, then move)."""
    try:
        client = connect(url)
    except Exception as err:  # a session that cannot connect counts as an error
        session.errors.append(f"connect: {type(err).__name__}: {err}")
        return
    i = 0
    if think is not None:
        time.sleep(rng.uniform(*think))
    while time.monotonic() < until:
        value = session.values[i % len(session.values)] if think is None else rng.choice(session.values)
        press(client, session, zoo, tasks, {} if session.param is None else {session.param: value})
        i += 1
        if think is not None:
            time.sleep(rng.uniform(*think))


def check(sessions: list[Session], zoo_name: str) -> tuple[int, int]:
    """(mismatches, leaks): replies whose table differs from the library's for that session's settings, and
    replies whose run is not the session's own next one (`#N method(`: another method, or a number that counts
    runs of other sessions)."""
    import explorer as ex
    from explorer.app.handlers import LIVE_LIMIT
    from explorer.evaluate import percent

    zoo = ex.load_zoo(zoo_name)
    tv, expected, mismatches, leaks = ex.task_vectors(zoo), {}, 0, 0
    for s in sessions:
        for i, (params, _, table, labels, *_) in enumerate(s.calls):
            key = (s.method, tuple(sorted(params.items())))
            if key not in expected:
                scores = ex.evaluate(zoo, ex.merge(tv, s.method, **params), split="test", limit=LIVE_LIMIT).table
                expected[key] = [[str(v) for v in row] for row in percent(scores).values.tolist()]
            mismatches += [[str(v) for v in row] for row in table["data"]] != expected[key]
            leaks += labels != (i + 1, s.method)  # its own method, numbered in this session's history alone
    return mismatches, leaks


def scenario(name: str, sessions: list[Session], zoo: str, seconds: float, think: tuple[float, float] | None,
             root: Path = ROOT, extra: tuple[str, ...] = ()) -> dict:
    """Start a dashboard, drive `sessions` at it for `seconds`, check every reply; the figures as a dict."""
    import explorer as ex

    tasks = ex.load_zoo(zoo).tasks
    began = time.monotonic()
    proc, url = start_server(zoo, root, extra, warm=root == ROOT)  # this checkout says when its workers are warm
    connect(url).predict(*run_args(zoo, tasks, "task_arithmetic", {}), api_name="/run")  # the API read once
    print(f"[{name}] dashboard of {root} up and warm on {url} after {time.monotonic() - began:.1f} s", flush=True)
    try:
        until, rng, t0 = time.monotonic() + seconds, random.Random(0), time.perf_counter()
        workers = [threading.Thread(target=drive, args=(s, url, zoo, tasks, until, think,
                                                        random.Random(rng.random()))) for s in sessions]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=seconds + 600)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    mismatches, leaks = check(sessions, zoo)
    times = sorted(t for s in sessions for _, t, *_ in s.calls)
    errors = [e for s in sessions for e in s.errors]
    q = statistics.quantiles(times, n=100) if len(times) > 1 else [float("nan")] * 99
    figures = {"scenario": name, "users": len(sessions), "seconds": seconds, "think": think, "requests": len(times),
               "errors": len(errors), "mismatches": mismatches, "leaks": leaks, "p50": q[49], "p95": q[94],
               "max": max(times, default=float("nan")),
               "said_busy": sum(c[4] for s in sessions for c in s.calls), "code": str(root),
               "by_method": {m: p95(sorted(c[1] for s in sessions if s.method == m for c in s.calls))
                             for m in dict.fromkeys(s.method for s in sessions)},
               "by_third": [p95(sorted(c[1] for s in sessions for c in s.calls if int(3 * (c[5] - t0) / seconds) == k))
                            for k in range(3)]}
    print(f"[{name}] users {len(sessions)}, {seconds:.0f} s: requests {len(times)}, errors {len(errors)}, "
          f"mismatches {mismatches}, leaks {leaks}; latency p50 {q[49]:.2f} s, p95 {q[94]:.2f} s, "
          f"max {figures['max']:.2f} s; replies that first said '{BUSY}': {figures['said_busy']}", flush=True)
    print(f"[{name}] p95 by method {figures['by_method']}; by third of the run {figures['by_third']}")
    for e in errors[:5]:
        print("  error:", e)
    return figures


def p95(times: list[float]) -> float:
    return round(statistics.quantiles(times, n=100)[94], 3) if len(times) > 1 else float("nan")


def worktree(rev: str) -> Path:
    """A temporary checkout of git revision `rev` (removed by git worktree prune once deleted)."""
    path = Path(tempfile.mkdtemp(prefix="bench-before-")) / "code"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), rev], check=True)
    return path


def draw(results: list[dict], out: Path) -> None:
    """Latency (p50, p95, max) against users for the classroom runs, back to back before/after as points."""
    import plotly.graph_objects as go

    from explorer.plots.static import png

    fig = go.Figure()
    think = [r for r in results if r["think"]]
    for stat, dash in (("p50", "solid"), ("p95", "dash"), ("max", "dot")):
        fig.add_trace(go.Scatter(x=[r["users"] for r in think], y=[r[stat] for r in think], mode="lines+markers",
                                 name=f"{stat}, users reading 2-6 s", line={"dash": dash}))
    for r in (r for r in results if not r["think"]):
        fig.add_trace(go.Scatter(x=[r["users"]], y=[r["p95"]], mode="markers", marker={"size": 12, "symbol": "x"},
                                 name=f"p95 back to back ({r['scenario']})"))
    fig.update_layout(title="Dashboard latency against users (demo zoo, 2-core CPU)", xaxis_title="users",
                      yaxis_title="seconds from Run to reply", template="plotly_white", width=900, height=520)
    fig.write_html(out.with_suffix(".html"), include_plotlyjs=True)
    out.with_suffix(".png").write_bytes(png(fig))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("backtoback", "think", "all"), default="all")
    parser.add_argument("--sessions", type=int, default=8, help="back-to-back sessions")
    parser.add_argument("--users", type=int, nargs="+", default=[16, 32], help="classroom sizes")
    parser.add_argument("--seconds", type=float, default=120.0, help="classroom duration per size")
    parser.add_argument("--backtoback-seconds", type=float, default=60.0)
    parser.add_argument("--think", type=float, nargs=2, default=(2.0, 6.0), help="reading time range, seconds")
    parser.add_argument("--compare", metavar="REV", help="also run back to back on the code of git revision REV")
    parser.add_argument("--zoo", default="demo")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "sessions")
    parser.add_argument("--server-args", default="", help="flags for this checkout's dashboard, e.g. '--threads 1'")
    args = parser.parse_args()
    mine = tuple(shlex.split(args.server_args))
    results = []
    if args.scenario in ("backtoback", "all"):
        runs = [("after", ROOT, mine)]
        if args.compare:
            runs.insert(0, (f"before ({args.compare})", worktree(args.compare), ("--threads", "1")))
        for name, root, extra in runs:
            sessions = [Session(*SLIDERS[i % len(SLIDERS)]) for i in range(args.sessions)]
            results.append(scenario(name, sessions, args.zoo, args.backtoback_seconds, None, root, extra))
            if root != ROOT:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(root)], check=False)
    if args.scenario in ("think", "all"):
        for n in args.users:
            sessions = [Session(m, p, grid(m, p)) for m, p in (CLASS[i % len(CLASS)] for i in range(n))]
            results.append(scenario(f"{n} users reading", sessions, args.zoo, args.seconds, tuple(args.think),
                                    ROOT, mine))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    if any(r["think"] for r in results):
        draw(results, args.out)
    print(f"figures: {args.out.with_suffix('.json')}", flush=True)
    return 1 if any(r["errors"] or r["mismatches"] or r["leaks"] or not r["requests"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
