"""Shared CLI and call loop of the Python peers (py_dubbo_consumer.py, anthunder_*.py).

The protocol work is done by the third-party libraries; this module only parses the
command line, drives a bounded number of calls with C of them in flight, checks every
answer against its own request and prints one JSON summary line, the same contract as
the Node consumers (see README.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

ERROR_PREFIX = "mosnpy-test-error:"
BIZ_ERROR_PREFIX = "mosnpy-biz-error:"
METHODS = ("echo", "fail", "bizerror", "big")
MAX_CALLS = 1_000_000
MAX_PAYLOAD = 64 * 1024 * 1024
#: With --report-first-ok, printed (alone on a line) once the first call got its expected outcome.
FIRST_OK_LINE = "FIRST-OK"


class BizError(Exception):
    """What a consumer's invoke raises for a business error carried in a normal answer."""


def big_string(tag: str, n: int) -> str:
    """n ASCII bytes starting with ``tag|`` (the same rule as common.js)."""
    head = tag + "|"
    if n <= len(head):
        return head[:n]
    return head + "x" * (n - len(head))


def parse_big_arg(arg: str) -> str:
    """``big`` argument ``"<tag>:<n>"`` -> :func:`big_string` (tag, n)."""
    tag, sep, num = arg.rpartition(":")
    if not sep or not num.isdigit() or int(num) > MAX_PAYLOAD:
        raise ValueError(f'big(spec): spec must be "<tag>:<n>" with 0 <= n <= {MAX_PAYLOAD}')
    return big_string(tag, int(num))


def request_string(run_tag: str, i: int, payload_bytes: int) -> str:
    tag = f"call-{run_tag}-{i}"
    if payload_bytes <= len(tag):
        return tag
    return big_string(tag, payload_bytes)


def consumer_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1"], help="loopback only")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--calls", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--payload-bytes", type=int, default=0)
    p.add_argument("--method", default="echo", choices=METHODS)
    p.add_argument("--timeout-ms", type=int, default=10000, help="per call")
    p.add_argument("--deadline-ms", type=int, default=60000, help="whole run")
    p.add_argument("--heartbeat", action="store_true")
    p.add_argument("--heartbeat-wait-ms", type=int, default=10000)
    p.add_argument(
        "--report-first-ok",
        action="store_true",
        help=f"print a {FIRST_OK_LINE} line once a call got its expected outcome",
    )
    p.add_argument("--verbose", action="store_true")
    return p


def check_consumer_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if not 1 <= a.port <= 65535:
        p.error("--port out of range")
    if not 0 <= a.calls <= MAX_CALLS:
        p.error(f"--calls must be 0..{MAX_CALLS}")
    if a.concurrency < 1:
        p.error("--concurrency at least 1")
    if not 0 <= a.payload_bytes <= MAX_PAYLOAD:
        p.error(f"--payload-bytes must be 0..{MAX_PAYLOAD}")
    if a.timeout_ms < 1 or a.deadline_ms < 1:
        p.error("--timeout-ms and --deadline-ms must be positive")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.WARNING,
        format="[%(levelname)s] %(name)s: %(message)s",
    )


def arm_deadline(ms: int, what: str) -> None:
    """Print a failing summary and exit hard once ``ms`` have passed (daemon timer)."""

    def fire() -> None:
        emit({"ok": 0, "errors": [f"{what}: deadline of {ms} ms passed"], "mismatched": 0, "ms": ms})
        sys.stdout.flush()
        os._exit(1)

    t = threading.Timer(ms / 1000, fire)
    t.daemon = True
    t.start()


def emit(summary: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()


def err_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return text[:500]


@dataclass
class _Tally:
    ok: int = 0
    mismatched: int = 0
    provider_error: str | None = None
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, text: str) -> None:
        with self.lock:
            self.errors[text] = self.errors.get(text, 0) + 1


def run_calls(
    invoke: Callable[[str, str], str],
    *,
    method: str,
    calls: int,
    concurrency: int,
    payload_bytes: int,
    fail_matches: Callable[[Exception, str], bool] | None = None,
    report_first_ok: bool = False,
) -> dict[str, Any]:
    """``calls`` invocations of ``invoke(method, arg)``, ``concurrency`` in flight.

    echo/big: ok when the answer is the call's own string; fail/bizerror: ok when the
    call raised an error carrying the provider's message for this very call (for
    ``fail``, ``fail_matches(exc, s)`` decides instead when given: for libraries whose
    failure answers carry no message).  With ``report_first_ok``, :data:`FIRST_OK_LINE`
    is printed once the first call got its expected outcome.
    """
    tag = secrets.token_hex(6)
    tally = _Tally()

    def got_ok() -> None:  # with tally.lock held
        tally.ok += 1
        if tally.ok == 1 and report_first_ok:
            sys.stdout.write(FIRST_OK_LINE + "\n")
            sys.stdout.flush()

    def one(i: int) -> None:
        s = request_string(tag, i, 0 if method == "big" else payload_bytes)
        arg = f"{s}:{payload_bytes}" if method == "big" else s
        try:
            result = invoke(method, arg)
        except Exception as exc:
            if method == "fail" and fail_matches is not None:
                if fail_matches(exc, s):
                    with tally.lock:
                        got_ok()
                        if tally.provider_error is None:
                            tally.provider_error = err_text(exc)[:300]
                    return
            elif method in ("fail", "bizerror"):
                prefix = ERROR_PREFIX if method == "fail" else BIZ_ERROR_PREFIX
                text = str(exc)
                if prefix + s in text:
                    with tally.lock:
                        got_ok()
                        if tally.provider_error is None:
                            tally.provider_error = err_text(exc)[:300]
                    return
                if prefix in text:
                    with tally.lock:
                        tally.mismatched += 1
                    return
            tally.error(err_text(exc))
            return
        if method in ("fail", "bizerror"):
            tally.error(f"expected an error from {method}, got a result: {result!r:.200}")
            return
        expected = big_string(s, payload_bytes) if method == "big" else s
        with tally.lock:
            if result == expected:
                got_ok()
            else:
                tally.mismatched += 1

    start = time.perf_counter()
    if calls:
        with ThreadPoolExecutor(max_workers=min(concurrency, calls)) as pool:
            list(pool.map(one, range(calls)))
    ms = (time.perf_counter() - start) * 1000
    summary: dict[str, Any] = {
        "ok": tally.ok,
        "errors": [f"{t} (x{n})" if n > 1 else t for t, n in list(tally.errors.items())[:10]],
        "mismatched": tally.mismatched,
        "ms": round(ms, 1),
        "method": method,
        "calls": calls,
        "concurrency": concurrency,
        "payload_bytes": payload_bytes,
    }
    if tally.provider_error is not None:
        summary["provider_error"] = tally.provider_error
    return summary


def all_good(summary: dict[str, Any]) -> bool:
    return (
        summary["ok"] == summary["calls"]
        and summary["mismatched"] == 0
        and not summary["errors"]
        and summary.get("connections", 1) <= 1
    )
