"""Job lifecycle with tiny test-only probes: time limits, cancel, failures, cleanup release."""

from __future__ import annotations

import asyncio
import time

from talbench.agents.app import CLEANUPS, JOBS
from tests.agents.fake_probes import KeepProbe, probes
from tests.agents.helpers import AUTH


async def test_a_job_runs_and_reports_resources(start_agent):
    agent = await start_agent(probes(), node="cp2")
    job = await agent.submit("sleep", {"seconds": 0.05})
    assert job["state"] == "running" and job["probe"] == "sleep" and job["run_id"] == "run-1"
    assert job["time_limit"] == 5.0 and job["started"] > 1e9 and job["ended"] is None
    done = await agent.wait(job["id"])
    assert done["state"] == "done" and done["error"] is None and done["error_kind"] is None
    assert done["result"] == {"slept": 0.05, "node": "cp2"}
    assert done["ended"] >= done["started"] and abs(done["ended"] - time.time()) < 5
    res = done["resources"]
    assert set(res) >= {"cpu_process_percent", "cpu_system_percent", "cpus", "wall_s"}
    assert 0.04 <= res["wall_s"] < 2 and res["cpus"] >= 1 and 0 <= res["cpu_system_percent"] <= 100


async def test_a_job_past_its_time_limit_fails_with_timeout(start_agent):
    agent = await start_agent(probes())
    started = time.monotonic()
    job = await agent.submit("sleep", {"seconds": 30, "limit": 0.2})
    done = await agent.wait(job["id"], timeout=5)
    assert time.monotonic() - started < 3
    assert done["state"] == "failed" and done["error_kind"] == "timeout"
    assert "0.2" in done["error"] and done["result"] is None
    assert done["resources"]["wall_s"] >= 0.19


async def test_delete_cancels_a_running_job(start_agent):
    agent = await start_agent(probes())
    job = await agent.submit("sleep", {"seconds": 30, "limit": 40})
    response = await agent.client.delete(f"/v1/jobs/{job['id']}", headers=AUTH)
    assert response.status == 200
    cancelled = (await response.json())["job"]
    assert cancelled["state"] == "cancelled" and cancelled["error_kind"] == "cancelled" and cancelled["ended"]
    assert (await agent.job(job["id"]))["state"] == "cancelled"
    assert agent.app[JOBS].running() == []
    # deleting a finished job answers it unchanged
    again = await agent.client.delete(f"/v1/jobs/{job['id']}", headers=AUTH)
    assert again.status == 200 and (await again.json())["job"]["state"] == "cancelled"


async def test_probe_failures_become_one_line_errors(start_agent):
    agent = await start_agent(probes())
    boom = await agent.wait((await agent.submit("fail", {"how": "boom"}))["id"])
    assert boom["state"] == "failed" and boom["error_kind"] == "failed"
    assert boom["error"] == "RuntimeError: boom"
    unavailable = await agent.wait((await agent.submit("fail", {"how": "unavailable"}))["id"])
    assert unavailable["state"] == "failed" and unavailable["error_kind"] == "unavailable"
    assert unavailable["error"] == "fio not found on PATH"
    not_json = await agent.wait((await agent.submit("fail", {"how": "not-json"}))["id"])
    assert not_json["state"] == "failed" and "JSON" in not_json["error"] and not_json["result"] is None


async def test_too_many_running_jobs_is_409(start_agent):
    agent = await start_agent(probes(), max_concurrent_jobs=2)
    first = await agent.submit("sleep", {"seconds": 30, "limit": 40})
    await agent.submit("sleep", {"seconds": 30, "limit": 40})
    body = {"schema": 1, "run_id": "r", "probe": "sleep", "params": {"seconds": 0}}
    response = await agent.client.post("/v1/jobs", json=body, headers=AUTH)
    assert response.status == 409
    assert "2" in (await response.json())["error"]
    await agent.client.delete(f"/v1/jobs/{first['id']}", headers=AUTH)
    response = await agent.client.post("/v1/jobs", json=body, headers=AUTH)
    assert response.status == 202


async def test_finished_jobs_are_kept_bounded_oldest_dropped(start_agent):
    agent = await start_agent(probes(), max_kept_jobs=2)
    ids = []
    for _ in range(4):
        job = await agent.submit("sleep", {"seconds": 0})
        await agent.wait(job["id"])
        ids.append(job["id"])
    statuses = [(await agent.client.get(f"/v1/jobs/{i}", headers=AUTH)).status for i in ids]
    assert statuses == [404, 404, 200, 200]


async def test_delete_run_cancels_its_jobs_and_releases_what_it_left(start_agent):
    keep = KeepProbe()
    agent = await start_agent(probes(keep))
    await agent.wait(
        (await agent.submit("keep", {"things": ["etcd-member", "broken", "tunnel"]}, run_id="run-a"))["id"]
    )
    await agent.wait((await agent.submit("keep", {"things": ["other"]}, run_id="run-b"))["id"])
    sleeper = await agent.submit("sleep", {"seconds": 30, "limit": 40}, run_id="run-a")
    assert agent.app[CLEANUPS].names("run-a") == ("etcd-member", "broken", "tunnel")

    response = await agent.client.delete("/v1/runs/run-a", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    # newest first; the broken one is reported and does not stop the others
    assert body["released"] == ["tunnel", "etcd-member"] and body["failed"] == ["broken"]
    assert keep.released == ["run-a/tunnel", "run-a/etcd-member"]
    assert (await agent.job(sleeper["id"]))["state"] == "cancelled"
    assert agent.app[CLEANUPS].names("run-a") == () and agent.app[CLEANUPS].names("run-b") == ("other",)

    again = await (await agent.client.delete("/v1/runs/run-a", headers=AUTH)).json()
    assert again["released"] == [] and again["failed"] == []


async def test_stopping_the_agent_cancels_jobs_and_releases_everything(start_agent):
    keep = KeepProbe()
    agent = await start_agent(probes(keep))
    await agent.wait((await agent.submit("keep", {"things": ["a", "b"]}, run_id="run-x"))["id"])
    sleeper = await agent.submit("sleep", {"seconds": 30, "limit": 40})
    await agent.client.close()  # app shutdown + cleanup
    assert keep.released == ["run-x/b", "run-x/a"]
    assert agent.app[JOBS].get(sleeper["id"]).state == "cancelled"


async def test_a_run_whose_coordinator_vanished_is_released_after_its_idle_time(start_agent):
    keep = KeepProbe()
    agent = await start_agent(probes(keep), run_idle_release_s=0.3)
    await agent.wait((await agent.submit("keep", {"things": ["member"]}, run_id="gone"))["id"])
    await agent.wait((await agent.submit("keep", {"things": ["member"]}, run_id="busy"))["id"])
    sleeper = await agent.submit("sleep", {"seconds": 30, "limit": 40}, run_id="busy")
    await asyncio.sleep(0.15)
    assert keep.released == []  # not idle long enough yet
    for _ in range(40):
        if keep.released:
            break
        await asyncio.sleep(0.05)
    assert keep.released == ["gone/member"]
    # a run with a job still running is not abandoned
    assert agent.app[CLEANUPS].names("busy") == ("member",)
    await agent.client.delete(f"/v1/jobs/{sleeper['id']}", headers=AUTH)
