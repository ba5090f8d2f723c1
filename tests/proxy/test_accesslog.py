"""Access logs: the format, the values of a request's line, and the writer's queue.

The lines are checked through the playbook (:mod:`tests.proxy.playbook`: the toy
protocol, a mock clock, so every duration is exact); the writer with real files in a
temporary directory, its thread blocked on purpose to fill the queue.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from trio.testing import MockClock

from mosnpy.proxy.accesslog import (
    DEFAULT_FORMAT,
    VARIABLES,
    AccessLog,
    AccessLogWriter,
    FormatError,
    go_duration,
    parse_format,
    render,
    reopen_all,
    writer_for,
)
from tests.proxy.playbook import Playbook, cluster, request, rpc_route

# -- the format ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (850e-9, "850ns"),
        (12.5e-6, "12.5µs"),
        (0.001, "1ms"),
        (0.001234567, "1.234567ms"),
        (0.25, "250ms"),
        (2.5, "2.5s"),
        (90, "1m30s"),
        (3600, "1h0m0s"),
        (-0.002, "-2ms"),
    ],
)
def test_durations_print_as_go_prints_them(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_a_format_is_literal_text_and_variables() -> None:
    tokens = parse_format("a {b} %protocol% 100\\% [%request_header_x-id%]")
    assert [t if isinstance(t, str) else t[0] for t in tokens] == [
        "a {b} ",
        "protocol",
        " 100% [",
        "request_header_x-id",
        "]",
    ]
    assert tokens[1] == ("protocol", VARIABLES["protocol"])


def test_the_empty_format_is_mosns_default() -> None:
    assert parse_format("") == parse_format(DEFAULT_FORMAT)
    assert len([t for t in parse_format("") if not isinstance(t, str)]) == 14


@pytest.mark.parametrize(
    ("fmt", "problem"),
    [
        ("%start_time% %% x", "empty variable definition '%%' at position 13"),
        ("%start_time% %protocol", "unclosed variable definition at position 13"),
        ("%start_time% %nope%", "unknown variable 'nope' (known: "),
        ("%Http9_request_method%", "unknown variable 'Http9_request_method' (known: "),
        ("%request_header_%", "unknown variable 'request_header_' (known: "),
    ],
)
def test_format_errors_say_what_is_wrong(fmt: str, problem: str) -> None:
    with pytest.raises(FormatError) as info:
        parse_format(fmt)
    assert str(info.value).startswith(problem)


def test_unknown_variable_lists_mosns_names() -> None:
    with pytest.raises(FormatError) as info:
        parse_format("%nope%")
    for name in ("start_time", "upstream_host", "request_header_NAME", "Http1_request_method"):
        assert name in str(info.value)


def test_mosn_0x_names_are_accepted() -> None:
    """MOSN's own examples (configs/mosn_config.json) still write these."""
    fmt = "%StartTime% %RequestReceivedDuration% %ResponseReceivedDuration% %REQ.requestid% %RESP.service%"
    names = [t[0] for t in parse_format(fmt) if not isinstance(t, str)]
    assert names == [
        "start_time",
        "request_received_duration",
        "response_received_duration",
        "REQ.requestid",
        "RESP.service",
    ]


# -- a request's line -------------------------------------------------------------------


class Lines(AccessLogWriter):
    """A writer that keeps its lines (no file, no thread)."""

    def __init__(self, capacity: int = 100) -> None:
        super().__init__("memory", capacity=capacity)
        self.lines: list[str] = []

    def write(self, line: str) -> bool:
        if len(self.lines) >= self.capacity:
            self.dropped += 1
            return False
        self.lines.append(line)
        return True


FORMAT = (
    "%protocol% %response_code% %upstream_host% %upstream_cluster% %response_flag% "
    "%upstream_transport_failure_reason% "
    "svc=%request_header_service% answer=%response_header_answer% "
    "sent=%request_received_duration% answered=%response_received_duration% took=%duration% "
    "from=%downstream_remote_address% via=%listener_name% %toy_request_method%"
)


class Checked(AccessLog):
    """An access log that checks its fused line against the field-by-field one."""

    __slots__ = ()

    def log(self, ds: Any, now: float) -> bool:
        assert self.line(ds, now) == render(self.tokens, ds, now)
        return super().log(ds, now)


def logging_to(pb: Playbook, fmt: str = FORMAT, capacity: int = 100) -> Lines:
    lines = Lines(capacity)
    pb.ctx.access_logs = (Checked("memory", fmt, writer=lines),)
    return lines


