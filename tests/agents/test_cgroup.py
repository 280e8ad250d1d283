"""The CPU cgroup reader against fake trees laid out like ``/``: hybrid v1 + v2 (this host), v1
cpu,cpuacct, pure v2, a subtree mounted without a cgroup namespace, unreadable pieces; the
throttling deltas a job records; the load generator's worker count from the quota."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from talbench.agents import cgroup
from talbench.agents.probes.etcd import generator
from talbench.agents.resources import CpuMeter

HYBRID_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2_MOUNTS = "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v1_stat(periods: int, throttled: int, ns: int) -> str:
    return f"nr_periods {periods}\nnr_throttled {throttled}\nthrottled_time {ns}\nnr_bursts 0\nburst_time 0\n"


def v2_stat(periods: int, throttled: int, us: int) -> str:
    return (
        f"usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods {periods}\n"
        f"nr_throttled {throttled}\nthrottled_usec {us}\n"
    )


def hybrid(root: Path, path: str = "/tb-agent", quota_us: int = 20000) -> Path:
    """This host's layout: cpu alone on a v1 hierarchy, a v2 mount with no controller."""
    write(root / "proc/self/cgroup", f"9:name=systemd:/\n4:memory:/m\n2:cpuacct:/\n1:cpu:{path}\n0::/\n")
    write(root / "proc/self/mountinfo", HYBRID_MOUNTS)
    top = root / "sys/fs/cgroup/cpu"
    write(top / "cpu.stat", v1_stat(0, 0, 0))
    write(top / "cpu.cfs_quota_us", "-1\n")
    write(top / "cpu.cfs_period_us", "100000\n")
    group = top / path.lstrip("/")
    write(group / "cpu.stat", v1_stat(100, 0, 0))
    write(group / "cpu.cfs_quota_us", f"{quota_us}\n")
    write(group / "cpu.cfs_period_us", "100000\n")
    write(root / "sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n")
    write(root / "sys/fs/cgroup/unified/cpu.stat", "usage_usec 5\nuser_usec 3\nsystem_usec 2\n")
    return group


def test_hybrid_host_reads_the_v1_cpu_hierarchy_not_the_empty_v2_mount(tmp_path: Path) -> None:
    group = hybrid(tmp_path)
    found = cgroup.locate(tmp_path)
    assert found == cgroup.CpuCgroup(1, (group, tmp_path / "sys/fs/cgroup/cpu"))
    assert cgroup.quota_cores(tmp_path) == pytest.approx(0.2)
    before = cgroup.sample(found)
    write(group / "cpu.stat", v1_stat(220, 37, 1_800_000_000))
    fields = cgroup.throttling(before, cgroup.sample(found))
    assert fields == {"cpu_throttled_periods": 37, "cpu_periods": 120, "cpu_throttled_s": 1.8, "cpu_quota_cores": 0.2}


def test_the_throttled_ancestor_is_reported_and_the_tightest_quota(tmp_path: Path) -> None:
    """A pod's cgroup (quota 1.5 cores) above its container's (quota 4): the pod level throttles."""
    write(tmp_path / "proc/self/cgroup", "5:cpu,cpuacct:/kubepods/pod1/ctr\n")
    write(
        tmp_path / "proc/self/mountinfo",
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
    )
    top = tmp_path / "sys/fs/cgroup/cpu,cpuacct"
    pod, ctr = top / "kubepods/pod1", top / "kubepods/pod1/ctr"
    for level, quota in ((top, -1), (top / "kubepods", -1), (pod, 150000), (ctr, 400000)):
        write(level / "cpu.stat", v1_stat(10, 0, 0))
        write(level / "cpu.cfs_quota_us", f"{quota}\n")
        write(level / "cpu.cfs_period_us", "100000\n")
    found = cgroup.locate(tmp_path)
    assert found is not None and found.levels == (ctr, pod, top / "kubepods", top)
    before = cgroup.sample(found)
    write(ctr / "cpu.stat", v1_stat(60, 0, 0))
    write(pod / "cpu.stat", v1_stat(60, 12, 300_000_000))
    assert cgroup.throttling(before, cgroup.sample(found)) == {
        "cpu_throttled_periods": 12,
        "cpu_periods": 50,
        "cpu_throttled_s": 0.3,
        "cpu_quota_cores": 1.5,
    }


def test_pure_v2_reads_cpu_max_and_throttled_usec(tmp_path: Path) -> None:
    write(tmp_path / "proc/self/cgroup", "0::/kubepods.slice/agent\n")
    write(tmp_path / "proc/self/mountinfo", V2_MOUNTS)
    top = tmp_path / "sys/fs/cgroup"
    write(top / "cgroup.controllers", "cpuset cpu io memory pids\n")
    write(top / "cpu.stat", "usage_usec 9\nuser_usec 5\nsystem_usec 4\n")  # the root: no cpu.max
    group = top / "kubepods.slice/agent"
    write(group / "cpu.stat", v2_stat(5, 0, 0))
    write(group / "cpu.max", "50000 100000\n")
    found = cgroup.locate(tmp_path)
    assert found == cgroup.CpuCgroup(2, (group, top / "kubepods.slice", top))
    before = cgroup.sample(found)
    write(group / "cpu.stat", v2_stat(105, 40, 2_000_000))
    assert cgroup.throttling(before, cgroup.sample(found)) == {
        "cpu_throttled_periods": 40,
        "cpu_periods": 100,
        "cpu_throttled_s": 2.0,
        "cpu_quota_cores": 0.5,
    }
    write(group / "cpu.max", "max 100000\n")
    assert cgroup.quota_cores(tmp_path) is None


