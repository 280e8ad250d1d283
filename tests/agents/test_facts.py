"""Node facts: what GET /v1/facts and the node probe report, checked against the machine."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from talbench.agents.facts import basic_facts, cpu_model, node_facts, tool_version, tool_versions
from talbench.agents.probes.registry import declarations
from tests.agents.helpers import AUTH

pytestmark = pytest.mark.processes


def test_basic_facts_describe_this_machine() -> None:
    facts = basic_facts()
    assert facts["cpus"] == os.cpu_count()
    assert facts["memory_bytes"] == psutil.virtual_memory().total
    assert facts["kernel"] == platform.release()
    assert facts["cpu_model"] == cpu_model() and facts["cpu_model"]
    assert facts["talbench"]


@pytest.mark.skipif(shutil.which("fio") is None, reason="needs fio")
def test_tool_versions_are_what_the_tools_print() -> None:
    printed = subprocess.run(["fio", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    assert basic_facts()["tools"]["fio"] == printed


def test_a_missing_tool_has_no_version(tmp_path: Path) -> None:
    assert tool_version(str(tmp_path / "nope")) is None


def test_a_tool_without_version_flag_has_no_version() -> None:
    # ``false`` exits 1 whatever it is asked: an error text is not a version
    assert tool_version("false") is None


def test_versions_are_those_of_the_declared_tools() -> None:
    declared = {tool.binary for declaration in declarations().values() for tool in declaration.tools}
    assert "fio" in declared
    assert set(tool_versions()) == declared


def test_cpu_model_matches_proc_cpuinfo() -> None:
    text = Path("/proc/cpuinfo").read_text()
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    if not names:
        pytest.skip("no 'model name' in /proc/cpuinfo (not x86)")
    assert cpu_model() == names[0]


def test_node_facts_use_etcds_filesystem_when_visible(tmp_path: Path) -> None:
    etcd = tmp_path / "etcd"
    etcd.mkdir()
    seen = node_facts(tmp_path, str(etcd))
    assert seen["etcd_filesystem"]["seen_as"] == "etcd_dir"
    assert seen["etcd_filesystem"]["path"] == str(etcd.resolve())
    assert seen["etcd_filesystem"]["size_bytes"] == os.statvfs(etcd).f_blocks * os.statvfs(etcd).f_frsize


def test_node_facts_fall_back_to_the_data_dir(tmp_path: Path) -> None:
    seen = node_facts(tmp_path, str(tmp_path / "no-etcd-here"))
    assert seen["etcd_dir"] is None
    assert seen["etcd_filesystem"]["seen_as"] == "data_dir"
    assert seen["etcd_filesystem"]["path"] == str(tmp_path.resolve())


async def test_facts_endpoint_serves_them(start_agent) -> None:
    agent = await start_agent({})
    response = await agent.client.get("/v1/facts", headers=AUTH)
    assert response.status == 200
    facts = (await response.json())["facts"]
    assert facts["cpus"] == os.cpu_count() and facts["memory_bytes"] > 0 and "fio" in facts["tools"]
