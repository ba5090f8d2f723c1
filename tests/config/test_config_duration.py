"""Go duration strings: the table, the errors, and round trips."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mosnpy.config import ConfigError, format_duration, parse_config, parse_duration

PARSED = [
    ("2s", 2.0),
    ("500ms", 0.5),
    ("1m30s", 90.0),
    ("1.5s", 1.5),
    ("100us", 0.0001),
    ("100\u00b5s", 0.0001),
    ("100\u03bcs", 0.0001),
    ("10ns", 1e-8),
    ("0", 0.0),
    ("0s", 0.0),
    ("1h", 3600.0),
    ("1h2m3.5s", 3723.5),
    ("2.5ms", 0.0025),
    (".5s", 0.5),
    ("1.s", 1.0),
    ("+3s", 3.0),
    ("1s500ms", 1.5),
    (3, 3.0),
    (1.5, 1.5),
    (0, 0.0),
]


@pytest.mark.parametrize(("text", "seconds"), PARSED)
def test_parse(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


BAD = [
    ("", "invalid duration ''"),
    ("5", "missing unit: write '5s'"),
    ("1s2", "missing unit after '2'"),
    ("s", "cannot read 's'"),
    ("1 s", "unknown unit ' s'"),
    ("1e3s", "unknown unit 'e'"),
    ("1.2.3s", "missing unit after '1.2'"),
    ("1x", "unknown unit 'x'"),
    ("-1s", "must not be negative"),
    (-1, "must not be negative"),
    (float("nan"), "must be finite"),
    (float("inf"), "must be finite"),
    ("99999999999h", "out of range"),
    (10**400, "out of range"),
    (True, "expected a duration"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_parse_rejects(text: str | float, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert message in str(info.value)


FORMATTED = [
    (0, "0s"),
    (1e-9, "1ns"),
    (1.5e-6, "1.5us"),
    (0.5, "500ms"),
    (0.0025, "2.5ms"),
    (1.5, "1.5s"),
    (90, "1m30s"),
    (3600, "1h0m0s"),
    (3723.25, "1h2m3.25s"),
]


@pytest.mark.parametrize(("seconds", "text"), FORMATTED)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


UNITS = {"ns": Fraction(1, 10**9), "us": Fraction(1, 10**6), "ms": Fraction(1, 1000), "s": Fraction(1)}
UNITS |= {"m": Fraction(60), "h": Fraction(3600)}


@given(st.integers(0, 10**6), st.sampled_from(sorted(UNITS)))
def test_formatted_numbers_parse_back(count: int, unit: str) -> None:
    assert parse_duration(f"{count}{unit}") == float(count * UNITS[unit])


@given(st.integers(0, 10**6), st.integers(0, 999))
def test_decimal_seconds_parse_back(whole: int, millis: int) -> None:
    assert parse_duration(f"{whole}.{millis:03d}s") == float(Fraction(whole * 1000 + millis, 1000))


@given(st.integers(0, 10**15))
def test_format_then_parse_round_trips(nanoseconds: int) -> None:
    seconds = nanoseconds / 10**9
    assert parse_duration(format_duration(seconds)) == seconds


def _doc_with_timeout(value: object) -> dict[str, object]:
    return {"cluster_manager": {"clusters": [{"name": "c", "connect_timeout": value}]}}


@pytest.mark.parametrize(("value", "seconds"), [("2s", 2.0), (2, 2.0), ("250ms", 0.25), (None, 10.0)])
def test_duration_fields_in_config(value: object, seconds: float) -> None:
    config = parse_config(_doc_with_timeout(value))
    assert config.cluster_manager.clusters[0].connect_timeout == seconds


def test_bad_duration_names_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_doc_with_timeout("2 seconds"))
    assert info.value.path == "cluster_manager.clusters[0].connect_timeout"
    assert info.value.problem.startswith("invalid duration '2 seconds'")


def test_duration_of_wrong_type_names_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_doc_with_timeout([1]))
    assert str(info.value) == (
        "cluster_manager.clusters[0].connect_timeout: "
        "expected a duration like '2s' or a number of seconds, got a list"
    )
