"""The report in a real headless Debian chromium, driven over the DevTools protocol (aiohttp websocket).

Checks: no console errors or exceptions, five rendered Plotly figures, the injected payloads did
not run, and a screenshot of the page (saved next to the report; set MAPRUNER_SCREENSHOT_DIR to
keep a copy). For a sweep (issue 21), the accuracy-vs-MACs figure as plotly drew it in the page:
a line per method through at least 3 distinct MACs levels, on a synthetic 4-target table and
(``slow``) on the report of a real ``mapruner prune`` of the quickstart sweep.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from multi_agent_pruning.reports import write_report
from multi_agent_pruning.results import ResultStore

REPO = Path(__file__).resolve().parents[2]

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--window-size=1400,3000"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="install Debian chromium: apt-get install chromium"),
]


class DevTools:
    """A minimal Chrome DevTools Protocol client: commands by id, events collected."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.events: list[dict] = []

    async def call(self, method: str, **params):
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = json.loads((await self.ws.receive(timeout=20)).data)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:500])
            elif event.get("method") == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(json.dumps(params.get("args"))[:500])
            elif event.get("method") == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", "")[:500])
        return found


def _devtools_port(profile: Path, process: subprocess.Popen, timeout: float = 20.0) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().splitlines()[0])
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode}")
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


async def _inspect(port: int, url: str, screenshot: Path, figures: int = 5) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.put(f"http://127.0.0.1:{port}/json/new?about:blank") as response:
            target = await response.json()
        async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            tools = DevTools(ws)
            for domain in ("Runtime", "Log", "Page"):
                await tools.call(f"{domain}.enable")
            await tools.call("Emulation.setDeviceMetricsOverride", width=1400, height=3000, deviceScaleFactor=1,
                             mobile=False)
            await tools.call("Page.navigate", url=url)
            rendered = 0
            for _ in range(150):  # up to ~15 s for plotly to draw every figure
                rendered = await tools.evaluate("document.querySelectorAll('.js-plotly-plot .main-svg').length "
                                                "&& document.querySelectorAll('.js-plotly-plot').length")
                if rendered == figures:
                    break
                await asyncio.sleep(0.1)
            shot = await tools.call("Page.captureScreenshot", format="png")
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            return {
                "rendered": rendered,
                "divs": await tools.evaluate("document.querySelectorAll('.plotly-graph-div').length"),
                "pwned": await tools.evaluate("typeof window.__pwned"),
                "imgs": await tools.evaluate("document.querySelectorAll('img').length"),
                "title": await tools.evaluate("document.title"),
                "heatmap_text": await tools.evaluate(
                    "Array.from(document.querySelectorAll('#figure-paper-reproduction text'))"
                    ".map(t => t.textContent).join('|')"),
                "legend": await tools.evaluate(
                    "Array.from(document.querySelectorAll('#figure-accuracy-vs-macs .legendtext'))"
                    ".map(t => t.textContent).join('|')"),
                "accuracy_traces": await tools.evaluate(_DRAWN_TRACES),
                "points": await tools.evaluate(_POINTS),
                "errors": tools.errors(),
            }


# Every trace of the accuracy-vs-MACs figure as plotly computed and drew it in the page: its name
# and mode, the x (MACs) of the points it drew (calcdata, so points plotly dropped do not count),
# and the path of its line in the SVG (empty when no line was drawn).
_DRAWN_TRACES = """(() => {
  const gd = document.getElementById('figure-accuracy-vs-macs');
  return gd.calcdata.map(cd => {
    const trace = cd[0].trace;
    const group = cd[0].node3 && cd[0].node3.node();
    const line = group && group.querySelector('path.js-line');
    return {name: trace.name, mode: trace.mode || '', visible: trace.visible,
            x: cd.map(point => point.x).filter(x => Number.isFinite(x)),
            line_path: line ? (line.getAttribute('d') || '') : ''};
  });
})()"""


# Per figure div id, the points plotly drew for each trace: {id: [[name, n_points], ...]}.
_POINTS = """(() => {
  const out = {};
  document.querySelectorAll('.js-plotly-plot').forEach(gd => {
    out[gd.id] = (gd.calcdata || []).map(cd => [cd[0].trace.name,
      cd.filter(point => Number.isFinite(point.x) && Number.isFinite(point.y)).length]);
  });
  return out;
})()"""