@pytest.mark.interpreted  # the playbook subclasses compiled classes
async def test_a_call_is_one_line(autojump_clock: MockClock) -> None:
    async with Playbook() as pb:
        lines = logging_to(pb)
        await pb.sleep(1)  # the mock clock starts at 0, a time the access log reads as "never"
        await pb.send(request(rid=7, body=b"ping"))
        [up] = pb.upstream_requests()
        await pb.sleep(0.25)
        await pb.respond(up, b"pong!", answer="yes")
        assert lines.lines == [
            "toy 200 10.0.0.1:20880 c1 false - svc=svc answer=yes sent=0s "
            "answered=250ms took=250ms from=192.0.2.1:40000 via=playbook m\n"
        ]


@pytest.mark.interpreted  # the playbook subclasses compiled classes
async def test_local_replies_carry_mosns_response_flags(autojump_clock: MockClock) -> None:
    fmt = "%response_code% %response_flag% %upstream_transport_failure_reason% %upstream_host% %duration%"
    routes = [rpc_route("svc", "c1"), rpc_route("slow", "c1", timeout=0.5), rpc_route("gone", "nowhere")]
    async with Playbook(routes=routes, clusters=[cluster("c1", "10.0.0.1:1")]) as pb:
        lines = logging_to(pb, fmt)
        await pb.sleep(1)
        await pb.send(request(1, service="elsewhere"))  # no route
        await pb.send(request(2, service="gone"))  # no such cluster
        pb.fail_connects = 2
        await pb.send(request(3))  # refused twice (the free retry too)
        await pb.sleep(1)
        await pb.send(request(4, service="slow"))  # never answered
        await pb.sleep(1)
        assert lines.lines == [
            "404 true NoRouteFound - 0s\n",
            "404 true NoRouteFound - 0s\n",
            "502 true UpstreamConnectionFailure 10.0.0.1:1 10ms\n",
            "504 true UpstreamRequestTimeout 10.0.0.1:1 500ms\n",
        ]


@pytest.mark.interpreted  # the playbook subclasses compiled classes
async def test_a_client_that_leaves_is_downstream_terminate(autojump_clock: MockClock) -> None:
    async with Playbook() as pb:
        lines = logging_to(pb, "%response_code% %upstream_transport_failure_reason%")
        await pb.send(request())
        pb.down.close()
        await pb.settle()
        assert lines.lines == ["0 DownStreamTerminate\n"]


@pytest.mark.interpreted  # the playbook subclasses compiled classes
async def test_lines_past_a_full_queue_are_dropped_and_counted(autojump_clock: MockClock) -> None:
    async with Playbook() as pb:
        lines = logging_to(pb, "%response_code%", capacity=1)
        await pb.send(request(1, service="elsewhere"), request(2, service="elsewhere"))
        await pb.send(request(3, service="elsewhere"))
        assert lines.lines == ["404\n"]
        assert pb.ctx.stats.access_log_dropped == 2
        assert pb.ctx.stats.snapshot()["access_log_dropped"] == 2


@pytest.mark.interpreted  # the playbook subclasses compiled classes
async def test_no_access_log_no_line_and_no_timestamp(autojump_clock: MockClock) -> None:
    async with Playbook() as pb:
        await pb.sleep(1)
        await pb.send(request())
        [up] = pb.upstream_requests()
        await pb.respond(up, b"pong")
        assert pb.streams[0].responded_at == 0.0  # kept only for access logs


# -- the writer ---------------------------------------------------------------------------


class Blocked(AccessLogWriter):
    """A writer whose thread stops inside its first batch until :attr:`go` is set."""

    def __init__(self, path: str, capacity: int) -> None:
        super().__init__(path, capacity=capacity)
        self.inside = threading.Event()
        self.go = threading.Event()

    def _write_batch(self) -> None:
        if self._queue:
            self.inside.set()
            self.go.wait(10)
        super()._write_batch()


