"""What ``talbench scenarios`` prints for one scenario, read from its declarations: the checks
(each once, with its limit and its one source), then for every probe the scenario uses the
parameters its driver declares (``settings_model``, described by ``talbench.agents.params``),
with the scenario's value where the scenario sets one.  Returns lines; the CLI prints them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from talbench.agents.params import BYTES, PER_SECOND, SECONDS, ParamDoc, describe
from talbench.bench.scenario import Composition

INDENT = "  "
_COLUMNS = ("parameter", "scenario", "default", "bounds", "meaning")


def scenario_lines(composition: Composition, thresholds: Mapping[str, str], drivers: Mapping[str, object]) -> list[str]:
    """The scenario's header, checks and probe parameters, one printable line each.
    ``thresholds``: check name -> its limits as the judge words them (``< 15ms, warn >= 10ms``);
    ``drivers``: the probe drivers, of which only ``settings_model`` is read."""
    scenario = composition.scenario
    lines = [f"{scenario.name}: {scenario.description}"]
    if composition.includes:
        lines.append(f"{INDENT}includes: {', '.join(composition.includes)}")
    own_file = Path(scenario.path).name
    for check in scenario.checks:
        lines.append(f"{INDENT}{check.name}  {check.metric} over {check.scope.value}: {thresholds[check.name]}")
        if check.description:
            lines.append(f"{INDENT * 3}{check.description}")
        lines.append(f"{INDENT * 3}source: {check.source}")
        origin = composition.check_origins.get(check.name, "")
        if origin and Path(origin.rsplit(":", 1)[0]).name != own_file:
            lines.append(f"{INDENT * 3}from: {Path(origin).name}")
    lines.append(f"{INDENT}probe parameters (the scenario's value, else the default):")
    for probe in scenario.probe_names:
        lines.extend(parameter_lines(probe, drivers.get(probe), scenario.probes.get(probe, {})))
    return lines


def parameter_lines(probe: str, driver: object, settings: Mapping[str, Any]) -> list[str]:
    """``probe``'s declared parameters as an aligned table; a driver that declares no
    ``settings_model`` (not converted yet) gets one line with what the scenario sets."""
    model = getattr(driver, "settings_model", None)
    if model is None:
        written = ", ".join(f"{key}={show(value)}" for key, value in settings.items()) or "nothing"
        return [f"{INDENT * 2}{probe}: no declared parameters (the scenario sets {written})"]
    rows: list[tuple[str, ...]] = [_COLUMNS, *(_row(doc, settings) for doc in describe(model))]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    lines = [f"{INDENT * 2}{probe}:"]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)] + [row[-1]]
        lines.append(f"{INDENT * 3}{'  '.join(cells)}".rstrip())
    return lines


def _row(doc: ParamDoc, settings: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    value = show(settings[doc.name]) if doc.name in settings else "-"
    default = "required" if doc.required else _default(doc)
    bounds = " ".join(part for part in (doc.bounds, f"({doc.unit})" if doc.unit else "") if part) or "-"
    meaning = doc.help + (" [coordinator only]" if doc.coordinator_only else "")
    return (doc.name, value, default, bounds, meaning)


def _default(doc: ParamDoc) -> str:
    """The default as a scenario would write it: ``20ms``, ``7200s``, ``22MiB``, ``2300``."""
    value = doc.default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return show(value)
    if doc.unit == SECONDS.name:
        for suffix, factor in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
            if abs(value) >= factor or value == 0 or suffix == "us":
                return f"{round(value / factor, 9):g}{suffix}"
    if doc.unit == PER_SECOND.name:
        return f"{value:g}/s"
    if doc.unit == BYTES.name and value == int(value):
        for suffix, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if value and int(value) % factor == 0:
                return f"{int(value) // factor}{suffix}"
    return show(value)


def show(value: Any) -> str:
    """A setting as a scenario file writes it: ``true``, ``20ms``, ``[a, b]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {show(item)}" for key, item in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
