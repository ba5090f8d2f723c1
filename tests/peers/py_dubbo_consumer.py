"""A real dubbo consumer written by others: dubbo-ssl-python (PyPI), direct mode.

``DubboClient(interface, group, version, host="127.0.0.1:P")`` bypasses ZooKeeper; the
library keeps ONE connection per host (a module-level pool with a select() reader
thread), so C threads calling at once share that connection.  It speaks Dubbo 2.x
with hessian2 and 64-bit request ids counted from 0.

Talks to dubbo_provider.js (com.mosnpy.test.EchoService, version 1.0.0).

usage: py_dubbo_consumer.py --port P [--calls N] [--concurrency C] [--payload-bytes B]
       [--method echo|fail|bizerror|big] [--timeout-ms T] [--deadline-ms D]
       [--heartbeat [--heartbeat-wait-ms W]] [--verbose]

Known limits of dubbo-ssl-python 0.9.6 (see README.md): strings of 32768 characters or
more do not decode (the reader takes the 'S' length as a signed short and ignores 'R'
chunks), strings over 65535 do not encode; its client heartbeat never fires (KeyError in
its heartbeat thread).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pypeer import (
    all_good,
    arm_deadline,
    check_consumer_args,
    consumer_parser,
    emit,
    err_text,
    run_calls,
    setup_logging,
)

SERVICE = "com.mosnpy.test.EchoService"
VERSION = "1.0.0"
# The dubbo version string put in each request (the library's default is "2.4.10");
# 2.0.2 is what Java's Dubbo sends, and what the dubbo-py frames in shared/vectors carry.
DUBBO_VERSION = "2.0.2"
REMOTE_METHOD = {"echo": "echo", "fail": "fail", "bizerror": "bizError", "big": "big"}
HB_IDLE_S = 1


class _HeartbeatWatch(logging.Handler):
    """Counts the library's own heartbeat log lines and its heartbeat-thread errors."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.acks = 0
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "response ->" in msg and "\u2764" in msg:
            self.acks += 1
        elif record.levelno >= logging.ERROR and len(self.errors) < 5:
            self.errors.append(msg[:200])


def _check_heartbeat(pool: Any, host: str, wait_ms: int) -> dict[str, Any]:
    from dubbo_ssl.connection import connections

    conn = pool._connection_pool.get(host)
    if conn is None:
        return {"sent": 0, "acked": False, "error": "no connection"}
    sent: list[int] = []
    orig_write = conn.write

    def write(data: bytes | bytearray) -> None:
        if bytes(data[:3]) == b"\xda\xbb\xe2":
            sent.append(int.from_bytes(bytes(data[4:12]), "big"))
        orig_write(data)

    conn.write = write
    watch = _HeartbeatWatch()
    lib_logger = logging.getLogger("dubbo_ssl")
    lib_logger.addHandler(watch)
    old_level = lib_logger.level
    lib_logger.setLevel(logging.DEBUG)
    # The library sends a heartbeat once a connection has been idle TIMEOUT_IDLE
    # seconds (60 by default); shrink it so its own thread does it now.
    connections.TIMEOUT_IDLE = HB_IDLE_S
    start = time.monotonic()
    try:
        while time.monotonic() - start < wait_ms / 1000 and watch.acks == 0:
            time.sleep(0.05)
    finally:
        connections.TIMEOUT_IDLE = 60
        lib_logger.removeHandler(watch)
        lib_logger.setLevel(old_level)
        conn.write = orig_write
    result: dict[str, Any] = {"sent": len(sent), "acked": watch.acks > 0, "idle_s": HB_IDLE_S}
    if sent:
        result["id"] = sent[0]
    if not result["acked"]:
        result["error"] = f"no heartbeat ack within {wait_ms} ms; library errors: {watch.errors[:3]}"
    return result


def main() -> int:
    parser = consumer_parser("py_dubbo_consumer.py", "dubbo-ssl-python consumer (direct, one connection)")
    args = parser.parse_args()
    check_consumer_args(parser, args)
    setup_logging(args.verbose)
    arm_deadline(args.deadline_ms, "py_dubbo_consumer")
    try:
        from dubbo_ssl.client import DubboClient
        from dubbo_ssl.connection.connections import connection_pool
    except ImportError as exc:
        emit(
            {
                "ok": 0,
                "errors": [f"{err_text(exc)}: pip install -r tests/peers/requirements.txt"],
                "mismatched": 0,
                "ms": 0,
            }
        )
        return 3

    host = f"127.0.0.1:{args.port}"
    client = DubboClient(SERVICE, group="", version=VERSION, dubbo_version=DUBBO_VERSION, host=host)
    timeout_s = args.timeout_ms / 1000

    def invoke(method: str, arg: str) -> str:
        result = client.call(REMOTE_METHOD[method], [arg], timeout=timeout_s)
        return str(result) if not isinstance(result, str) else result

    summary = run_calls(
        invoke,
        method=args.method,
        calls=args.calls,
        concurrency=args.concurrency,
        payload_bytes=args.payload_bytes,
        report_first_ok=args.report_first_ok,
    )
    summary["protocol"] = "dubbo"
    summary["client"] = "dubbo-ssl-python"
    summary["connections"] = len(connection_pool._connection_pool)
    good = all_good(summary)
    if args.heartbeat:
        summary["heartbeat"] = _check_heartbeat(connection_pool, host, args.heartbeat_wait_ms)
        good = good and summary["heartbeat"]["acked"]
    emit(summary)
    return 0 if good else 1


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The library's reader and heartbeat threads are daemons that never end on their own.
    import os

    os._exit(rc)
