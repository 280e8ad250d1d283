"""A probe's declared parameters read from a scenario file.

Scenario files write durations and sizes with units (``20ms``, ``22MiB``); the declaration
(agents/params.py) says which fields carry one.  Those strings become plain numbers here, then
the declaration itself validates the block, so the scenario, the driver and the agent read the
same defaults and bounds.  Every problem is one ScenarioError line naming the setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from talbench.agents.params import BYTES, PER_SECOND, SECONDS, ParamError, Params, unit_of, validate
from talbench.bench.errors import ScenarioError
from talbench.bench.units import Dimension, UnitError, parse_duration, parse_quantity

P = TypeVar("P", bound=Params)


def from_scenario(model: type[P], raw: Mapping[str, object] | None) -> P:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"settings must be a mapping, not {type(raw).__name__}")
    values: dict[str, object] = {}
    for key, value in raw.items():
        key = str(key)
        unit = unit_of(model, key) if key in model.model_fields else None
        try:
            values[key] = _plain(value, unit.name if unit else None)
        except UnitError as exc:
            raise ScenarioError(f"{key}: {exc}") from exc
    try:
        return validate(model, values)
    except ParamError as exc:
        raise ScenarioError(str(exc)) from exc


def _plain(value: object, unit: str | None) -> object:
    if unit == SECONDS.name and isinstance(value, str):
        return parse_duration(value)
    if unit == BYTES.name and isinstance(value, str):
        return int(parse_quantity(value, Dimension.BYTES).value)
    if unit == PER_SECOND.name and isinstance(value, str):
        return parse_quantity(value, Dimension.RATE).value
    if isinstance(value, list):  # YAML sequences: the declaration decides (tuples accept lists)
        return list(value)
    return value
