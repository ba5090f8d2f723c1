"""The supervisor ↔ worker channel, and summing the workers' stats.

Each worker of ``--workers N`` serves the admin API (:class:`~mosnpy.admin.AdminServer`)
on a unix socket in the supervisor's private directory (mode 0700) instead of the
config's ``admin`` address.  The supervisor holds the real admin listener and asks its
workers over those sockets, one short HTTP/1.1 exchange each (``Connection: close``):
``GET /api/v1/stats`` to sum them, ``POST /api/v1/update_loglevel`` and
``POST /api/v1/reload`` to pass writes on, ``GET /api/v1/states`` to see a worker is up.

Bounded: each exchange has a deadline (:data:`CONTROL_TIMEOUT`) and a reply size limit
(:data:`MAX_REPLY`); a worker that does not answer in time is left out of the sum and
named in ``workers.missing``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import trio

__all__ = ["CONTROL_TIMEOUT", "MAX_REPLY", "ControlError", "call", "call_json", "merge_stats"]

#: Seconds one exchange with a worker may take.
CONTROL_TIMEOUT = 5.0
#: Largest reply read from a worker.
MAX_REPLY = 32 * 1024 * 1024


class ControlError(Exception):
    """A worker did not answer, or answered something unreadable."""


async def call(
    path: str, method: str, target: str, body: bytes = b"", *, timeout: float = CONTROL_TIMEOUT
) -> tuple[int, bytes]:
    """One request to the admin API on unix socket ``path``: ``(status, body)``.

    Raises:
        ControlError: no connection, no answer within ``timeout``, or a bad reply.
    """
    head = (
        f"{method} {target} HTTP/1.1\r\nhost: mosnpy-worker\r\nconnection: close\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    reply = bytearray()
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_unix_socket(path)
            async with stream:
                await stream.send_all(head.encode() + body)
                while chunk := await stream.receive_some(65536):
                    reply += chunk
                    if len(reply) > MAX_REPLY:
                        raise ControlError(f"{path}: reply larger than {MAX_REPLY} bytes")
    except trio.TooSlowError:
        raise ControlError(f"{path}: no answer within {timeout:g}s") from None
    except (OSError, trio.BrokenResourceError) as exc:
        raise ControlError(f"{path}: {exc}") from None
    status_head, sep, rest = bytes(reply).partition(b"\r\n\r\n")
    lines = status_head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if not sep or len(parts) < 2 or not parts[1].isdigit():
        raise ControlError(f"{path}: unreadable reply {bytes(reply[:60])!r}")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            rest = rest[: int(value.strip())]
    return int(parts[1]), rest


async def call_json(path: str, method: str, target: str, data: Any = None) -> tuple[int, Any]:
    """:func:`call` with a JSON body and a JSON reply (None if the reply is not JSON)."""
    body = b"" if data is None else json.dumps(data).encode()
    status, reply = await call(path, method, target, body)
    try:
        return status, json.loads(reply)
    except ValueError:
        return status, None


# Keys whose values are not summed: the same in every worker, or per-worker facts.
_KEEP = frozenset({"address", "bounds", "weight"})
# Flags that hold when they hold in any worker (others: in every worker).
_ANY = frozenset({"ejected"})


def merge_stats(snapshots: Iterable[Any]) -> Any:
    """The stats of several workers as one: numbers add up (histogram counts bucket by
    bucket), ``min`` / ``max`` take the extreme, ``healthy`` holds only if it holds in
    every worker (``ejected`` if in any), hosts pair up by address, other lists are
    concatenated."""
    out: Any = None
    for snap in snapshots:
        out = snap if out is None else _merge(out, snap)
    return out


def _merge(a: Any, b: Any, key: str = "") -> Any:
    if key in _KEEP:
        return a
    if key in ("min", "max"):
        if a is None or b is None:
            return b if a is None else a
        return min(a, b) if key == "min" else max(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        merged = dict(a)
        for k, v in b.items():
            merged[k] = _merge(merged[k], v, k) if k in merged else v
        return merged
    if isinstance(a, bool) or isinstance(b, bool):
        return (bool(a) or bool(b)) if key in _ANY else (bool(a) and bool(b))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        if _by_address(a) and _by_address(b):
            merged_hosts = {h["address"]: h for h in a}
            for h in b:
                addr = h["address"]
                merged_hosts[addr] = _merge(merged_hosts[addr], h) if addr in merged_hosts else h
            return list(merged_hosts.values())
        if len(a) == len(b) and all(_is_number(x) for x in (*a, *b)):
            return [x + y for x, y in zip(a, b, strict=True)]
        return a + b
    return a


def _by_address(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(x, dict) and isinstance(x.get("address"), str) for x in items)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)
