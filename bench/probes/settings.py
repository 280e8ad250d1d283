"""Validation of a probe's settings block in a scenario: one-line ScenarioErrors that name the
setting and its bounds.  Shared by every driver's ``settings(raw, quick=)``."""

from __future__ import annotations

from typing import Any, Iterable

from talbench.bench.errors import ScenarioError
from talbench.bench.units import Dimension, UnitError, parse_duration, parse_quantity


def whole_number(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ScenarioError(f"{key} must be a whole number from {low} to {high}, not {value!r}")
    return value


def seconds(key: str, value: Any, low: float, high: float) -> float:
    try:
        parsed = parse_duration(value)
    except UnitError as exc:
        raise ScenarioError(f"{key}: {exc}") from exc
    if not low <= parsed <= high:
        raise ScenarioError(f"{key} must lie between {low:g}s and {high:g}s, not {value}")
    return parsed


def byte_count(key: str, value: Any, low: int, high: int) -> int:
    """A size as a plain number of bytes or a quantity (``22MiB``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        try:
            number = int(parse_quantity(value, Dimension.BYTES).value)
        except UnitError as exc:
            raise ScenarioError(f"{key}: {exc}") from exc
    if not low <= number <= high:
        raise ScenarioError(f"{key} must lie between {low} and {high} bytes, not {value!r}")
    return number


def absolute_path_or_empty(key: str, value: Any) -> str:
    if not isinstance(value, str) or (value and not value.startswith("/")):
        raise ScenarioError(f"{key} must be an absolute path or empty, not {value!r}")
    return value


def unknown_setting(key: str, known: Iterable[str]) -> ScenarioError:
    return ScenarioError(f"unknown setting {key!r} (known: {', '.join(sorted(known))})")
