"""Dashboard responsiveness on the demo zoo: start-up time and slider-release-to-update latency.

Run: .venv/bin/python bench/bench_app.py [--zoo demo] [--threads 1] [--repeats 8] [--no-browser]
1. start-up: seconds from launching `python app.py` to its first HTTP 200 (imports included; budget 15 s);
2. live update, server side: merge + evaluate (the live subset) + every run figure serialised to JSON, for
   TIES (density) and task arithmetic (scale) at several slider positions (budget 0.5 s);
3. live update, in the browser (when /usr/bin/chromium exists): from releasing the TIES density slider (typing a
   value and leaving the box) to the page showing the new run's table and figures.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def startup(zoo: str, threads: int) -> float:
    """Seconds from starting `python app.py` to the first HTTP 200 on its page."""
    port = free_port()
    env = {**os.environ, "NO_PROXY": "localhost,127.0.0.1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--zoo", zoo,
                             "--threads", str(threads)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as reply:
                    if reply.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the dashboard did not answer within 120 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def server_side(zoo: str, repeats: int) -> dict[str, list[float]]:
    """Seconds per live update (merge + evaluation + figure JSON), per method, after the caches are warm: wall
    time, and CPU time of this process (what the wall time is on an otherwise idle core)."""
    from explorer.app import cache, handlers

    handlers.warm(zoo)
    tasks, times = cache.zoo(zoo).tasks, {}
    for method, param, values in (("ties", "density", (0.1, 0.9)), ("task_arithmetic", "scale", (0.1, 1.0))):
        state, wall, cpu = handlers.new_state(), [], []
        for i in range(repeats):
            value = round(values[0] + (values[1] - values[0]) * i / max(1, repeats - 1), 2)
            start, start_cpu = time.perf_counter(), time.process_time()
            state, view = handlers.run(state, zoo, tasks, method, {param: value})
            [fig.to_json() for fig in view.figures.values() if fig is not None]
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        times[f"{method} (wall)"], times[f"{method} (cpu)"] = wall, cpu
    return times


# the new run's label in the status box, and its accuracy figure drawn
SHOWN = """label => document.querySelector('#status').innerText.includes(label)
    && document.querySelector('#accuracy .js-plotly-plot')?._fullLayout?.title?.text?.includes('ties')"""


def browser(zoo: str, repeats: int) -> list[float]:
    """Seconds from releasing the TIES density slider to the page showing that run's status and table."""
    from playwright.sync_api import expect, sync_playwright

    from explorer.app import serve, ui

    demo, port = ui.build_demo(zoo), free_port()
    serve.launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    times = []
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = chromium.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(f"http://127.0.0.1:{port}", wait_until="load")
        expect(page.locator("#status")).to_contain_text("Run #1", timeout=300_000)
        page.locator("#method input").click()
        page.get_by_role("option", name="TIES").click()
        expect(page.locator("#status")).to_contain_text("#2 ties(", timeout=60_000)
        box = page.locator("#param-ties-density input[type=number]")
        for i in range(repeats):
            density = round(0.15 + 0.7 * i / max(1, repeats - 1), 2)
            box.fill(str(density))
            start = time.perf_counter()
            box.press("Tab")
            # checked on every animation frame (expect() polls at up to 1 s intervals, too coarse here)
            page.wait_for_function(SHOWN, arg=f"#{i + 3} ties(density={density:g},", polling="raf", timeout=60_000)
            times.append(time.perf_counter() - start)
        chromium.close()
    demo.close()
    return times


def show(name: str, times: list[float]) -> None:
    print(f"{name:<46} median {statistics.median(times):.3f} s   max {max(times):.3f} s   (n={len(times)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="demo", help="demo, a named zoo or a demo-zoo folder")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: best on a shared CPU)")
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--no-browser", action="store_true", help="skip the browser measurement")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"start-up to first HTTP 200: {startup(args.zoo, args.threads):.2f} s (budget 15 s)")
    for method, times in server_side(args.zoo, args.repeats).items():
        show(f"live update, server, {method}", times)
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if not args.no_browser and Path("/usr/bin/chromium").exists():
        show("live update, browser, ties", browser(args.zoo, args.repeats))
    print("budget for a live update: 0.5 s (data-free methods, demo zoo, live subset of the test split)")


if __name__ == "__main__":
    main()
