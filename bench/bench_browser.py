"""In the browser: from pressing Enter in a slider's number box to the last repaint of what the live run updates.

Run: .venv/bin/python bench/bench_browser.py [--repeats 10] [--zoo demo] [--threads N] [--compare REV]
         [--json out.json]
The dashboard (app.py) runs as its own process on 127.0.0.1; headless Debian Chromium (/usr/bin/chromium) opens
it through Playwright. For TIES `density` and Task Arithmetic `scale` (the method picked in the Method dropdown
first, its run waited for) each repeat types a new value into the slider's number box and presses Enter (the
page's input event: Enter leaves the box, which releases the slider and starts a live run). Everything is timed in
the page with performance.now(): the keydown; Gradio's queue traffic (the /queue/join POST and every SSE message
on /queue/data, read through a wrapped fetch); each `plotly_afterplot` of every Plotly figure (visible or in a
hidden tab) and the animation frame after it; each change of the status text and of the accuracy table. A repeat
ends when the status shows the new run's label (`#N ties(density=...`) and nothing has repainted for --quiet
seconds. Latency = last repaint (plot frame, status or table) minus the keydown. Beside it, per repeat: CPU seconds
of the dashboard process and of Chromium (from /proc), and Chromium's page metrics (script, layout and style time;
DOM nodes, listeners and JS heap, to see what a run leaves behind). Prints per case the median, min and max latency
and the medians of the breakdown; exits 1 when any repeat did not show its new result (its label in the status,
a plot redrawn). Skipped (exit 0) without playwright or /usr/bin/chromium. --visit-tabs opens every result tab
once first: a tab once opened stays mounted, and its figures are then redrawn by every run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "localhost,127.0.0.1"

from bench.bench_sessions import start_server, worktree  # noqa: E402  (after the environment is set)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--no-first-run", "--disable-component-update", "--disable-sync"]
# (method title in the dropdown, method name, elem_id of the slider, parameter, the values typed, one per repeat)
CASES = [("TIES", "ties", "param-ties-density", "density", lambda i: round(0.25 + 0.05 * i, 2)),
         ("Task Arithmetic", "task_arithmetic", "param-task_arithmetic-scale", "scale",
          lambda i: round(0.35 + 0.05 * i, 2))]

# Installed before any page script runs: a log of timestamped events in window.__bb.log.
HOOKS = r"""
(() => {
  const bb = window.__bb = {log: [], last: 0};
  const now = () => performance.now();
  const log = (kind, name, extra) => {
    const t = now();
    bb.log.push({t, kind, name, ...(extra || {})});
    if (kind === "afterplot" || kind === "frame" || kind === "status" || kind === "table") bb.last = t;
  };
  bb.mark = log;
  // the input event: registered first, so it runs before the page's own Enter handler (which blurs the box)
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.target.matches && e.target.matches("input[type=number]"))
      log("input", e.target.closest("[id]")?.id || "");
  }, true);
  // Gradio's queue: the join POST and each SSE message on the data stream
  const realFetch = window.fetch;
  const readSSE = async (body) => {
    const reader = body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      const t = now();
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const chunk = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const line = chunk.split("\n").find((l) => l.startsWith("data:"));
        if (!line) continue;
        let msg = {};
        try { msg = JSON.parse(line.slice(5)); } catch (err) { continue; }
        const out = msg.output || {};
        bb.log.push({t, kind: "sse", name: msg.msg, event_id: msg.event_id, bytes: chunk.length,
                     duration: out.duration, success: msg.success});
      }
    }
  };
  window.fetch = async function (input, init) {
    const url = typeof input === "string" ? input : (input && input.url) || String(input);
    const join = url.includes("/queue/join");
    let fn = null;
    if (join && init && typeof init.body === "string") {
      try { fn = JSON.parse(init.body).fn_index; } catch (err) { fn = null; }
    }
    if (join) log("join_sent", String(fn)); else log("fetch", url.replace(location.origin, "").slice(0, 80));
    const response = await realFetch.apply(this, arguments);
    if (join) log("join_reply", String(fn));
    if (url.includes("/queue/data") && response.body) {
      const [mine, theirs] = response.body.tee();
      readSSE(mine);
      return new Response(theirs, {status: response.status, statusText: response.statusText,
                                   headers: response.headers});
    }
    return response;
  };
  // every Plotly figure: its afterplot event and the next animation frame (when it reaches the screen)
  const visible = (el) => !!(el.offsetParent || el.getClientRects().length);
  const plotName = (el) => el.closest(".block[id]")?.id || el.closest("[id]")?.id || "?";
  let serial = 0;
  const hook = (el) => {
    if (el.__bbHooked || typeof el.on !== "function") return;
    el.__bbHooked = ++serial;
    el.__bbName = plotName(el);
    el.on("plotly_afterplot", () => {
      const vis = visible(el), extra = {visible: vis, connected: el.isConnected, div: el.__bbHooked};
      const name = el.isConnected ? plotName(el) : el.__bbName;
      log("afterplot", name, extra);
      requestAnimationFrame(() => log("frame", name, extra));
    });
    el.on("plotly_relayout", () => log("relayout", el.__bbName, {div: el.__bbHooked}));
  };
  document.addEventListener("focusout", (e) => log("blur", e.target.closest("[id]")?.id || ""), true);
  try {  // main-thread tasks over 50 ms (parsing a reply, drawing a figure)
    new PerformanceObserver((list) => list.getEntries().forEach((e) => bb.log.push(
      {t: e.startTime, kind: "longtask", name: "longtask", ms: e.duration}))).observe({type: "longtask"});
  } catch (err) { /* not supported */ }
  const scan = () => document.querySelectorAll(".js-plotly-plot").forEach(hook);
  // the status text and the accuracy table: logged when their text changes (not the progress timer)
  const texts = {};
  const watch = (name, selector) => {
    const el = document.querySelector(selector);
    if (!el) return;
    const text = el.innerText;
    if (texts[name] !== undefined && texts[name] !== text) log(name, name, {text: text.slice(0, 400)});
    texts[name] = text;
  };
  const observer = new MutationObserver(() => {
    scan();
    watch("status", "#status [data-testid=markdown]");
    watch("table", "#accuracy-table [role=grid], #accuracy-table table");
  });
  const start = () => observer.observe(document.body, {subtree: true, childList: true, characterData: true,
                                                       attributes: true, attributeFilter: ["class"]});
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
  bb.scan = scan;
})();
"""

TABS = ["Accuracy", "Cosine conflicts", "Sign conflicts", "Mask overlaps", "Layer-wise scaling", "Spectra"]
PAINTS = ("frame", "status", "table")  # what counts as a repaint (afterplot is followed by its frame)


def cpu_seconds(server: int) -> tuple[float, float]:
    """CPU seconds (user + system) so far of the dashboard process tree and of this process's other descendants
    (Playwright's driver and Chromium): what each side spent, whatever else the shared machine runs."""
    parents, times = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        pid = int(stat.parent.name)
        parents[pid], times[pid] = int(fields[1]), int(fields[11]) + int(fields[12])

    def tree(root: int) -> set[int]:
        found, grew = {root}, True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in found} - found
            found |= more
            grew = bool(more)
        return found

    tick = os.sysconf("SC_CLK_TCK")
    served = tree(server)
    browser = tree(os.getpid()) - served - {os.getpid()}
    return sum(times.get(p, 0) for p in served) / tick, sum(times.get(p, 0) for p in browser) / tick


