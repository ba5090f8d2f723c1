"""A real SOFA bolt consumer written by others: anthunder (PyPI) AioClient, direct mode.

``SERVICE_MAP[interface] = ("127.0.0.1", P)`` points anthunder straight at the provider
(no MOSN sidecar).  AioClient keeps ONE connection per address and multiplexes calls on
it by bolt request id (31-bit, random start); C threads call invoke_sync at once.
Bolt v1 framing with protobuf bodies; talks to anthunder_provider.py.

usage: anthunder_consumer.py --port P [--calls N] [--concurrency C] [--payload-bytes B]
       [--method echo|fail|bizerror|big] [--timeout-ms T] [--deadline-ms D]
       [--heartbeat [--heartbeat-wait-ms W]] [--verbose]

anthunder 0.8.1 quirks this script works around and reports (see README.md):
- a response with a non-zero bolt status makes AioClient.invoke_sync raise
  KeyError(request_id) (the status is only logged); we read the status of that request
  id from the library's own decoder and raise BoltFailure(status) instead;
- AioClient only sends heartbeats when it has a MOSN sidecar (every 30 s); --heartbeat
  calls its invoke_heartbeat() and checks the ack the decoder saw (the call itself
  also ends in KeyError).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pypeer import (
    ERROR_PREFIX,
    BizError,
    all_good,
    arm_deadline,
    check_consumer_args,
    consumer_parser,
    emit,
    err_text,
    run_calls,
    setup_logging,
)

REMOTE_METHOD = {"echo": "echo", "fail": "fail", "bizerror": "bizError", "big": "big"}
# anthunder's provider answers a handler exception with bolt status 3 (UNKNOWN) and no body.
FAIL_STATUS = 3


class BoltFailure(Exception):
    """A bolt response with a non-zero status, as seen by anthunder's decoder."""

    def __init__(self, request_id: int, status: int, name: str) -> None:
        super().__init__(f"bolt response status {status} ({name}) for request {request_id}")
        self.request_id = request_id
        self.status = status


class _Seen:
    """Responses decoded by AioClient's reader: request id -> (cmdcode, status)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_id: dict[int, tuple[int, int]] = {}


def _watch_decoder(seen: _Seen) -> None:
    import anthunder.client.aio_client as aio_client

    base = aio_client.BoltResponse

    class WatchedBoltResponse(base):  # type: ignore[misc,valid-type]
        @classmethod
        def bolt_content_from_stream(cls, stream: bytes, bolt_headers: dict[str, Any]) -> Any:
            pkg = super().bolt_content_from_stream(stream, bolt_headers)
            with seen.lock:
                seen.by_id[int(pkg.request_id)] = (int(pkg.cmdcode), int(pkg.respstatus))
            return pkg

    aio_client.BoltResponse = WatchedBoltResponse


def _status_name(status: int) -> str:
    from anthunder.protocol.constants import RESPSTATUS

    try:
        return str(RESPSTATUS(status).name)
    except ValueError:
        return "?"


def _check_heartbeat(client: Any, address: tuple[str, int], seen: _Seen, wait_ms: int) -> dict[str, Any]:
    from anthunder.command.heartbeat import HeartbeatRequest

    pkg = HeartbeatRequest.new_request()
    rid = int(pkg.request_id)
    start = time.monotonic()
    fut = asyncio.run_coroutine_threadsafe(client.invoke(pkg, address=address), client._loop)
    result: dict[str, Any] = {"sent": 1, "id": rid, "acked": False}
    try:
        fut.result(timeout=wait_ms / 1000)
        result["library_result"] = "ok"
    except KeyError:
        result["library_result"] = "KeyError (anthunder drops heartbeat answers after waking the caller)"
    except Exception as exc:
        result["library_result"] = err_text(exc)
    with seen.lock:
        got = seen.by_id.get(rid)
    if got is not None:
        cmdcode, status = got
        result["acked"] = cmdcode == 0 and status == 0
        result["ack"] = {"cmdcode": cmdcode, "status": status}
    result["rtt_ms"] = round((time.monotonic() - start) * 1000, 1)
    return result


def main() -> int:
    parser = consumer_parser("anthunder_consumer.py", "anthunder AioClient consumer (direct, one connection)")
    args = parser.parse_args()
    check_consumer_args(parser, args)
    setup_logging(args.verbose)
    arm_deadline(args.deadline_ms, "anthunder_consumer")
    try:
        from _anthunder_local import disable_mesh
        from _echo_pb import SERVICE, EchoRequest, EchoResponse
        from anthunder import SERVICE_MAP, AioClient
        from mytracer import SpanContext
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

    disable_mesh()
    seen = _Seen()
    _watch_decoder(seen)
    address = ("127.0.0.1", args.port)
    SERVICE_MAP[SERVICE] = address
    client = AioClient("mosnpy-test-consumer")

    def invoke(method: str, arg: str) -> str:
        body = EchoRequest(text=arg, tag=arg[:64]).SerializeToString()
        try:
            content = client.invoke_sync(
                SERVICE, REMOTE_METHOD[method], body, spanctx=SpanContext(), timeout_ms=args.timeout_ms
            )
        except KeyError as exc:
            rid = exc.args[0] if exc.args else None
            if not isinstance(rid, int):
                raise
            with seen.lock:
                got = seen.by_id.get(rid)
            if got is None:
                raise
            raise BoltFailure(rid, got[1], _status_name(got[1])) from None
        res = EchoResponse()
        res.ParseFromString(content)
        if res.code != 0:
            raise BizError(res.text)
        return str(res.text)

    def fail_matches(exc: Exception, s: str) -> bool:
        # anthunder carries no error text: the provider's failure is the bolt status.
        return isinstance(exc, BoltFailure) and exc.status == FAIL_STATUS

    summary = run_calls(
        invoke,
        method=args.method,
        calls=args.calls,
        concurrency=args.concurrency,
        payload_bytes=args.payload_bytes,
        fail_matches=fail_matches,
        report_first_ok=args.report_first_ok,
    )
    if args.method == "fail" and summary["ok"]:
        summary["provider_error"] = f"bolt status {FAIL_STATUS} ({_status_name(FAIL_STATUS)}), no body"
        summary["error_prefix_not_carried"] = ERROR_PREFIX
    summary["protocol"] = "bolt"
    summary["client"] = "anthunder"
    summary["connections"] = len(client.connection_mapping)
    good = all_good(summary)
    if args.heartbeat:
        summary["heartbeat"] = _check_heartbeat(client, address, seen, args.heartbeat_wait_ms)
        good = good and summary["heartbeat"]["acked"]
    emit(summary)
    return 0 if good else 1


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # AioClient's loop thread never ends on its own
