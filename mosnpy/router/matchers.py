"""Compiled route matchers: the path test and the header tests of one route.

Everything here is built once from config and then only *called* per request, so each
class keeps the smallest precomputed state its test needs: a string to compare, a
compiled pattern, a header name already lower-cased.

Why these semantics:

* Path matchers see the path without its query string; the caller strips it once per
  request (:func:`strip_query`), not once per route.
* ``regex`` is a *full* match (Envoy's rule, and what users mean by "the path matches
  this pattern"); MOSN's Go code searches instead, a quirk not copied.  ``path`` is an
  exact, case-sensitive comparison (RFC 3986 paths are case-sensitive); MOSN compares
  case-insensitively, also not copied.
* When a config sets several of ``prefix`` / ``path`` / ``regex`` the first non-empty
  one in that order wins, as in MOSN.  An empty string counts as unset, as in MOSN.
* A header matcher's value ``".*"`` matches any value *present*, regex flag or not.
  That is MOSN's RPC rule (``{"name": "service", "value": ".*"}`` routes every dubbo
  call); mosnpy applies it to every header name, not just ``service``, so the rule is
  one sentence long.  Otherwise the value is compared exactly, or fully matched when
  ``regex`` is true.  An absent header never matches.  With repeated headers the first
  value is tested (what :meth:`HeaderMap.get` returns, and MOSN's ``Get``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

from mosnpy.config.models import HeaderMatcherConfig, RouteMatchConfig

__all__ = [
    "ANY_VALUE",
    "HeaderMatcher",
    "PathKind",
    "PathMatcher",
    "RouterConfigError",
    "headers_match",
    "strip_query",
]

#: A header matcher value that matches any present value (MOSN's RPC wildcard).
ANY_VALUE: Final = ".*"


class RouterConfigError(ValueError):
    """A router config that cannot be compiled (bad regex, clashing domains, ...)."""


def strip_query(path: str) -> str:
    """Return ``path`` without its ``?query`` part (route matchers never see it)."""
    q = path.find("?")
    return path if q < 0 else path[:q]


def _compile(pattern: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise RouterConfigError(f"{what}: invalid regex {pattern!r}: {e}") from None


class PathKind:
    """The kinds of path test, as small ints so the hot loop compares ints."""

    ANY: Final = 0
    PREFIX: Final = 1
    EXACT: Final = 2
    REGEX: Final = 3

    NAMES: Final = ("any", "prefix", "path", "regex")


class PathMatcher:
    """The path half of a route match: one of any / prefix / exact / full regex.

    ``kind`` and ``value`` are public so the route table's loop can inline the test
    instead of paying a method call per route; :meth:`matches` is the readable form.
    """

    __slots__ = ("kind", "regex", "value")

    def __init__(self, kind: int, value: str = "", regex: re.Pattern[str] | None = None) -> None:
        self.kind = kind
        #: The prefix or exact path (the regex source for REGEX, "" for ANY).
        self.value = value
        #: The compiled pattern, for REGEX only.
        self.regex = regex

    @classmethod
    def from_config(cls, match: RouteMatchConfig, what: str = "match") -> PathMatcher:
        """Pick the matcher a route's ``match`` asks for (prefix > path > regex > any)."""
        if match.prefix:
            return cls(PathKind.PREFIX, match.prefix)
        if match.path:
            return cls(PathKind.EXACT, match.path)
        if match.regex:
            return cls(PathKind.REGEX, match.regex, _compile(match.regex, f"{what}.regex"))
        return cls(PathKind.ANY)

    def matches(self, path: str) -> bool:
        """Whether ``path`` (already without its query string) passes this test."""
        kind = self.kind
        if kind == PathKind.PREFIX:
            return path.startswith(self.value)
        if kind == PathKind.EXACT:
            return path == self.value
        if kind == PathKind.REGEX:
            assert self.regex is not None
            return self.regex.fullmatch(path) is not None
        return True

    def __repr__(self) -> str:
        return f"PathMatcher({PathKind.NAMES[self.kind]}, {self.value!r})"


class HeaderMatcher:
    """One header condition of a route: present, and equal to / fully matching a value.

    ``value is None`` means "any present value" (the ``".*"`` rule); otherwise exactly
    one of ``value`` (exact) and ``regex`` (full match) is used.
    """

    __slots__ = ("name", "regex", "value")

    def __init__(self, name: str, value: str | None, regex: re.Pattern[str] | None = None) -> None:
        self.name = name.lower()
        self.value = value
        self.regex = regex

    @classmethod
    def from_config(cls, cfg: HeaderMatcherConfig, what: str = "header") -> HeaderMatcher:
        """Compile one ``{"name", "value", "regex"}`` entry."""
        if not cfg.name:
            raise RouterConfigError(f"{what}: header matcher has an empty name")
        if cfg.value == ANY_VALUE:
            return cls(cfg.name, None)
        if cfg.regex:
            return cls(cfg.name, cfg.value, _compile(cfg.value, f"{what}.value"))
        return cls(cfg.name, cfg.value)

    def matches(self, headers: Mapping[str, str]) -> bool:
        """Whether ``headers`` satisfies this condition."""
        got = headers.get(self.name)
        if got is None:
            return False
        if self.regex is not None:
            return self.regex.fullmatch(got) is not None
        return self.value is None or got == self.value

    def __repr__(self) -> str:
        how = "any" if self.value is None else ("regex" if self.regex is not None else "exact")
        return f"HeaderMatcher({self.name!r}, {how} {self.value!r})"


def headers_match(matchers: Sequence[HeaderMatcher], headers: Mapping[str, str]) -> bool:
    """Whether every matcher holds (an empty list always holds)."""
    for m in matchers:
        got = headers.get(m.name)
        if got is None:
            return False
        if m.regex is not None:
            if m.regex.fullmatch(got) is None:
                return False
        elif m.value is not None and got != m.value:
            return False
    return True
