"""Quantities with units, as written in scenarios (``15ms``, ``10 %``, ``8GiB``, ``900Mbit/s``).

Values are kept in one base unit per dimension: seconds, fraction (0..1), bytes, bits per
second, plain count.  Parsing is strict: a limit whose unit does not fit the metric is an error.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum


class Dimension(str, Enum):
    DURATION = "duration"  # seconds
    RATIO = "ratio"  # fraction; "10 %" == 0.1
    BYTES = "bytes"
    BITRATE = "bitrate"  # bits per second
    RATE = "rate"  # events per second (requests/s, IOPS)
    COUNT = "count"  # plain number (cores, members, nodes)


_UNITS: dict[str, tuple[Dimension, float]] = {
    "ns": (Dimension.DURATION, 1e-9),
    "us": (Dimension.DURATION, 1e-6),
    "µs": (Dimension.DURATION, 1e-6),
    "ms": (Dimension.DURATION, 1e-3),
    "s": (Dimension.DURATION, 1.0),
    "%": (Dimension.RATIO, 0.01),
    "B": (Dimension.BYTES, 1.0),
    "KB": (Dimension.BYTES, 1e3),
    "MB": (Dimension.BYTES, 1e6),
    "GB": (Dimension.BYTES, 1e9),
    "TB": (Dimension.BYTES, 1e12),
    "KiB": (Dimension.BYTES, 2.0**10),
    "MiB": (Dimension.BYTES, 2.0**20),
    "GiB": (Dimension.BYTES, 2.0**30),
    "TiB": (Dimension.BYTES, 2.0**40),
    "bit/s": (Dimension.BITRATE, 1.0),
    "Kbit/s": (Dimension.BITRATE, 1e3),
    "Mbit/s": (Dimension.BITRATE, 1e6),
    "Gbit/s": (Dimension.BITRATE, 1e9),
    "/s": (Dimension.RATE, 1.0),
}

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\d\s].*?)?\s*$")


class UnitError(ValueError):
    """A quantity that cannot be parsed or has the wrong unit for its use."""


@dataclass(frozen=True)
class Quantity:
    value: float  # in the dimension's base unit
    dimension: Dimension
    text: str  # as written, for reports ("15ms")

    def __str__(self) -> str:
        return self.text


def parse_quantity(raw: object, dimension: Dimension) -> Quantity:
    """Parse ``raw`` (``"15ms"``, ``"10 %"``, ``3``) as a quantity of ``dimension``.

    Plain numbers are accepted for ratio (as a fraction) and count; every other dimension
    needs its unit, because ``15`` for a latency is ambiguous.
    """
    if isinstance(raw, bool):
        raise UnitError(f"{raw!r} is not a quantity")
    if isinstance(raw, (int, float)):
        if dimension in (Dimension.COUNT, Dimension.RATIO, Dimension.RATE):
            return Quantity(float(raw), dimension, str(raw))
        raise UnitError(f"{raw!r} needs a unit ({_examples(dimension)})")
    if not isinstance(raw, str):
        raise UnitError(f"{raw!r} is not a quantity")
    match = _QUANTITY.match(raw)
    if not match:
        raise UnitError(f"{raw!r} is not a quantity ({_examples(dimension)})")
    number, unit = float(match.group(1)), (match.group(2) or "")
    if not math.isfinite(number):
        raise UnitError(f"{raw!r} is not finite")
    if not unit:
        return parse_quantity(number, dimension) if dimension != Dimension.DURATION else _no_unit(raw, dimension)
    if unit not in _UNITS:
        raise UnitError(f"unknown unit {unit!r} in {raw!r} ({_examples(dimension)})")
    unit_dimension, factor = _UNITS[unit]
    if unit_dimension != dimension:
        raise UnitError(f"{raw!r} is a {unit_dimension.value}, expected a {dimension.value} ({_examples(dimension)})")
    return Quantity(number * factor, dimension, raw.strip())


def parse_duration(raw: object) -> float:
    """Seconds from ``"50ms"``, ``"2s"``."""
    return parse_quantity(raw, Dimension.DURATION).value


def _no_unit(raw: object, dimension: Dimension) -> Quantity:
    raise UnitError(f"{raw!r} needs a unit ({_examples(dimension)})")


def _examples(dimension: Dimension) -> str:
    return {
        Dimension.DURATION: "e.g. 15ms, 500us, 2s",
        Dimension.RATIO: "e.g. 10 % or 0.1",
        Dimension.BYTES: "e.g. 40GB, 8GiB",
        Dimension.BITRATE: "e.g. 900Mbit/s",
        Dimension.RATE: "e.g. 150/s or 150",
        Dimension.COUNT: "a plain number",
    }[dimension]


def format_value(value: float | None, dimension: Dimension) -> str:
    """Human form of a base-unit value: ``0.0153`` seconds -> ``15.3 ms``."""
    if value is None:
        return "-"
    if dimension == Dimension.DURATION:
        magnitude = abs(value)
        if magnitude >= 1:
            return f"{value:.3g} s"
        if magnitude >= 1e-3:
            return f"{value * 1e3:.3g} ms"
        if magnitude >= 1e-6:
            return f"{value * 1e6:.3g} µs"
        return f"{value * 1e9:.3g} ns"
    if dimension == Dimension.RATIO:
        return f"{value * 100:.3g} %"
    if dimension == Dimension.BYTES:
        if abs(value) < 10 * 2**10:  # packet and block sizes: exact (1480 and 1500 B must differ)
            return f"{value:.0f} B"
        for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= factor:
                return f"{value / factor:.3g} {unit}"
        return f"{value:.0f} B"
    if dimension == Dimension.BITRATE:
        for unit, factor in (("Gbit/s", 10**9), ("Mbit/s", 10**6), ("Kbit/s", 10**3)):
            if abs(value) >= factor:
                return f"{value / factor:.3g} {unit}"
        return f"{value:.0f} bit/s"
    if dimension == Dimension.RATE:
        return f"{value:.4g}/s"
    return f"{value:.4g}"