def test_a_v2_mount_without_the_cpu_controller_is_not_read(tmp_path: Path) -> None:
    write(tmp_path / "proc/self/cgroup", "0::/\n")
    write(tmp_path / "proc/self/mountinfo", V2_MOUNTS)
    write(tmp_path / "sys/fs/cgroup/cgroup.controllers", "memory pids\n")
    assert cgroup.locate(tmp_path) is None


def test_a_subtree_mounted_without_a_cgroup_namespace(tmp_path: Path) -> None:
    """A container that sees its own cgroup bind-mounted at /sys/fs/cgroup/cpu, with the host's
    full path in /proc/self/cgroup (mountinfo's root field names the subtree)."""
    write(tmp_path / "proc/self/cgroup", "3:cpu,cpuacct:/docker/abc\n")
    write(
        tmp_path / "proc/self/mountinfo",
        "40 31 0:29 /docker/abc /sys/fs/cgroup/cpu\\054cpuacct ro - cgroup cgroup rw,cpuacct,cpu\n",
    )
    top = tmp_path / "sys/fs/cgroup/cpu,cpuacct"
    write(top / "cpu.stat", v1_stat(0, 0, 0))
    write(top / "cpu.cfs_quota_us", "200000\n")
    write(top / "cpu.cfs_period_us", "100000\n")
    assert cgroup.locate(tmp_path) == cgroup.CpuCgroup(1, (top,))
    assert cgroup.quota_cores(tmp_path) == 2.0


def test_a_netns_exec_process_without_cgroup_mounts_reads_nothing(tmp_path: Path) -> None:
    """``ip netns exec`` gives the process a fresh /sys without cgroup mounts (the process lab)."""
    write(tmp_path / "proc/4242/cgroup", "1:cpu:/tb-lab-agent\n0::/\n")
    write(tmp_path / "proc/4242/mountinfo", "300 299 0:90 / /sys rw - sysfs tb-ns rw\n")
    assert cgroup.locate(tmp_path, pid="4242") is None


def test_missing_or_garbled_files_give_nothing_never_an_error(tmp_path: Path) -> None:
    assert cgroup.locate(tmp_path) is None
    assert cgroup.quota_cores(tmp_path) is None
    group = hybrid(tmp_path)
    found = cgroup.locate(tmp_path)
    assert found is not None
    write(group / "cpu.cfs_quota_us", "lots\n")
    assert cgroup.quota_cores(tmp_path) is None
    before = cgroup.sample(found)
    (group / "cpu.stat").unlink()
    (tmp_path / "sys/fs/cgroup/cpu/cpu.stat").write_text("garbage\n")
    assert cgroup.throttling(before, cgroup.sample(found)) == {}
    # the cgroup named in /proc/self/cgroup is gone: the mount's root is what can be read
    write(tmp_path / "proc/self/cgroup", "1:cpu:/vanished\n")
    assert cgroup.locate(tmp_path) == cgroup.CpuCgroup(1, (tmp_path / "sys/fs/cgroup/cpu",))


async def test_a_job_records_its_throttling_and_no_fields_without_a_cgroup(tmp_path: Path) -> None:
    group = hybrid(tmp_path / "host")
    meter = CpuMeter(interval=0.1, cgroup_root=tmp_path / "host")
    meter.start()
    write(group / "cpu.stat", v1_stat(130, 3, 90_000_000))
    await asyncio.sleep(0.05)
    resources = await meter.stop()
    assert resources["cpu_throttled_periods"] == 3 and resources["cpu_periods"] == 30
    assert resources["cpu_throttled_s"] == 0.09 and resources["cpu_quota_cores"] == 0.2
    bare = CpuMeter(interval=0.1, cgroup_root=tmp_path / "nothing")
    bare.start()
    resources = await bare.stop()
    assert "cpu_periods" not in resources and "cpu_quota_cores" not in resources
    assert "cpu_process_percent" in resources


def test_this_hosts_agent_cgroup_is_readable() -> None:
    found = cgroup.locate()
    if found is None:
        pytest.skip("no cgroup with the cpu controller readable here")
    fields = cgroup.throttling(cgroup.sample(found), cgroup.sample(found))
    assert set(fields) == {"cpu_throttled_periods", "cpu_periods", "cpu_throttled_s", "cpu_quota_cores"}


@pytest.mark.parametrize(("quota_us", "workers"), [(20000, 1), (150000, 1), (250000, 2), (-1, None)])
def test_the_load_generator_sizes_its_workers_from_the_quota(
    tmp_path: Path, quota_us: int, workers: int | None
) -> None:
    hybrid(tmp_path, quota_us=quota_us)
    affinity = len(os.sched_getaffinity(0))
    expected = affinity if workers is None else min(workers, affinity)
    assert generator.usable_cores(tmp_path) == expected
    spec = generator.LoadSpec(("http://127.0.0.1:2379",), "/tb", "closed", clients=16, duration=1.0)
    assert generator.choose_workers(spec, generator.usable_cores(tmp_path)) == min(expected, generator.MAX_WORKERS)
