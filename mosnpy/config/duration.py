"""Go duration strings ("2s", "500ms", "1m30s") to float seconds and back.

MOSN's config types durations as ``api.DurationConfig``, written the way Go's
``time.ParseDuration`` reads them: one or more ``<decimal><unit>`` terms with units
``ns``, ``us`` (or ``µs``/``μs``), ``ms``, ``s``, ``m``, ``h``, or a bare ``"0"``.
mosnpy's models hold seconds as ``float``.

Deliberate differences from MOSN:

* A JSON/YAML *number* is taken as seconds (``"timeout": 1.5``).  MOSN would read a
  number as nanoseconds, which nobody means in a hand-written file.
* Negative durations are rejected: every duration in the config is a timeout or an
  interval, where a negative value is always a mistake.

The sum is computed exactly (``Fraction``) and rounded once, so ``"123ms"`` is exactly
``123 / 1000`` and :func:`format_duration` / :func:`parse_duration` round-trip.
"""

from __future__ import annotations

import math
import re
import reprlib
from fractions import Fraction

__all__ = ["format_duration", "parse_duration"]

_UNITS: dict[str, Fraction] = {
    "ns": Fraction(1, 10**9),
    "us": Fraction(1, 10**6),
    "\u00b5s": Fraction(1, 10**6),  # MICRO SIGN, what Go prints
    "\u03bcs": Fraction(1, 10**6),  # GREEK SMALL LETTER MU
    "ms": Fraction(1, 10**3),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
}

# One term: a decimal number ("1", "1.5", ".5", "1.") and a unit; longest units first
# so "ms" is not read as "m" followed by a stray "s".
_TERM = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|h|m|s)", re.ASCII)

_short = reprlib.Repr()
_short.maxstring = 40

# Go's time.Duration is an int64 of nanoseconds: about 292 years.
_MAX_SECONDS = (2**63 - 1) / 10**9


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``: a Go duration string, or a number of seconds.

    Raises:
        ValueError: with a message fit to follow ``"<path>: "``.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '2s' or '500ms', got {_short.repr(value)}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError("duration is out of range (at most about 292 years)") from None
        if not math.isfinite(seconds):
            raise ValueError(f"duration must be finite, got {_short.repr(value)}")
        if seconds < 0:
            raise ValueError(f"duration must not be negative, got {_short.repr(value)}")
        if seconds > _MAX_SECONDS:
            raise ValueError(f"duration {_short.repr(value)} is out of range (at most about 292 years)")
        return seconds
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '2s' or '500ms', got {type(value).__name__}")
    text = value[1:] if value.startswith("+") else value
    if value.startswith("-"):
        raise ValueError(f"duration must not be negative, got {_short.repr(value)}")
    if text == "0":
        return 0.0
    total = Fraction(0)
    pos = 0
    while pos < len(text):
        match = _TERM.match(text, pos)
        if match is None:
            raise ValueError(_bad(value, text[pos:]))
        number, unit = match.groups()
        total += Fraction(number) * _UNITS[unit]
        pos = match.end()
    if pos == 0:
        raise ValueError(_bad(value, ""))
    if total > _MAX_SECONDS:
        raise ValueError(f"duration {_short.repr(value)} is out of range (at most about 292 years)")
    return float(total)


def _bad(value: str, rest: str) -> str:
    """The message for ``value``, which could not be read from ``rest`` on."""
    number_unit = re.match(r"(\d+\.?\d*|\.\d+)([^\d.]*)", rest, re.ASCII)
    if number_unit is None:
        hint = f" (cannot read {_short.repr(rest)})" if rest else ""
    elif number_unit.group(2):
        hint = f" (unknown unit {_short.repr(number_unit.group(2))})"
    elif rest == value and number_unit.end() == len(rest):
        hint = f" (missing unit: write '{rest}s', or the number {rest} unquoted for seconds)"
    else:
        hint = f" (missing unit after {_short.repr(number_unit.group(1))})"
    return (
        f"invalid duration {_short.repr(value)}{hint}; expected Go duration syntax such as "
        "'2s', '500ms', '1m30s', '1.5s', '100us' or '0'"
    )


def format_duration(seconds: float) -> str:
    """``seconds`` as a Go duration string ("1m30s", "1.5s", "500ms", "0s").

    Rounded to whole nanoseconds, the resolution of Go's ``time.Duration``.  Like Go's
    ``Duration.String`` except that microseconds are written ``us`` (plain ASCII).
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    ns = round(Fraction(seconds) * 10**9)
    if ns == 0:
        return "0s"
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _frac(ns, 3) + "us"
    if ns < 1_000_000_000:
        return _frac(ns, 6) + "ms"
    whole_s, ns_rest = divmod(ns, 10**9)
    hours, rest = divmod(whole_s, 3600)
    minutes, secs = divmod(rest, 60)
    out = _frac(secs * 10**9 + ns_rest, 9) + "s"
    if hours:
        return f"{hours}h{minutes}m{out}"
    if minutes:
        return f"{minutes}m{out}"
    return out


def _frac(value: int, digits: int) -> str:
    """``value / 10**digits`` in decimal, without trailing zeros."""
    whole, frac = divmod(value, 10**digits)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:0{digits}d}".rstrip("0")