def test_a_full_queue_drops_lines_and_never_blocks(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "access.log"
    writer = Blocked(str(path), capacity=4)
    writer.retain()
    try:
        assert writer.write("first\n")  # the thread wakes for it and gets stuck
        assert writer.inside.wait(5)
        accepted = [writer.write(f"line {i}\n") for i in range(7)]
        assert accepted == [True] * 3 + [False] * 4  # 4 queued at most
        assert writer.dropped == 4
        writer.go.set()
        assert writer.flush(5)
        assert path.read_text() == "first\n" + "".join(f"line {i}\n" for i in range(3))
        assert writer.written == 4
    finally:
        writer.go.set()
        writer.release()
        writer.join(5)
    assert not writer.write("late\n")  # closed: refused, counted
    assert writer.dropped == 5


def test_reopen_writes_to_a_new_file_at_the_path(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    writer = writer_for(str(path))
    assert writer_for(str(path)) is writer  # one writer per path
    writer.retain()
    try:
        writer.write("before\n")
        assert writer.flush(5)
        path.rename(tmp_path / "access.log.1")  # logrotate
        assert reopen_all() >= 1
        writer.write("after\n")
        assert writer.flush(5)
        assert (tmp_path / "access.log.1").read_text() == "before\n"
        assert path.read_text() == "after\n"
    finally:
        writer.release()
        writer.join(5)
    assert writer.closed
    assert writer_for(str(path)) is not writer  # a closed writer leaves the registry


def test_the_last_user_closes_and_flushes(tmp_path: Path) -> None:
    path = tmp_path / "shared.log"
    writer = AccessLogWriter(str(path))
    writer.retain()
    writer.retain()  # a second config names it too (a reload)
    writer.write("one\n")
    writer.release()
    assert not writer.closed
    writer.write("two\n")
    writer.release()
    writer.join(5)
    assert writer.closed
    assert path.read_text() == "one\ntwo\n"


def test_nothing_is_opened_before_retain(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "access.log"
    access_log = AccessLog(str(path), "%protocol%")
    assert not path.parent.exists()
    assert not access_log.writer.running


def test_a_path_that_cannot_be_opened_fails_retain(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    writer = AccessLogWriter(str(blocker / "access.log"))
    with pytest.raises(OSError):
        writer.retain()
    assert not writer.running


def test_stdout_is_fd_1(capfd: pytest.CaptureFixture[str]) -> None:
    writer = AccessLogWriter("stdout")
    writer.retain()
    try:
        writer.write("to stdout\n")
        assert writer.flush(5)
    finally:
        writer.release()
        writer.join(5)
    assert capfd.readouterr().out == "to stdout\n"
    assert os.fstat(1)  # still open: the writer never closes a standard stream


def test_the_fused_line_gives_what_each_getter_gives() -> None:
    """Every variable, inlined or not, on a request record with every part there."""
    from types import SimpleNamespace

    from mosnpy.protocol.headers import HeaderMap
    from mosnpy.stream.stream import Stream

    stream = Stream(
        protocol="Http1",
        headers=HeaderMap([("host", "h"), ("cookie", "a=1; b=2")]),
        method="GET",
        path="/p",
        host="h",
        start_time=100.0,
    )
    stream.variables["target"] = "/p?q=1&r=2"
    stream.response_status = 200
    stream.response_headers = HeaderMap([("server", "s")])
    stream.cluster_name = "c1"
    conn = SimpleNamespace(local_address="127.0.0.1:1", remote_address="127.0.0.1:2", values={})
    ds = SimpleNamespace(
        stream=stream,
        conn=conn,
        upstream=SimpleNamespace(conn=SimpleNamespace(local_address="127.0.0.1:3")),
        host=SimpleNamespace(address="127.0.0.1:4"),
        sent_at=100.001,
        responded_at=100.0025,
        bytes_sent=13,
        bytes_received=7,
        response_flags=0x20,
        response_started=True,
        ctx=SimpleNamespace(listener_name="l"),
    )
    names = [n for n in VARIABLES if n != "start_time"]
    names += ["request_header_host", "response_header_server", "Http1_request_uri", "Http1_request_arg"]
    names += ["Http1_request_arg_r", "Http1_cookie_b", "Http1_request_scheme", "Http2_request_method"]
    access_log = AccessLog("memory", " ".join(f"%{n}%" for n in names), writer=Lines())
    line = access_log.line(ds, 100.004)  # type: ignore[arg-type]
    assert line == render(access_log.tokens, ds, 100.004)  # type: ignore[arg-type]
    assert line.split() == [
        "1ms", "2.5ms", "4ms", "2.5ms", "13", "7", "Http1", "200", "4ms", "true", "true",
        "127.0.0.1:3", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:4", "UpstreamConnectionFailure",
        "c1", "l", "h", "/p", "GET", "q=1&r=2",
        "h", "s", "/p?q=1&r=2", "q=1&r=2", "2", "2", "http", "-",
    ]  # fmt: skip
    stamp = AccessLog("memory", "%start_time%", writer=Lines()).line(ds, 100.004)  # type: ignore[arg-type]
    assert re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3}\n", stamp)
