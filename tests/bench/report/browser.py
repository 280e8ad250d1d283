"""Headless Chromium (Debian's ``chromium``) for the report.html tests, driven over the DevTools
protocol, and the checks of what a person would see on the page.

- ``chromium(tmp_path)``: a browser with its own profile, yielding a ``Page`` (one tab).
- ``check_page``: no console error or uncaught exception, no request that leaves the file, every
  plot drawn, one heatmap cell per measured direction, the hover text of a cell, the
  slowest-first button, and a full-page screenshot (``screenshot_path``: kept where
  ``TALBENCH_REPORT_SCREENSHOT`` says).
- ``measured_directions``, ``slowest``: what the page must show for a run.
- ``HOVER_AT``: the hover text at a cell; ``NEEDS_CHROMIUM``: the skip without a browser.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from talbench.bench.model import RunRecord
from talbench.bench.report.html import data as html_data

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The browser tests' skip: each such module carries it with pytest.mark.processes (it starts Chromium).
NEEDS_CHROMIUM = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (make test installs it)")

# Waits for every plotly div to be drawn (plotly sets _fullLayout and renders its SVG).
PLOTS_DRAWN = """
new Promise((resolve, reject) => {
  const started = Date.now();
  const check = () => {
    const divs = [...document.querySelectorAll('.plotly-graph-div')];
    if (divs.length && divs.every(d => d._fullLayout && d.querySelector('.main-svg'))) {
      resolve(divs.map(d => d.id));
    } else if (Date.now() - started > 60000) {
      reject(new Error('plots not drawn after 60 s'));
    } else { setTimeout(check, 100); }
  };
  check();
})
"""

# What the heatmap shows: cells with a value (plotly's computed z, after category mapping),
# the axes' order, and the one raster image plotly draws the cells into.
HEATMAP = """
(() => {
  const gd = document.getElementById('rtt-heatmap');
  const cd = gd.calcdata[0][0];
  const xs = gd._fullLayout.xaxis._categories, ys = gd._fullLayout.yaxis._categories;
  // cd.x / cd.y are the cells' edges in category index space (one more than the cells)
  const at = (edges, k, n) => Math.round(edges.length > n ? (edges[k] + edges[k + 1]) / 2 : edges[k]);
  const cells = [];
  cd.z.forEach((row, i) => row.forEach((v, j) => {
    if (Number.isFinite(v)) cells.push([ys[at(cd.y, i, cd.z.length)], xs[at(cd.x, j, row.length)]]);
  }));
  // every cell one category wide and high: edges at -0.5, 0.5, ... n - 0.5 on both axes
  const even = (edges, n) => edges.length === n + 1 && edges.every((e, k) => Math.abs(e - (k - 0.5)) < 1e-9);
  return {cells, images: gd.querySelectorAll('.hm image').length, x: xs, y: ys,
          grid: even(cd.x, xs.length) && even(cd.y, ys.length)};
})()
"""

HOVER_AT = """
new Promise(resolve => {
  const gd = document.getElementById('rtt-heatmap');
  Plotly.Fx.hover(gd, {xval: %d, yval: %d});  // category axes: positions are indices
  setTimeout(() => resolve(gd.querySelector('.hovertext') ? gd.querySelector('.hovertext').textContent : null), 300);
})
"""
HOVER_FIRST_CELL = HOVER_AT % (1, 0)

CLICK_SLOWEST_FIRST = """
new Promise(resolve => {
  const gd = document.getElementById('rtt-heatmap');
  const button = [...gd.querySelectorAll('.updatemenu-button')].find(b => b.textContent === 'slowest first');
  button.dispatchEvent(new MouseEvent('click', {bubbles: true}));
  setTimeout(() => resolve(gd._fullLayout.xaxis.categoryarray), 500);
})
"""


@dataclass
class Page:
    """One tab, driven over the DevTools protocol: commands, and the events it reported."""

    ws: aiohttp.ClientWebSocketResponse
    session: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    next_id: int = 0

    async def send(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False) -> Any:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if not browser:
            message["sessionId"] = self.session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, 120)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            else:
                self.events.append(data)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, method: str, timeout: float = 120) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if event.get("method") == method:
                        return event
                await asyncio.sleep(0.05)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries, as text."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                found.append(json.dumps(params.get("exceptionDetails", {}))[:500])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(params["entry"].get("text", ""))
        return found

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]


@asynccontextmanager
async def chromium(tmp_path: Path) -> AsyncIterator[Page]:
    """A headless Chromium with its own profile; any request off the machine goes to a dead
    proxy on loopback, so a page that tried to fetch would show it (and fail to load it)."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path))
    process = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--proxy-server=127.0.0.1:9",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        async with asyncio.timeout(90):
            while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
                assert process.poll() is None, "chromium exited at start"
                await asyncio.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0) as ws,
        ):
            page = Page(ws)
            reader = asyncio.create_task(page.read())
            try:
                target = await page.send("Target.createTarget", {"url": "about:blank"}, browser=True)
                attached = await page.send(
                    "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, browser=True
                )
                page.session = attached["sessionId"]
                for domain in ("Runtime", "Log", "Page", "Network"):
                    await page.send(f"{domain}.enable")
                yield page
            finally:
                reader.cancel()
                with suppress(asyncio.CancelledError):
                    await reader
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def open_report(page: Page, report: Path) -> list[str]:
    await page.send(
        "Emulation.setDeviceMetricsOverride", {"width": 1300, "height": 1000, "deviceScaleFactor": 1, "mobile": False}
    )
    await page.send("Page.navigate", {"url": report.resolve().as_uri()})
    await page.wait_for("Page.loadEventFired")
    return await page.evaluate(PLOTS_DRAWN)


