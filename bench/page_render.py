"""`python -m bench.page_render`: what rendering a streamed Markdown answer costs the chat page (issue 26).

    .venv/bin/python -m bench.page_render              # a 2,000-token answer, 5 runs per delta
    .venv/bin/python -m bench.page_render --tokens 4000 --runs 9 --delay-ms 5

A real stack (redis-server, the test model server, gunicorn, the worker)
and Debian's headless Chromium. The answer (tests/support/markdown_answer.py)
has headings, tables, nested and task lists, code, then a long loose list.
Printed, in milliseconds:

- per frame: the answer streamed through relay into the chat page itself.
  The page renders once an animation frame, whatever number of deltas came
  since the last (about three here): its "relay:render" measure
  (static/views.js) is the frame's wall-clock time, rendering and keeping
  the newest text in view; a Chromium trace gives the same callbacks' CPU
  time on the page's main thread, which the machine's other processes
  cannot inflate. These are the figures a reader's browser sees.
- per delta: static/markdown_view.js showing the answer one delta at a time
  in the page, back to back: its script alone, and with the style and layout
  that the change costs the browser. Each delta's time is the least of
  `--runs` runs, so that a moment the machine gave to other processes is not
  counted; one run's figures are printed too. Back to back, the code and its
  data stay in the CPU's caches: a lower bound of the per-frame cost.
- the noise floor: a fixed 0.3 ms of work timed the same way, one run; on a
  busy machine its p99 says how much of a p99 is the machine's.

Timers in a page that is not cross-origin isolated tick in 0.1 ms steps.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.markdown_answer import markdown_answer
from tests.support.model_server import ModelServer
from tests.support.processes import ROOT, RedisServer, start_web, start_worker

PROMPT = "bench: a long Markdown answer"

# Records each "relay:render" measure the page makes (static/views.js).
OBSERVER = """
window.__renders = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if (entry.name === "relay:render") window.__renders.push(entry.duration);
  }
}).observe({ type: "measure" });
"""

# Show the deltas one at a time in a fresh view, `runs` times: per delta, each
# run's time; and each run's final render, once the answer has ended.
PER_DELTA = """async ({ deltas, runs, layout }) => {
  const { MarkdownView } = await import("/static/markdown_view.js");
  const times = deltas.map(() => []);
  const finals = [];
  for (let run = 0; run < runs; run++) {
    // Where an answer's text lives on the page, so its styles and layout are an answer's.
    const item = document.createElement("li");
    item.className = "message assistant";
    item.dataset.status = "streaming";
    const box = document.createElement("div");
    box.className = "body";
    item.append(box);
    document.getElementById("messages").append(item);
    const view = new MarkdownView(box);
    let text = "";
    deltas.forEach((delta, i) => {
      text += delta;
      const started = performance.now();
      view.show(text, false);
      if (layout) box.getBoundingClientRect(); // the style and layout the change costs
      times[i].push(performance.now() - started);
    });
    const started = performance.now();
    view.show(text, true);
    if (layout) box.getBoundingClientRect();
    finals.push(performance.now() - started);
    item.remove();
  }
  return { times, finals };
}"""

NOISE = """() => {
  const times = [];
  for (let i = 0; i < 2000; i++) {
    const started = performance.now();
    while (performance.now() - started < 0.3);
    times.push(performance.now() - started);
  }
  return times;
}"""


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(label: str, values: list[float]) -> str:
    if not values:
        return f"  {label:<44} no samples"
    return (
        f"  {label:<44} p50 {quantile(values, 0.5):6.2f}   p99 {quantile(values, 0.99):6.2f}"
        f"   max {max(values):6.2f}   ({len(values)} samples)"
    )


def env_for(redis_url: str, model_url: str, workdir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "LLM_", "DATABASE_", "REDIS_"))
    }
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=f"sqlite:///{workdir / 'page-bench.sqlite3'}",
        OPENAI_API_KEY="bench",
        OPENAI_BASE_URL=model_url,
        LLM_MODEL="bench-model",
        RATE_LIMIT="100000/minute",
        LOG_LEVEL="INFO",  # start_worker waits for its "worker ready" line
        WORKER_POP_TIMEOUT_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def stream_through_page(browser: Any, page: Any, deltas: list[str]) -> dict[str, list[float]]:
    """Send the prompt, let the answer stream in: the page's render measures
    (wall-clock), and the main thread's CPU time in each animation frame
    callback, from a Chromium trace (what the machine's other work cannot inflate)."""
    browser.start_tracing(page=page, categories=["devtools.timeline"])
    page.locator("#prompt").fill(PROMPT)
    page.locator("#prompt").press("Enter")
    page.wait_for_function(
        """() => document.querySelector("li.message.assistant")?.dataset.status === "done" """,
        timeout=30_000 + 20 * len(deltas),
        polling=200,  # not on animation frames: those must be the page's own
    )
    trace = json.loads(browser.stop_tracing())
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    frames_cpu = [
        event["tdur"] / 1000
        for event in events
        if event.get("name") == "FireAnimationFrame" and event.get("ph") == "X" and "tdur" in event
    ]
    return {"wall": page.evaluate("window.__renders"), "cpu": frames_cpu}


def run(args: argparse.Namespace, base_url: str, model: ModelServer) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    load = os.getloadavg()[0]
    deltas = markdown_answer(args.tokens)
    model.behave(PROMPT, chunks=deltas, delay_seconds=args.delay_ms / 1000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 960, "height": 720}).new_page()
            page.add_init_script(OBSERVER)
            page.goto(base_url)
            page.wait_for_function(
                "() => document.getElementById('connection').dataset.state === 'live'"
            )
            frames = stream_through_page(browser, page, deltas)
            script = page.evaluate(
                PER_DELTA, {"deltas": deltas, "runs": args.runs, "layout": False}
            )
            layout = page.evaluate(PER_DELTA, {"deltas": deltas, "runs": args.runs, "layout": True})
            noise = page.evaluate(NOISE)
            version = browser.version
        finally:
            browser.close()
    return {
        "load": load,
        "version": version,
        "deltas": deltas,
        "frames": frames,
        "script": script,
        "layout": layout,
        "noise": noise,
    }


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    deltas = result["deltas"]
    script = result["script"]["times"]
    layout = result["layout"]["times"]
    print(
        f"page render: a {len(deltas):,}-token Markdown answer ({len(''.join(deltas)):,} "
        f"characters), Chromium {result['version']} headless, {os.cpu_count()} cores, "
        f"1-minute load average {result['load']:.2f} before, {os.getloadavg()[0]:.2f} after; "
        "milliseconds"
    )
    print(line("per frame, streamed through relay", result["frames"]["wall"]))
    print(line("per frame, its CPU time (Chromium trace)", result["frames"]["cpu"]))
    print(line(f"per delta, script (least of {args.runs} runs)", [min(t) for t in script]))
    print(line(f"per delta, script + layout (least of {args.runs})", [min(t) for t in layout]))
    print(line("per delta, script + layout (one run)", [t[0] for t in layout]))
    final = statistics.median(result["layout"]["finals"])
    print(f"  {'the render when the answer ends (median)':<44} {final:6.2f}")
    print(line("noise floor: 0.3 ms of fixed work", result["noise"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.page_render", description=__doc__)
    parser.add_argument("--tokens", type=int, default=2000, help="deltas in the answer")
    parser.add_argument("--runs", type=int, default=5, help="runs of the per-delta measure")
    parser.add_argument(
        "--delay-ms", type=float, default=5, help="the model's pause between deltas"
    )
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: install Debian's chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="page-bench-") as workdir:
        log_dir = Path(workdir)
        redis_server = RedisServer(log_dir).start()
        model = ModelServer().start()
        processes = []
        try:
            env = env_for(redis_server.url, model.base_url, log_dir)
            subprocess.run(
                [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
            web, base_url = start_web(env, log_dir)
            processes.append(web)
            processes.append(start_worker(env, log_dir))
            report(args, run(args, base_url, model))
        finally:
            for proc in reversed(processes):
                proc.stop()
            model.close()
            redis_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