METRICS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")  # seconds, cumulative
COUNTS = ("Nodes", "JSEventListeners", "JSHeapUsedSize")  # now


def metrics(cdp) -> dict:
    """Chromium's own counters for the page (DevTools Performance domain)."""
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def quiet(page, label: str, seconds: float, timeout: float) -> bool:
    """Wait until the status shows `label` and nothing repainted for `seconds`; False on timeout."""
    try:
        page.wait_for_function(
            """([label, ms]) => { window.__bb.scan();
                 const s = document.querySelector('#status [data-testid=markdown]');
                 return s && s.innerText.includes(label) && performance.now() - window.__bb.last > ms; }""",
            arg=[label, seconds * 1000], polling=100, timeout=timeout * 1000)
        return True
    except Exception:  # playwright's TimeoutError: the new result never showed
        return False


def status_text(page) -> str:
    return page.locator("#status [data-testid=markdown]").inner_text()


def run_number(page) -> int:
    found = re.findall(r"#(\d+) ", status_text(page))
    return int(found[0]) if found else 0


def pick_method(page, title: str) -> None:
    page.locator("#method input").click()
    page.get_by_role("option", name=re.compile("^" + re.escape(title))).click()


def analyse(log: list[dict], label: str) -> dict:
    """One repeat's timeline, relative to its keydown (ms)."""
    t0 = next(e["t"] for e in log if e["kind"] == "input")
    rel = sorted(({**e, "t": e["t"] - t0} for e in log if e["t"] >= t0), key=lambda e: e["t"])
    paints = [e for e in rel if e["kind"] in PAINTS]
    frames = [e for e in rel if e["kind"] == "frame"]
    status = [e for e in rel if e["kind"] == "status" and label in e.get("text", "")]
    sse = [e for e in rel if e["kind"] == "sse"]

    def first(kind: str, name: str | None = None) -> float | None:
        hit = [e["t"] for e in rel if e["kind"] == kind and (name is None or e["name"] == name)]
        return hit[0] if hit else None

    completed = [e for e in sse if e["name"] == "process_completed"]
    data = [e for e in sse if e["name"] in ("process_generating", "process_completed")]
    took = re.search(r"merge took ([\d.]+) s", status[0]["text"]) if status else None
    return {
        "latency_ms": paints[-1]["t"] if paints else None,
        "join_sent_ms": first("join_sent"),
        "join_reply_ms": first("join_reply"),
        "process_starts_ms": first("sse", "process_starts"),
        "process_completed_ms": completed[-1]["t"] if completed else None,
        "first_data_ms": data[0]["t"] if data else None,
        "handler_s": max((e.get("duration") or 0 for e in data), default=None),
        "data_messages": len(data),
        "reply_bytes": sum(e.get("bytes") or 0 for e in sse),
        "joins": sum(e["kind"] == "join_sent" for e in rel),
        "status_ms": status[0]["t"] if status else None,
        "first_plot_frame_ms": frames[0]["t"] if frames else None,
        "last_plot_frame_ms": frames[-1]["t"] if frames else None,
        "plot_repaints": len(frames),
        "plots_repainted": sorted({e["name"] for e in frames}),
        "hidden_repaints": sum(not e.get("visible") for e in frames),
        "detached_repaints": sum(not e.get("connected") for e in frames),
        "divs_drawn": len({e.get("div") for e in frames}),
        "merge_took_s": float(took.group(1)) if took else None,
        "longtask_ms": sum(e["ms"] for e in rel if e["kind"] == "longtask"),
        "events": rel,
    }


