"""``talbench scenarios``' text for one probe: the declared parameters with the scenario's values,
and one line for a driver that declares no settings model."""

from __future__ import annotations

from talbench.agents.params import BYTES, SECONDS, Params, param
from talbench.bench.report.scenarios_text import parameter_lines, show


class DemoSettings(Params):
    wait: float = param(0.02, help="pause", ge=0, le=10, unit=SECONDS)
    size: int = param(22 * 2**20, help="bytes written", ge=1, unit=BYTES)
    block: int = param(2300, help="per write", unit=BYTES)
    floor: int = param(100, help="fewer: invalid", coordinator_only=True)


class Declared:
    settings_model = DemoSettings


class Undeclared:
    pass


def test_declared_parameters_show_the_scenarios_value_else_the_default() -> None:
    title, header, *rows = parameter_lines("demo", Declared(), {"wait": "50ms"})
    assert title.strip() == "demo:"
    assert header.split() == ["parameter", "scenario", "default", "bounds", "meaning"]
    cells = {row.split()[0]: row.split() for row in rows}
    assert cells["wait"][1:3] == ["50ms", "20ms"] and "(seconds)" in rows[0]
    assert cells["size"][1:3] == ["-", "22MiB"]
    assert cells["block"][1:3] == ["-", "2300"]
    assert rows[-1].endswith("fewer: invalid [coordinator only]")


def test_a_driver_without_a_settings_model_gets_one_line() -> None:
    (line,) = parameter_lines("old", Undeclared(), {"count": 3, "names": ["a", "b"], "on": True})
    assert line.strip() == "old: no declared parameters (the scenario sets count=3, names=[a, b], on=true)"
    assert parameter_lines("old", None, {})[0].strip() == "old: no declared parameters (the scenario sets nothing)"
    assert show({"a": 0.5}) == "{a: 0.5}"
