"""One registry of probes: every probe is one declared unit, and what lists probes elsewhere (the
agent's job table, the coordinator's driver table, the tools the Makefile and the image install,
the DaemonSet's capabilities) agrees with the declarations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from talbench.agents.params import describe
from talbench.agents.probe import Tool
from talbench.agents.probes.registry import PROBES, declarations, default_probes
from talbench.bench.kube.manifests import AgentSpec, agent_daemonset
from talbench.bench.probes import DRIVERS, default_drivers, registry

ROOT = Path(__file__).resolve().parents[3]
BUILD = ROOT / "agents" / "build"


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


def test_a_probe_declared_twice_is_refused():
    with pytest.raises(RuntimeError, match="declared twice"):
        declarations((*PROBES, PROBES[0]))
    with pytest.raises(RuntimeError, match="declared twice"):
        default_drivers((*DRIVERS, DRIVERS[0]))


def test_each_probe_has_one_folder_on_each_side_with_the_same_name():
    """agents/probes/<name>/ and bench/probes/<name>/ (a probe with no agent side has only the
    bench folder), each folder a package of the probe that the registries import."""
    folders = {"agents": _folders(ROOT / "agents" / "probes"), "bench": _folders(ROOT / "bench" / "probes")}
    for entry in registry():
        folder = entry.name.replace("-", "_")
        assert folder in folders["bench"], entry.name
        assert type(entry.driver).__module__ == f"talbench.bench.probes.{folder}.driver"
        if entry.declaration is not None:
            assert folder in folders["agents"], entry.name
    assert folders["bench"] == {entry.name.replace("-", "_") for entry in registry()}
    assert folders["agents"] == {name.replace("-", "_") for name in declarations()}


def _folders(root: Path) -> set[str]:
    return {path.parent.name for path in root.glob("*/__init__.py")}


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
    """The Debian packages agents/build/build-image.sh puts into the image."""
    text = (BUILD / "image-packages.txt").read_text()
    return {word for line in text.splitlines() for word in line.split("#", 1)[0].split()}


def _makefile_target(target: str) -> tuple[list[str], str] | None:
    """The prerequisites and the recipe of a Makefile target; None when there is no such target."""
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:([^\n=]*)\n((?:\t.*\n)*)", text, re.M)
    return (match.group(1).split(), match.group(2)) if match else None


def _debian_tools() -> list[Tool]:
    return sorted({t for d in declarations().values() for t in d.tools if t.debian_package}, key=lambda t: t.binary)


def _built_tools() -> list[Tool]:
    return sorted({t for d in declarations().values() for t in d.tools if t.built_by}, key=lambda t: t.binary)


def test_every_declared_tool_comes_from_debian_or_a_build():
    tools = {tool for d in declarations().values() for tool in d.tools}
    assert tools, "no probe declares a tool"
    assert set(_debian_tools()) | set(_built_tools()) == tools
    with pytest.raises(ValueError, match="either its Debian package or the make target"):
        Tool("etcd", "etcd-server", built_by="etcd", version="3.6.16")
    with pytest.raises(ValueError, match="a built tool names its version"):
        Tool("etcd", built_by="etcd")


def test_every_debian_tool_is_installed_by_the_makefile_and_the_image():
    make, image = _makefile_packages(), _image_packages()
    for tool in _debian_tools():
        assert tool.debian_package in make, f"Makefile does not install {tool.debian_package} ({tool.binary})"
        assert tool.debian_package in image, (
            f"agents/build/image-packages.txt does not list {tool.debian_package} ({tool.binary})"
        )


def test_every_built_tool_is_built_by_its_make_target_at_its_version():
    """``Tool(binary, built_by=T, version=V)``: make target T runs agents/build/build-T.sh, which
    pins V (T_VERSION=vV, and agents/build/T/go.mod for a Go build), builds cmd/<binary>, and what
    needs the tool (the venv, the tests, the lab run, the benchmarks) depends on T."""
    built = _built_tools()
    assert built, "no probe declares a built tool"
    for tool in built:
        script = BUILD / f"build-{tool.built_by}.sh"
        target = _makefile_target(tool.built_by)
        assert target is not None, f"the Makefile has no target {tool.built_by}"
        assert f"agents/build/{script.name}" in target[1], f"make {tool.built_by} does not run {script}"
        variable = f"{tool.built_by.upper()}_VERSION"
        assert re.search(rf"^{variable}=v{re.escape(tool.version)}$", script.read_text(), re.M), (
            f"{script.name} does not build {tool.binary} {tool.version} ({variable})"
        )
        assert (BUILD / tool.built_by / "cmd" / tool.binary / "main.go").is_file(), f"nothing builds {tool.binary}"
        go_mod = BUILD / tool.built_by / "go.mod"
        if go_mod.exists():
            pins = re.findall(r"^\t(\S+) (v\S+)$", go_mod.read_text(), re.M)
            assert {version for module, version in pins if module.startswith("go.etcd.io/etcd/")} == {
                f"v{tool.version}"
            }
        for needs in ("venv", "test", "run", "bench"):
            prerequisites = _makefile_target(needs)
            assert prerequisites and tool.built_by in prerequisites[0], (
                f"make {needs} does not depend on {tool.built_by}"
            )


def test_every_built_tool_goes_into_the_image_at_its_version():
    """agents/build/build-image.sh takes a built tool from the cache its build script fills, at
    the same version, and its customize hook installs the binary on the image's PATH."""
    image_script = (BUILD / "build-image.sh").read_text()
    customize = (BUILD / "image-customize.sh").read_text()
    for tool in _built_tools():
        variable = f"{tool.built_by.upper()}_VERSION"
        assert re.search(rf"^{variable}=\$\{{{variable}:-v{re.escape(tool.version)}\}}$", image_script, re.M), (
            f"build-image.sh does not take {tool.binary} {tool.version} ({variable})"
        )
        assert f"$CACHE/{tool.built_by}/${variable}/linux-$arch" in image_script
        assert re.search(rf"install [^\n]*\$TB_{tool.built_by.upper()}_DIR/{tool.binary}\b", customize), (
            f"image-customize.sh does not install {tool.binary}"
        )
    image = _makefile_target("image")
    assert image is not None, "the Makefile has no target image"
    for built_by in {tool.built_by for tool in _built_tools()}:
        assert built_by in image[0], f"make image does not depend on {built_by}"


def test_the_daemonset_grants_exactly_the_declared_capabilities():
    declared = {cap for d in declarations().values() for cap in d.capabilities}
    spec = AgentSpec(run_id="20261125-000000-abcd", namespace="talbench-x", image="img", token="t")
    (container,) = agent_daemonset(spec)["spec"]["template"]["spec"]["containers"]
    granted = set(container["securityContext"]["capabilities"]["add"])
    assert granted == declared, f"DaemonSet adds {sorted(granted)}, probes declare {sorted(declared)}"
