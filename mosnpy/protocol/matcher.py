"""Protocol detection by sniffing a connection's first bytes.

A matcher looks at what has arrived so far and answers MATCH, AGAIN (too few bytes to
tell: keep buffering and ask again after the next read) or FAILED.  A listener serving
several protocols asks each candidate in order; the first MATCH wins, and if every
candidate FAILED the connection is not one of ours.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

__all__ = ["MatchResult", "Matcher", "select"]


class MatchResult(Enum):
    MATCH = "match"
    AGAIN = "again"
    FAILED = "failed"


Matcher = Callable[[bytes], MatchResult]


def select(data: bytes, candidates: list[tuple[str, Matcher]]) -> tuple[MatchResult, str | None]:
    """Ask ``candidates`` in order; return (MATCH, name), (AGAIN, None) or (FAILED, None)."""
    again = False
    for name, matcher in candidates:
        result = matcher(data)
        if result is MatchResult.MATCH:
            return MatchResult.MATCH, name
        if result is MatchResult.AGAIN:
            again = True
    return (MatchResult.AGAIN if again else MatchResult.FAILED), None