def _open_in_chromium(report: Path, tmp_path: Path, figures: int = 5) -> dict:
    """What headless chromium shows of ``report`` (see :func:`_inspect`), and its screenshot."""
    profile = tmp_path / "chromium-profile"
    process = subprocess.Popen([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _devtools_port(profile, process)
        screenshot = tmp_path / f"{report.stem}.png"
        seen = asyncio.run(asyncio.wait_for(_inspect(port, report.as_uri(), screenshot, figures), timeout=40))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    if os.environ.get("MAPRUNER_SCREENSHOT_DIR"):
        shutil.copy(screenshot, Path(os.environ["MAPRUNER_SCREENSHOT_DIR"]) / screenshot.name)
    return {**seen, "screenshot": screenshot}


def _frontier_lines(seen: dict) -> dict[str, list[float]]:
    """Per legend name, the distinct MACs of its drawn line trace (mode with "lines", a drawn path)."""
    lines = {}
    for trace in seen["accuracy_traces"]:
        if "lines" in trace["mode"] and trace["visible"] is not False and "Pareto" not in trace["name"]:
            assert trace["line_path"].count("L") >= 1, trace  # at least one segment drawn
            lines[trace["name"]] = sorted(set(trace["x"]))
    return lines


def test_report_renders_in_chromium(hostile_store, tmp_path):
    report = write_report(hostile_store.root, tmp_path / "report.html")
    seen = _open_in_chromium(report, tmp_path)
    assert seen["errors"] == []
    assert (seen["rendered"], seen["divs"]) == (5, 5)
    assert seen["pwned"] == "undefined" and seen["imgs"] == 0
    assert seen["title"] == "Pruning report: demo"
    assert "no data" in seen["heatmap_text"] and "-10.41 pp" in seen["heatmap_text"]
    assert "<script>window.__pwned=1</script>" in seen["legend"]  # shown as text, never run
    assert seen["screenshot"].stat().st_size > 50_000


def test_sweep_report_draws_a_line_per_method_in_chromium(sweep_store, tmp_path):
    report = write_report(sweep_store.root, tmp_path / "sweep.html")
    seen = _open_in_chromium(report, tmp_path)
    assert seen["errors"] == []
    assert (seen["rendered"], seen["divs"]) == (5, 5)
    assert _frontier_lines(seen) == {"multi_agent": [1.0, 1.5, 3.0, 5.0], "taylor": [1.0, 1.5, 3.0, 5.0]}
    assert seen["legend"].split("|")[:2] == ["multi_agent", "taylor"]
    (dense,) = [t for t in seen["accuracy_traces"] if t["name"] == "dense compact_cnn"]
    assert dense["x"] == [10.0]  # the dense model drawn as a point at its MACs (10 M)


def test_rung_and_recovery_sections_render_in_chromium(clean_store, clean_rows_factory, tmp_path):
    """Issue 22's two sections as chromium draws them: the multi-fidelity rungs (a line per trial,
    one point per rung it reached) and the final recovery (a point per recovered strategy)."""
    import dataclasses

    ok = [r for r in clean_rows_factory() if r.method == "multi_agent" and r.status == "ok"]
    reached = (1, 2, 3, 1)  # rungs reached by the four trials (budgets 1, 3, 9)
    rows = []
    for row, count in zip(ok, reached):
        rungs = [{"rung": k, "budget": 3**k, "steps": 5 * 3**k, "top1": row.top1_after - 0.05 * (count - 1 - k)}
                 for k in range(count)]
        rows.append(dataclasses.replace(row, trial_id=f"asha-{row.trial_id}", rung=count - 1,
                                        stopped_early=count < 3, rungs_json=json.dumps(rungs),
                                        steps_trained=rungs[-1]["steps"]))
    finals = [dataclasses.replace(r, trial_id=f"final-{r.trial_id}", stage="final", source_trial_id=r.trial_id,
                                  recovery_epochs=30, top1_after=min(1.0, r.top1_after + 0.1)) for r in rows[:3]]
    store = ResultStore(tmp_path / "asha")
    store.append(rows + finals)
    report = write_report(store.root, tmp_path / "asha.html")
    seen = _open_in_chromium(report, tmp_path, figures=7)
    assert seen["errors"] == []
    assert (seen["rendered"], seen["divs"]) == (7, 7)
    drawn = dict((name, n) for name, n in seen["points"]["figure-rungs"] if "stopped" not in name)
    assert sorted(n for _, n in seen["points"]["figure-rungs"]) == [1, 1, 2, 3]  # a point per rung reached
    assert drawn == {"multi_agent": 3}  # the one trial that reached the last rung, not greyed out
    recovery = dict(seen["points"]["figure-recovery"])
    assert recovery["multi_agent"] == 3 and recovery["no change"] == 2


def _quickstart_argv(out: Path) -> list[str]:
    argv = [str(Path(sys.executable).with_name("mapruner")), "prune", "--config", "configs/quickstart.yaml",
            "--output-dir", str(out)]
    target = (yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text()) or {}).get("target") or {}
    if not target.get("sweep"):  # the quickstart still searches one target: ask for the sweep
        argv += ["--target-macs", "0.7,0.5,0.35,0.25"]  # within max_overall_pruning 0.8
    return argv


@pytest.mark.slow
def test_quickstart_sweep_report_in_chromium(tmp_path):
    """Issue 21's done-criterion: the quickstart's report.html shows, per method, a line through at
    least 3 distinct MACs levels."""
    out = Path(tempfile.mkdtemp(prefix="mr-sweep-", dir="/tmp"))  # Ray's socket paths must stay short
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_") and k != "RAY_ADDRESS"}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    log = tmp_path / "prune.log"
    try:
        with open(log, "w") as handle:  # a file, not a pipe: Ray's processes could hold a pipe open
            code = subprocess.run(_quickstart_argv(out), cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                  timeout=1800).returncode
        assert code == 0, log.read_text()[-4000:]
        report = out / "report.html"
        assert report.is_file(), sorted(p.name for p in out.iterdir())
        seen = _open_in_chromium(report, tmp_path)
        rows = ResultStore(out / "results").read().to_pandas()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert seen["errors"] == []
    assert seen["rendered"] == 5
    lines = _frontier_lines(seen)
    assert set(lines) == set(rows.loc[rows["status"] == "ok", "method"]), seen["accuracy_traces"]
    for method, macs in lines.items():
        assert len(macs) >= 3, (method, macs)
    dense = [t for t in seen["accuracy_traces"] if t["name"].startswith("dense ")]
    assert len(dense) == 1 and len(dense[0]["x"]) == 1, seen["accuracy_traces"]  # the dense model, a point
    assert rows["base_top1"].notna().all() and rows["base_top1"].nunique() == 1