def med(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, unit: str = "ms") -> str:
    if value is None:
        return "n/a"
    return f"{value / 1000:.3f} s" if unit == "ms" else f"{value:.3f} s"


def report(name: str, rows: list[dict], failed: int) -> None:
    lat = [r["latency_ms"] for r in rows if r["latency_ms"] is not None]
    if not lat:
        print(f"{name}: no repeat showed its result ({failed} failed)")
        return
    print(f"{name}: input -> last repaint median {fmt(statistics.median(lat))}, min {fmt(min(lat))}, "
          f"max {fmt(max(lat))} (n={len(lat)}, failed {failed})")
    print(f"  medians after the keydown: join POST sent {fmt(med(rows, 'join_sent_ms'))}, process_starts "
          f"{fmt(med(rows, 'process_starts_ms'))}, process_completed {fmt(med(rows, 'process_completed_ms'))}, "
          f"status text {fmt(med(rows, 'status_ms'))}, first plot frame {fmt(med(rows, 'first_plot_frame_ms'))}, "
          f"last plot frame {fmt(med(rows, 'last_plot_frame_ms'))}")
    def gap(a: str, b: str) -> str:
        values = [r[b] - r[a] for r in rows if r.get(a) is not None and r.get(b) is not None]
        return fmt(statistics.median(values)) if values else "n/a"

    print(f"  breakdown (medians): in the page before the request {fmt(med(rows, 'join_sent_ms'))}; queue join to "
          f"process_starts {gap('join_sent_ms', 'process_starts_ms')}; process_starts to the reply's data "
          f"{gap('process_starts_ms', 'first_data_ms')}; data to status text {gap('first_data_ms', 'status_ms')}; "
          f"status to last plot frame {gap('status_ms', 'last_plot_frame_ms')} (first to last plot frame "
          f"{gap('first_plot_frame_ms', 'last_plot_frame_ms')}); main-thread long tasks "
          f"{fmt(med(rows, 'longtask_ms'))} per run")
    print(f"  server: handler (gradio's duration) {fmt(med(rows, 'handler_s'), 's')}, of which the merge "
          f"('merge took') {fmt(med(rows, 'merge_took_s'), 's')}; reply {med(rows, 'reply_bytes') / 1e3:.0f} kB of "
          f"SSE in {med(rows, 'data_messages'):.0f} data messages; {med(rows, 'joins'):.0f} queue join(s) per input")
    print(f"  CPU per run (medians, the 1 s quiet wait included): dashboard process "
          f"{fmt(med(rows, 'server_cpu_s'), 's')}, Chromium + Playwright {fmt(med(rows, 'browser_cpu_s'), 's')}; "
          f"load average {med(rows, 'load'):.1f}")
    page = {m: med(rows, f"page_{m}_s") for m in METRICS}
    print(f"  renderer main thread per run (Chromium's metrics, medians): tasks {fmt(page['TaskDuration'], 's')}, "
          f"script {fmt(page['ScriptDuration'], 's')}, layout {fmt(page['LayoutDuration'], 's')}, style "
          f"{fmt(page['RecalcStyleDuration'], 's')}; after the last repeat {rows[-1]['page_Nodes']:.0f} DOM nodes, "
          f"{rows[-1]['page_JSEventListeners']:.0f} listeners, JS heap {rows[-1]['page_JSHeapUsedSize'] / 1e6:.0f} MB "
          f"(first repeat {rows[0]['page_Nodes']:.0f}, {rows[0]['page_JSEventListeners']:.0f}, "
          f"{rows[0]['page_JSHeapUsedSize'] / 1e6:.0f} MB)")
    plots = sorted({p for r in rows for p in r["plots_repainted"]})
    print(f"  plot repaints per run: median {med(rows, 'plot_repaints'):.0f} (not on screen: hidden tab or a "
          f"replaced div {med(rows, 'hidden_repaints'):.0f}, of which into a div already removed from the page "
          f"{med(rows, 'detached_repaints'):.0f}; distinct divs {med(rows, 'divs_drawn'):.0f}); "
          f"figures repainted: {', '.join(plots) or 'none'}")


