"""A real SOFA bolt provider written by others: anthunder (PyPI) AioListener.

Bolt v1 framing, protobuf bodies (codec 11), serving com.mosnpy.test.EchoServicePb:1.0
(messages in _echo_pb.py) on 127.0.0.1:P:

  echo(EchoRequest)  -> EchoResponse{text, tag, code=0}    text back
  fail(EchoRequest)  -> the handler raises; anthunder answers a bolt failure with status
                        3 (UNKNOWN) and an empty body (it carries no error message)
  bizError(EchoRequest) -> EchoResponse{text="mosnpy-biz-error:<text>", code=1}, status 0
  big(EchoRequest{text="<tag>:<n>"}) -> EchoResponse{text = n ASCII bytes}

usage: anthunder_provider.py --port P [--exit-on-stdin-eof] [--max-seconds S] [--verbose]
Prints "READY <port>" on stdout once listening (P = 0: any free port).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pypeer import BIZ_ERROR_PREFIX, ERROR_PREFIX, parse_big_arg, setup_logging


def main() -> int:
    p = argparse.ArgumentParser(prog="anthunder_provider.py", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--exit-on-stdin-eof", action="store_true")
    p.add_argument("--max-seconds", type=int, default=3600, help="stop after S seconds (default 3600)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    if not 0 <= args.port <= 65535:
        p.error("--port out of range")
    if args.max_seconds < 1:
        p.error("--max-seconds at least 1")
    setup_logging(args.verbose)

    from _anthunder_local import disable_mesh
    from _echo_pb import SERVICE, EchoRequest, EchoResponse
    from anthunder.listener.aio_listener import AioListener
    from anthunder.listener.base_listener import BaseService

    disable_mesh()

    class EchoServicePb(BaseService):  # type: ignore[misc]
        """anthunder makes one per request (with the span context) and calls method(body)."""

        @staticmethod
        def _req(body: bytes) -> Any:
            req = EchoRequest()
            req.ParseFromString(body)
            return req

        def echo(self, body: bytes) -> bytes:
            req = self._req(body)
            return bytes(EchoResponse(text=req.text, tag=req.tag, code=0).SerializeToString())

        def fail(self, body: bytes) -> bytes:
            req = self._req(body)
            raise RuntimeError(ERROR_PREFIX + req.text)

        def bizError(self, body: bytes) -> bytes:  # the remote method name
            req = self._req(body)
            return bytes(
                EchoResponse(text=BIZ_ERROR_PREFIX + req.text, tag=req.tag, code=1).SerializeToString()
            )

        def big(self, body: bytes) -> bytes:
            req = self._req(body)
            return bytes(EchoResponse(text=parse_big_arg(req.text), tag=req.tag, code=0).SerializeToString())

    listener = AioListener(("127.0.0.1", args.port), "mosnpy-test-provider")
    listener.handler.register_interface(SERVICE, EchoServicePb)
    listener.run_threading()
    deadline = time.monotonic() + 10
    while listener._server is None or not listener._server.sockets:
        if time.monotonic() > deadline:
            print("anthunder_provider: listener did not start within 10 s", file=sys.stderr)
            return 1
        time.sleep(0.02)
    port = listener._server.sockets[0].getsockname()[1]

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.exit_on_stdin_eof:

        def watch_stdin() -> None:
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            finally:
                stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()

    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    stop.wait(args.max_seconds)  # never linger past --max-seconds
    listener.shutdown()
    return 0


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # anthunder's loop and worker threads do not end on their own
