"""The CPU figures a job reports: a busy agent must show as busy."""

from __future__ import annotations

import asyncio
import time

from talbench.agents.resources import CpuMeter


async def measure(busy: bool, seconds: float = 0.4) -> dict:
    meter = CpuMeter(interval=0.1)
    meter.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if busy:
            sum(range(10_000))  # burns the event loop's thread
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(0.05)
    return await meter.stop()


async def test_a_busy_loop_shows_as_busy_and_an_idle_one_as_idle():
    idle = await measure(busy=False)
    busy = await measure(busy=True)
    assert 0.35 < idle["wall_s"] < 1.5 and 0.35 < busy["wall_s"] < 1.5
    assert idle["cpu_process_percent"] < 20
    # on a shared machine the process may not get a whole core; still far above idle
    assert busy["cpu_process_percent"] > 40 and busy["cpu_process_percent"] > idle["cpu_process_percent"] + 30
    assert busy["cpu_process_percent_max"] >= busy["cpu_process_percent"] - 0.1
    assert busy["cpu_system_percent"] * busy["cpus"] >= 0.8 * busy["cpu_process_percent"] - 10
    assert busy["cpus"] >= 1 and 0 <= idle["cpu_system_percent"] <= 100