async def screenshot(page: Page, out: Path) -> None:
    metrics = await page.send("Page.getLayoutMetrics")
    height = min(int(metrics["cssContentSize"]["height"]) + 10, 16000)
    await page.send(
        "Emulation.setDeviceMetricsOverride", {"width": 1300, "height": height, "deviceScaleFactor": 1, "mobile": False}
    )
    shot = await page.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))
    # and the heatmap alone, at its own size, to look at closely
    box = await page.evaluate(
        "(() => { const r = document.getElementById('rtt-heatmap').getBoundingClientRect();"
        " return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; })()"
    )
    clip = await page.send(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {**box, "scale": 1}}
    )
    out.with_name(f"{out.stem}-heatmap.png").write_bytes(base64.b64decode(clip["data"]))


def screenshot_path(tmp_path: Path, name: str) -> Path:
    keep = os.environ.get("TALBENCH_REPORT_SCREENSHOT")
    return Path(keep) / name if keep else tmp_path / name


def slowest(record: RunRecord) -> tuple[str, ...]:
    """The order the slowest-first button must give (bench/report/html/data.py computes it)."""
    matrix = html_data.rtt_matrix(record)
    assert matrix is not None
    return matrix.worst_first


def measured_directions(run_json: dict[str, Any]) -> set[tuple[str, str]]:
    """The directions with at least one sample: raw, or counted in the histogram the RTT driver
    compacted them into."""
    return {
        (r["node"], r["peer"])
        for r in run_json["results"]
        if r["probe"] == "rtt"
        and r["ok"]
        and (r["data"].get("samples_ns") or (r["data"].get("histogram_ns") or {}).get("count"))
    }


async def check_page(
    page: Page, report: Path, measured: set[tuple[str, str]], slowest_first: Sequence[str], shot: Path
) -> dict[str, Any]:
    drawn = await open_report(page, report)
    assert "rtt-heatmap" in drawn and "cdf-rtt" in drawn
    heatmap = await page.evaluate(HEATMAP)
    assert heatmap["images"] == 1  # plotly drew the cells
    assert heatmap["grid"]  # on the nodes x nodes grid, none stretched over another's place
    assert {tuple(cell) for cell in heatmap["cells"]} == measured
    assert len(heatmap["cells"]) == len(measured)
    cps = [name for name in heatmap["x"] if name.startswith("cp")]
    assert heatmap["x"][: len(cps)] == cps == heatmap["y"][: len(cps)]  # control planes first
    hover = await page.evaluate(HOVER_FIRST_CELL)
    first, second = heatmap["y"][0], heatmap["x"][1]
    assert hover is not None and f"{first} → {second}" in hover and "p99" in hover and "ms" in hover
    await page.send("Runtime.evaluate", {"expression": "Plotly.Fx.unhover(document.getElementById('rtt-heatmap'))"})
    await screenshot(page, shot)
    sorted_axis = await page.evaluate(CLICK_SLOWEST_FIRST)
    assert sorted_axis == list(slowest_first)
    heatmap_sorted = await page.evaluate(HEATMAP)
    assert {tuple(cell) for cell in heatmap_sorted["cells"]} == measured  # the same cells, moved
    assert page.errors() == []
    assert [url for url in page.requests() if not url.startswith(("file:", "data:", "blob:", "about:"))] == []
    return {"drawn": drawn, "heatmap": heatmap, "sorted": sorted_axis}
