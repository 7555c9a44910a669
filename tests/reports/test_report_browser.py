"""The report in a real headless Debian chromium, driven over the DevTools protocol (aiohttp websocket).

Checks: no console errors or exceptions, five rendered Plotly figures, the injected payloads did
not run, and a screenshot of the page (saved next to the report; set MAPRUNER_SCREENSHOT_DIR to
keep a copy).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from multi_agent_pruning.reports import write_report

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


async def _inspect(port: int, url: str, screenshot: Path) -> dict:
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
                if rendered == 5:
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
                "errors": tools.errors(),
            }


def test_report_renders_in_chromium(hostile_store, tmp_path):
    report = write_report(hostile_store.root, tmp_path / "report.html")
    profile = tmp_path / "chromium-profile"
    process = subprocess.Popen([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _devtools_port(profile, process)
        screenshot = tmp_path / "report.png"
        seen = asyncio.run(asyncio.wait_for(_inspect(port, report.as_uri(), screenshot), timeout=40))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    if os.environ.get("MAPRUNER_SCREENSHOT_DIR"):
        shutil.copy(screenshot, Path(os.environ["MAPRUNER_SCREENSHOT_DIR"]) / "report.png")
    assert seen["errors"] == []
    assert (seen["rendered"], seen["divs"]) == (5, 5)
    assert seen["pwned"] == "undefined" and seen["imgs"] == 0
    assert seen["title"] == "Pruning report: demo"
    assert "no data" in seen["heatmap_text"] and "-10.41 pp" in seen["heatmap_text"]
    assert "<script>window.__pwned=1</script>" in seen["legend"]  # shown as text, never run
    assert screenshot.stat().st_size > 50_000
