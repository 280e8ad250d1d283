"""The cleanup registry on its own: bounded releases, failures isolated."""

from __future__ import annotations

import asyncio
import time

import pytest

from talbench.agents.cleanup import Cleanups


async def test_a_hanging_release_is_abandoned_in_bounded_time_and_others_still_run():
    done: list[str] = []

    async def hang() -> None:
        await asyncio.sleep(60)

    async def ok() -> None:
        done.append("ok")

    cleanups = Cleanups(release_timeout=0.1)
    cleanups.add("r", "ok", ok)
    cleanups.add("r", "hang", hang)
    started = time.monotonic()
    report = await cleanups.release_all()
    assert time.monotonic() - started < 2
    assert report.released == ("ok",) and report.failed == ("hang",) and done == ["ok"]
    assert cleanups.names("r") == ()


async def test_release_one_by_name_and_duplicate_names_refused():
    done: list[str] = []

    def releaser(name: str):
        async def release() -> None:
            done.append(name)

        return release

    cleanups = Cleanups()
    cleanups.add("r", "a", releaser("a"))
    cleanups.add("r", "b", releaser("b"))
    with pytest.raises(ValueError):
        cleanups.add("r", "a", releaser("a"))
    cleanups.add("s", "a", releaser("s-a"))
    await cleanups.release("r", "a")
    assert done == ["a"] and cleanups.names("r") == ("b",) and cleanups.names("s") == ("a",)
    assert cleanups.run_ids() == ("r", "s")