def case(page, cdp, server: int, title: str, method: str, elem_id: str, param: str, values, repeats: int,
         args) -> tuple:
    n = run_number(page) + 1
    if not page.locator("#method input").input_value().startswith(title):  # picking it runs it live
        pick_method(page, title)
        if not quiet(page, f"#{n} {method}(", args.quiet, args.timeout):
            raise RuntimeError(f"picking {title} did not show run #{n}: {status_text(page)!r}")
    box = page.locator(f"#{elem_id} input[type=number]")
    rows, failed = [], 0
    for i in range(repeats):
        n, value = run_number(page) + 1, values(i)
        label = f"#{n} {method}({param}={value:g}"
        box.fill(str(value))
        page.evaluate("() => { window.__bb.log = []; window.__bb.scan(); }")
        cpu, before = cpu_seconds(server), metrics(cdp)
        box.press("Enter")
        shown = quiet(page, label, args.quiet, args.timeout)
        cpu, after = [b - a for a, b in zip(cpu, cpu_seconds(server))], metrics(cdp)
        if not shown:
            failed += 1
            print(f"  repeat {i + 1}: {label!r} never showed; status {status_text(page)[:120]!r}", flush=True)
            continue
        log = page.evaluate("() => window.__bb.log")
        if not any(e["kind"] == "input" for e in log):
            failed += 1
            print(f"  repeat {i + 1}: the page saw no Enter keydown in the number box", flush=True)
            continue
        row = analyse(log, label)
        if not row["plot_repaints"]:
            failed += 1
            print(f"  repeat {i + 1}: {label!r} showed, but no plot was redrawn", flush=True)
            continue
        row.update(value=value, label=label, server_cpu_s=cpu[0], browser_cpu_s=cpu[1], load=os.getloadavg()[0],
                   **{f"page_{m}_s": after[m] - before[m] for m in METRICS}, **{f"page_{c}": after[c] for c in COUNTS})
        rows.append(row)
        print(f"  repeat {i + 1}: {param}={value:g} latency {fmt(row['latency_ms'])} (status "
              f"{fmt(row['status_ms'])}, {row['plot_repaints']} plot repaints, {row['hidden_repaints']} hidden)",
              flush=True)
    return rows, failed


