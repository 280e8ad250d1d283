"""One registry of probes: every probe is one declared unit, and what lists probes elsewhere (the
agent's job table, the coordinator's driver table, the tools the Makefile and the image install,
the DaemonSet's capabilities) agrees with the declarations."""

from __future__ import annotations

import re
from pathlib import Path

from talbench.agents.params import describe
from talbench.agents.probes import declarations, default_probes
from talbench.bench.kube.manifests import AgentSpec, agent_daemonset
from talbench.bench.probes import default_drivers, registry

ROOT = Path(__file__).resolve().parents[3]


def test_every_agent_probe_has_its_driver_and_the_same_settings_declaration():
    drivers = default_drivers()
    for name, declaration in declarations().items():
        assert name in drivers, f"agent probe {name} has no coordinator driver"
        assert drivers[name].declaration is declaration
        assert drivers[name].settings_model is declaration.settings
    for entry in registry():
        assert entry.driver.name == entry.name
        if entry.declaration is not None:
            assert entry.declaration.name == entry.name


def test_the_agent_job_table_is_the_declared_jobs_named_after_their_probe():
    jobs = default_probes()
    declared = {job.name: probe for probe, d in declarations().items() for job in d.jobs}
    assert set(jobs) == set(declared)
    for job, probe in declared.items():
        assert job == probe or job.startswith(probe + "."), job
        assert re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?", job), job


def test_every_metric_belongs_to_its_probe_and_every_parameter_has_help():
    for entry in registry():
        for metric in entry.driver.metrics():
            assert metric.probe == entry.name and metric.name.startswith(entry.name + "."), metric.name
        for doc in describe(entry.driver.settings_model):
            assert doc.help, f"{entry.name}.{doc.name} has no help text"


def _makefile_packages() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    match = re.search(r"^APT_PACKAGES\s*:=\s*(.+)$", text, re.M)
    assert match is not None
    return set(match.group(1).split())


def _image_packages() -> set[str]:
    text = (ROOT / "agents" / "Containerfile").read_text().replace("\\\n", " ")
    installs = re.findall(r"apt-get install[^&]*", text)
    return {
        word
        for line in installs
        for word in line.split()
        if not word.startswith("-") and word not in ("apt-get", "install")
    }


def test_every_declared_tool_is_installed_by_the_makefile_and_the_image():
    tools = {tool for d in declarations().values() for tool in d.tools}
    assert tools, "no probe declares a tool"
    make, image = _makefile_packages(), _image_packages()
    for tool in sorted(tools, key=lambda t: t.binary):
        assert tool.debian_package in make, f"Makefile does not install {tool.debian_package} ({tool.binary})"
        assert tool.debian_package in image, (
            f"agents/Containerfile does not install {tool.debian_package} ({tool.binary})"
        )


def test_the_daemonset_grants_exactly_the_declared_capabilities():
    declared = {cap for d in declarations().values() for cap in d.capabilities}
    spec = AgentSpec(run_id="20261125-000000-abcd", namespace="talbench-x", image="img", token="t")
    (container,) = agent_daemonset(spec)["spec"]["template"]["spec"]["containers"]
    granted = set(container["securityContext"]["capabilities"]["add"])
    assert granted == declared, f"DaemonSet adds {sorted(granted)}, probes declare {sorted(declared)}"
