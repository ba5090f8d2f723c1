"""Detect HTTP/2 by its connection preface (RFC 9113 §3.4), for listeners that serve
several protocols: a client speaking h2c with prior knowledge starts with it."""

from __future__ import annotations

from mosnpy.protocol.matcher import MatchResult

__all__ = ["PREFACE", "match_http2"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def match_http2(data: bytes) -> MatchResult:
    """MATCH once the whole preface is there; AGAIN while ``data`` is a prefix of it."""
    n = min(len(data), len(PREFACE))
    if data[:n] != PREFACE[:n]:
        return MatchResult.FAILED
    return MatchResult.MATCH if n == len(PREFACE) else MatchResult.AGAIN