def measure(name: str, root: Path, extra: tuple[str, ...], args: argparse.Namespace) -> tuple[dict, int]:
    """Start the dashboard of checkout `root` (flags `extra`), run every case in Chromium; (results, failures)."""
    began = time.monotonic()
    proc, url = start_server(args.zoo, root, extra)
    print(f"[{name}] dashboard of {root} {' '.join(extra)} up on {url} after {time.monotonic() - began:.1f} s "
          f"(zoo {args.zoo}); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    from playwright.sync_api import sync_playwright

    results, failures = {}, 0
    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = chromium.new_page(viewport={"width": 1500, "height": 1100})
            page.add_init_script(HOOKS)
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            page.goto(url, wait_until="load", timeout=120_000)
            if not quiet(page, "Run #1 ", args.quiet, 300):
                raise RuntimeError(f"the first result never showed: {status_text(page)!r}")
            print(f"first result after {time.monotonic() - began:.1f} s", flush=True)
            if args.visit_tabs:  # mount every result tab once, then measure from the Accuracy tab
                for tab in [*TABS, TABS[0]]:
                    page.get_by_role("tab", name=tab, exact=True).click()
                    quiet(page, "Run #1 ", args.quiet, args.timeout)
                print(f"visited the tabs {', '.join(TABS)}, back on {TABS[0]}", flush=True)
            for title, method, elem_id, param, values in CASES:
                print(f"{title} {param}:", flush=True)
                rows, failed = case(page, cdp, proc.pid, title, method, elem_id, param, values, args.repeats, args)
                results[f"{method} {param}"] = (rows, failed)
                failures += failed
            chromium.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return results, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--zoo", default="demo")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the dashboard process "
                        "(default: its own default)")
    parser.add_argument("--compare", metavar="REV", help="first measure the code of git revision REV (a temporary "
                        "worktree, --threads 1), then this checkout: before and after in one run")
    parser.add_argument("--quiet", type=float, default=1.0, help="seconds without a repaint that end a repeat")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one result")
    parser.add_argument("--visit-tabs", action="store_true", help="open every result tab once before measuring "
                        "(are the figures of hidden tabs repainted once mounted?)")
    parser.add_argument("--json", type=Path, help="write every repeat's timeline here")
    args = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if not Path(CHROMIUM).exists() or sync_playwright is None:  # skipped, as `make bench` runs every bench
        print(f"skipped: needs playwright and Debian's chromium at {CHROMIUM} (apt-get install -y chromium)")
        return 0

    runs = [("after", ROOT, () if args.threads is None else ("--threads", str(args.threads)))]
    if args.compare:
        runs.insert(0, (f"before ({args.compare})", worktree(args.compare), ("--threads", "1")))
    failures, summary = 0, {}
    for name, root, extra in runs:
        results, failed = measure(name, root, extra, args)
        if root != ROOT:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(root)], check=False)
        failures += failed
        print(f"\n[{name}] zoo {args.zoo}, {' '.join(extra) or 'default settings'}, {args.repeats} repeats, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        for case_name, (rows, failed_rows) in results.items():
            report(case_name, rows, failed_rows)
        summary[name] = {k: {"rows": r, "failed": f} for k, (r, f) in results.items()}
        if len(results) < len(CASES):
            failures += 1
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
        print(f"timelines written to {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
