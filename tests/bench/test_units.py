import pytest

from talbench.bench.units import Dimension, UnitError, format_value, parse_quantity


@pytest.mark.parametrize(
    ("raw", "dimension", "value"),
    [
        ("15ms", Dimension.DURATION, 0.015),
        ("500us", Dimension.DURATION, 0.0005),
        ("2s", Dimension.DURATION, 2.0),
        ("10 %", Dimension.RATIO, 0.1),
        (0.9, Dimension.RATIO, 0.9),
        ("8GiB", Dimension.BYTES, 8 * 2**30),
        ("40GB", Dimension.BYTES, 40e9),
        ("900Mbit/s", Dimension.BITRATE, 9e8),
        (3, Dimension.COUNT, 3.0),
    ],
)
def test_parses_quantities_into_base_units(raw, dimension, value):
    assert parse_quantity(raw, dimension).value == pytest.approx(value)


@pytest.mark.parametrize(
    ("raw", "dimension", "words"),
    [
        (15, Dimension.DURATION, "needs a unit"),
        ("15", Dimension.DURATION, "needs a unit"),
        ("15 parsecs", Dimension.DURATION, "unknown unit"),
        ("10 %", Dimension.DURATION, "is a ratio, expected a duration"),
        ("fast", Dimension.DURATION, "not a quantity"),
        (True, Dimension.COUNT, "not a quantity"),
    ],
)
def test_rejects_what_does_not_fit(raw, dimension, words):
    with pytest.raises(UnitError, match=words):
        parse_quantity(raw, dimension)


def test_formats_for_people():
    assert format_value(0.0153, Dimension.DURATION) == "15.3 ms"
    assert format_value(0.000042, Dimension.DURATION) == "42 µs"
    assert format_value(0.125, Dimension.RATIO) == "12.5 %"
    assert format_value(8 * 2**30, Dimension.BYTES) == "8 GiB"
    # packet and block sizes stay exact: a path MTU of 1480 must not read like 1500
    assert format_value(1480, Dimension.BYTES) == "1480 B" and format_value(1500, Dimension.BYTES) == "1500 B"
    assert format_value(22 * 2**20, Dimension.BYTES) == "22 MiB"
    assert format_value(None, Dimension.DURATION) == "-"
