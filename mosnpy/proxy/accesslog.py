"""Access logs: MOSN's ``access_logs``, one line per request, written off the event loop.

Theory of operation
-------------------
A listener's ``access_logs`` entries become :class:`AccessLog` objects when the listener
is built.  Each ``log_format`` is parsed once (:func:`parse_format`) into literal texts
and one getter per ``%variable%`` (MOSN's names: :data:`VARIABLES`, and the prefixes of
:func:`known_variables`; an unknown name is a config error that names it), then fused
into one function that builds the whole line (:func:`compile_format`).  When a request
ends (:meth:`~mosnpy.proxy.downstream.DownStream._complete`) each access
log of its listener formats one line from the request's record — the
:class:`~mosnpy.stream.stream.Stream` (headers, status, route, cluster, host), the
timings, byte counts and response flags the phase machine kept, the downstream
connection and the upstream attempt — and queues it on its :class:`AccessLogWriter`.  A
listener without access logs pays two falsy tests per request.

Writing never blocks the event loop.  Each writer (one per path, shared by every
listener naming it) has a bounded in-memory queue that a thread of its own drains into
the file in batches: every :data:`FLUSH_INTERVAL`, or at once when the queue is a
quarter full.  When the queue is full a line is dropped and counted (the listener's
``access_log_dropped`` in ``/api/v1/stats``): a slow or stuck disk never slows a
request.  SIGUSR1 makes every writer reopen its path (:func:`reopen_all`), for
logrotate: lines queued from then on go to the new file.

Lifecycle.  Building a listener only looks its writers up (:func:`writer_for`: created
idle, no file opened, no thread).  A server *retains* the writers of what it serves when
it binds (:meth:`AccessLogWriter.retain` opens the file there: a path that cannot be
opened fails the start) and releases them when it stops; a reload retains the new
config's writers before it commits, and releases the old config's once the old
connections have drained.  A path in both configs keeps its writer (no line lost, no
reopen); a path no longer named is flushed and closed; the last lines are flushed at
exit too.

Formats, values and MOSN's quirks.  ``%name%`` fields between literal text; ``\\%`` is a
literal ``%`` (MOSN keeps the backslash: not copied); ``%%`` and an unclosed ``%`` are
errors, as in MOSN; ``""`` is MOSN's default format (:data:`DEFAULT_FORMAT`).  Values
print as MOSN prints them: the start time as ``2006/01/02 15:04:05.000`` (local time),
durations as Go prints a ``time.Duration`` (``1.234ms``, ``0s`` when the moment never
came), ``-`` for a value that is not there, ``%response_flag%`` as ``true``/``false``.
Not copied: ``%upstream_local_address%`` is the upstream connection's local address
(MOSN writes the host's address there) and ``%upstream_host%`` the chosen host's address
(MOSN writes its configured ``hostname``, which mosnpy does not keep, so ``-`` mostly).
Not there yet: ``%bytes_received%`` / ``%bytes_sent%`` count the body pieces that travel
apart from the head (HTTP bodies, and a local reply's body); an RPC frame travels whole
with its head and counts 0 (MOSN counts its payload).
MOSN 0.x names (``%StartTime%``, ``%REQ.name%``, ``%RESP.name%`` ...) are accepted as
aliases: MOSN's own example configs still use them.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias, cast
from urllib.parse import parse_qs

from mosnpy.protocol.registry import known_names
from mosnpy.proxy.replies import ResponseFlag

if TYPE_CHECKING:
    from mosnpy.proxy.downstream import DownStream

__all__ = [
    "DEFAULT_FORMAT",
    "FLUSH_INTERVAL",
    "QUEUE_LINES",
    "VARIABLES",
    "AccessLog",
    "AccessLogWriter",
    "Field",
    "FormatError",
    "compile_format",
    "go_duration",
    "known_variables",
    "parse_format",
    "render",
    "reopen_all",
    "writer_for",
]

log = logging.getLogger("mosnpy.accesslog")

#: MOSN's format when ``log_format`` is empty (``types.DefaultAccessLogFormat``).
DEFAULT_FORMAT = (
    "%start_time% %request_received_duration% %response_received_duration% %bytes_sent% "
    "%bytes_received% %protocol% %response_code% %duration% %response_flag% %response_code% "
    "%upstream_local_address% %downstream_local_address% %downstream_remote_address% %upstream_host%"
)
#: Lines a writer holds before it drops new ones.
QUEUE_LINES = 16384
#: Seconds between a writer's batches when the queue stays under a quarter full.
FLUSH_INTERVAL = 0.05
#: MOSN's value for "not there".
NOT_FOUND = "-"

#: A field's getter: the ended request and the time it ended (``trio.current_time()``).
Getter: TypeAlias = "Callable[[DownStream, float], str]"
#: A parsed ``%variable%``: its name and its getter.
Field: TypeAlias = "tuple[str, Getter]"


class FormatError(ValueError):
    """A ``log_format`` mosnpy cannot write (the message says what and where)."""


# -- values ---------------------------------------------------------------------------


def go_duration(seconds: float) -> str:
    """``seconds`` as Go's ``time.Duration.String()`` prints it: ``0s``, ``850ns``,
    ``12.5µs``, ``1.234567ms``, ``2.5s``, ``1m30s``, ``1h0m0s``."""
    ns = round(seconds * 1e9)
    if 1_000 <= ns < 1_000_000_000:  # the usual case, kept short: this runs per field
        if ns < 1_000_000:
            return f"{ns / 1e3:.3f}".rstrip("0").rstrip(".") + "µs"
        return f"{ns / 1e6:.6f}".rstrip("0").rstrip(".") + "ms"
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000_000:
        return sign + go_duration(u / 1e9)
    secs, frac = divmod(u, 1_000_000_000)
    text = f"{secs % 60}{'.' + f'{frac:09d}'.rstrip('0') if frac else ''}s"
    minutes = secs // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes >= 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


#: the last second formatted, and its text (one tuple: replaced whole)
_last_second: tuple[int, str] = (-1, "")


def _wall_clock(wall: float) -> str:
    """``wall`` (seconds since the epoch) as ``2006/01/02 15:04:05.000``, local time."""
    global _last_second
    sec = int(wall)
    last, text = _last_second
    if sec != last:
        text = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(sec))
        _last_second = (sec, text)
    return f"{text}.{int((wall - sec) * 1000):03d}"


_FLAG_NAMES: dict[int, str] = {}


def _flag_names(flags: int) -> str:
    names = _FLAG_NAMES.get(flags)
    if names is None:
        names = ",".join(f.name or "" for f in ResponseFlag if f & flags) or NOT_FOUND
        _FLAG_NAMES[flags] = names
    return names


# -- the variables ----------------------------------------------------------------------


def _start_time(ds: DownStream, now: float) -> str:
    return _wall_clock(time.time() - (now - ds.stream.start_time))


def _since_start(ds: DownStream, at: float) -> str:
    return go_duration(at - ds.stream.start_time) if at else "0s"


def _request_received(ds: DownStream, now: float) -> str:
    return _since_start(ds, ds.sent_at)


def _response_received(ds: DownStream, now: float) -> str:
    return _since_start(ds, ds.responded_at)


def _request_finished(ds: DownStream, now: float) -> str:
    return go_duration(now - ds.stream.start_time)


def _process_time(ds: DownStream, now: float) -> str:
    # MOSN: the time spent here, without the upstream's part
    start = ds.stream.start_time
    received = ds.sent_at - start if ds.sent_at else 0.0
    if ds.responded_at:
        received += now - ds.responded_at
    return go_duration(received)


def _bytes_sent(ds: DownStream, now: float) -> str:
    sent = ds.bytes_sent
    reply = ds.stream.local_reply
    if reply is not None and ds.response_started:
        sent += len(reply.body)
    return str(sent)


def _bytes_received(ds: DownStream, now: float) -> str:
    return str(ds.bytes_received)


def _protocol(ds: DownStream, now: float) -> str:
    return ds.stream.protocol


def _response_code(ds: DownStream, now: float) -> str:
    return str(ds.stream.response_status or 0)


def _response_flag(ds: DownStream, now: float) -> str:
    return "true" if ds.response_flags else "false"


def _failure_reason(ds: DownStream, now: float) -> str:
    return _flag_names(ds.response_flags)


def _upstream_local_address(ds: DownStream, now: float) -> str:
    upstream = getattr(ds, "upstream", None)
    conn = getattr(upstream, "conn", None)
    return getattr(conn, "local_address", "") or NOT_FOUND


def _downstream_local_address(ds: DownStream, now: float) -> str:
    return ds.conn.local_address or NOT_FOUND


def _downstream_remote_address(ds: DownStream, now: float) -> str:
    return ds.conn.remote_address or NOT_FOUND


def _upstream_host(ds: DownStream, now: float) -> str:
    host = ds.host
    return host.address if host is not None else NOT_FOUND


def _upstream_cluster(ds: DownStream, now: float) -> str:
    return ds.stream.cluster_name or NOT_FOUND


def _listener_name(ds: DownStream, now: float) -> str:
    return ds.ctx.listener_name or NOT_FOUND


def _host(ds: DownStream, now: float) -> str:
    return ds.stream.host or NOT_FOUND


def _path(ds: DownStream, now: float) -> str:
    return ds.stream.path or NOT_FOUND


def _method(ds: DownStream, now: float) -> str:
    return ds.stream.method or NOT_FOUND


def _target(ds: DownStream) -> str:
    target = ds.stream.variables.get("target")
    return target if isinstance(target, str) else ds.stream.path


def _query(ds: DownStream, now: float) -> str:
    _, mark, query = _target(ds).partition("?")
    return query if mark else NOT_FOUND


def _uri(ds: DownStream, now: float) -> str:
    return _target(ds) or NOT_FOUND


def _scheme(ds: DownStream, now: float) -> str:
    return "https" if "tls.alpn" in ds.conn.values else "http"


#: MOSN's request variables (``pkg/types/variable.go``, ``pkg/proxy/var.go``) → getter.
VARIABLES: dict[str, Getter] = {
    "start_time": _start_time,
    "request_received_duration": _request_received,
    "response_received_duration": _response_received,
    "request_finished_duration": _request_finished,
    "process_time_duration": _process_time,
    "bytes_sent": _bytes_sent,
    "bytes_received": _bytes_received,
    "protocol": _protocol,
    "response_code": _response_code,
    "duration": _request_finished,
    "response_flag": _response_flag,
    "response_flags": _response_flag,
    "upstream_local_address": _upstream_local_address,
    "downstream_local_address": _downstream_local_address,
    "downstream_remote_address": _downstream_remote_address,
    "upstream_host": _upstream_host,
    "upstream_transport_failure_reason": _failure_reason,
    "upstream_cluster": _upstream_cluster,
    "listener_name": _listener_name,
    "x-mosn-host": _host,
    "x-mosn-path": _path,
    "x-mosn-method": _method,
    "x-mosn-querystring": _query,
}

#: MOSN 0.x names → today's (MOSN's own example configs still use them).
_LEGACY: dict[str, str] = {
    "StartTime": "start_time",
    "RequestReceivedDuration": "request_received_duration",
    "ResponseReceivedDuration": "response_received_duration",
    "BytesSent": "bytes_sent",
    "BytesReceived": "bytes_received",
    "Protocol": "protocol",
    "ResponseCode": "response_code",
    "Duration": "duration",
    "ResponseFlag": "response_flag",
    "UpstreamLocalAddress": "upstream_local_address",
    "DownstreamLocalAddress": "downstream_local_address",
    "DownstreamRemoteAddress": "downstream_remote_address",
    "UpstreamHostSelected": "upstream_host",
}


def _request_header(name: str) -> Getter:
    def get(ds: DownStream, now: float) -> str:
        value = ds.stream.headers.get(name)
        return NOT_FOUND if value is None else value

    return get


def _response_header(name: str) -> Getter:
    def get(ds: DownStream, now: float) -> str:
        headers = ds.stream.response_headers
        value = headers.get(name) if headers is not None else None
        return NOT_FOUND if value is None else value

    return get


def _arg(name: str) -> Getter:
    def get(ds: DownStream, now: float) -> str:
        _, _, query = _target(ds).partition("?")
        values = parse_qs(query, keep_blank_values=True).get(name)
        return values[0] if values else NOT_FOUND

    return get


def _cookie(name: str) -> Getter:
    def get(ds: DownStream, now: float) -> str:
        for header in ds.stream.headers.get_all("cookie"):
            for pair in header.split(";"):
                key, eq, value = pair.strip().partition("=")
                if eq and key == name:
                    return value
        return NOT_FOUND

    return get


def _of_protocol(protocol: str, getter: Getter) -> Getter:
    """``getter`` for requests of ``protocol`` only; ``-`` for others (MOSN's
    ``Http1_…`` variables read the HTTP/1 request)."""

    def get(ds: DownStream, now: float) -> str:
        return getter(ds, now) if ds.stream.protocol == protocol else NOT_FOUND

    return get


#: A protocol's own request variables (``<Protocol>_request_method`` ...).
_PROTOCOL_VARIABLES: dict[str, Getter] = {
    "request_scheme": _scheme,
    "request_method": _method,
    "request_path": _path,
    "request_uri": _uri,
    "request_arg": _query,
}
#: A protocol's prefix variables (``<Protocol>_request_header_NAME`` ...).
_PROTOCOL_PREFIXES: dict[str, Callable[[str], Getter]] = {
    "request_header_": _request_header,
    "request_arg_": _arg,
    "cookie_": _cookie,
}


def _prefixes() -> list[tuple[str, Callable[[str], Getter]]]:
    """Every prefix variable, the longest first (``Http1_request_header_`` before
    ``request_header_``)."""
    found: list[tuple[str, Callable[[str], Getter]]] = [
        ("request_header_", _request_header),
        ("response_header_", _response_header),
        ("REQ.", _request_header),
        ("RESP.", _response_header),
    ]
    for protocol in known_names():
        for prefix, make in _PROTOCOL_PREFIXES.items():
            found.append((f"{protocol}_{prefix}", _protocol_prefix(protocol, make)))
    return sorted(found, key=lambda item: -len(item[0]))


def _protocol_prefix(protocol: str, make: Callable[[str], Getter]) -> Callable[[str], Getter]:
    return lambda name: _of_protocol(protocol, make(name))


def lookup(name: str) -> Field:
    """Variable ``name`` as a format field: its name (MOSN 1.x's, for an old alias) and
    its getter.

    Raises:
        FormatError: no variable is called ``name``.
    """
    name = _LEGACY.get(name, name)
    getter = VARIABLES.get(name)
    if getter is not None:
        return name, getter
    for protocol in known_names():
        own = _PROTOCOL_VARIABLES.get(name[len(protocol) + 1 :]) if name.startswith(protocol + "_") else None
        if own is not None:
            return name, _of_protocol(protocol, own)
    for prefix, make in _prefixes():
        if name.startswith(prefix) and len(name) > len(prefix):
            return name, make(name[len(prefix) :])
    raise FormatError(f"unknown variable {name!r} (known: {', '.join(known_variables())})")


def known_variables() -> list[str]:
    """Every variable name a format may use (``NAME`` stands for a header, argument
    or cookie name after a prefix)."""
    names = sorted(VARIABLES)
    names += ["request_header_NAME", "response_header_NAME"]
    for protocol in known_names():
        names += [f"{protocol}_{v}" for v in _PROTOCOL_VARIABLES]
        names += [f"{protocol}_{p}NAME" for p in _PROTOCOL_PREFIXES]
    return names


def parse_format(fmt: str) -> list[str | Field]:
    """``fmt`` as its literal texts and fields (``(name, getter)``), in order; ``""``
    is :data:`DEFAULT_FORMAT`.

    Raises:
        FormatError: an empty ``%%``, an unclosed ``%``, or an unknown variable.
    """
    if not fmt:
        fmt = DEFAULT_FORMAT
    tokens: list[str | Field] = []
    text: list[str] = []
    name_start = -1  # inside a %variable% when >= 0
    i, n = 0, len(fmt)
    while i < n:
        ch = fmt[i]
        if ch == "\\" and i + 1 < n and fmt[i + 1] == "%" and name_start < 0:
            text.append("%")
            i += 2
            continue
        if ch == "%":
            if name_start < 0:
                if text:
                    tokens.append("".join(text))
                    text.clear()
                name_start = i + 1
            else:
                name = fmt[name_start:i]
                if not name:
                    raise FormatError(f"empty variable definition '%%' at position {i - 1}")
                tokens.append(lookup(name))
                name_start = -1
        elif name_start < 0:
            text.append(ch)
        i += 1
    if name_start >= 0:
        raise FormatError(f"unclosed variable definition at position {name_start - 1}")
    if text:
        tokens.append("".join(text))
    return tokens


def render(tokens: list[str | Field], ds: DownStream, now: float) -> str:
    """The line of ``tokens`` for ``ds``, field by field (what :func:`compile_format`'s
    function returns, the slow way)."""
    return "".join(t if isinstance(t, str) else t[1](ds, now) for t in tokens) + "\n"


#: The commonest variables as expressions, inlined by :func:`compile_format` (each
#: gives what its getter gives; in scope: ``ds``, ``now``, ``s`` = ``ds.stream``, ``st``
#: = its start time, ``c`` = ``ds.conn``).
_INLINE: dict[str, str] = {
    "start_time": "_wall(_time() - (now - st))",
    "request_received_duration": '(_go(ds.sent_at - st) if ds.sent_at else "0s")',
    "response_received_duration": '(_go(ds.responded_at - st) if ds.responded_at else "0s")',
    "request_finished_duration": "_go(now - st)",
    "duration": "_go(now - st)",
    "bytes_received": "str(ds.bytes_received)",
    "protocol": "s.protocol",
    "response_code": "str(s.response_status or 0)",
    "response_flag": '("true" if ds.response_flags else "false")',
    "response_flags": '("true" if ds.response_flags else "false")',
    "downstream_local_address": '(c.local_address or "-")',
    "downstream_remote_address": '(c.remote_address or "-")',
    "upstream_cluster": '(s.cluster_name or "-")',
}


def compile_format(tokens: list[str | Field]) -> Getter:
    """One function that builds the line of ``tokens`` (ending with a newline).

    A line is built per request, so the fields are fused into one expression, as
    ``dataclasses`` builds its methods: literal texts appear as ``repr()`` literals, the
    commonest variables inline (:data:`_INLINE`), every other field as a call of its
    getter; nothing from the config is ever part of the source but through ``repr()``.
    """
    scope: dict[str, object] = {"_go": go_duration, "_wall": _wall_clock, "_time": time.time}
    parts: list[str] = []
    for token in [*tokens, "\n"]:
        if isinstance(token, str):
            parts.append(repr(token))
            continue
        name, getter = token
        inline = _INLINE.get(name)
        if inline is None:
            key = f"_get{len(scope)}"
            scope[key] = getter
            inline = f"{key}(ds, now)"
        parts.append(inline)
    source = (
        "def line(ds, now):\n"
        "    s = ds.stream\n"
        "    st = s.start_time\n"
        "    c = ds.conn\n"
        f"    return ''.join(({', '.join(parts)},))\n"
    )
    exec(compile(source, "<access log format>", "exec"), scope)
    return cast(Getter, scope["line"])


# -- one access log -------------------------------------------------------------------


class AccessLog:
    """One ``access_logs`` entry: a parsed format and the writer of its path.

    Raises:
        FormatError: the format cannot be parsed (see :func:`parse_format`).
    """

    __slots__ = ("_broken", "format", "line", "path", "tokens", "writer")

    def __init__(self, path: str, fmt: str = "", *, writer: AccessLogWriter | None = None) -> None:
        self.path = path
        self.format = fmt
        self.tokens = parse_format(fmt)
        #: the line for a request that ended: ``line(ds, now)``
        self.line = compile_format(self.tokens)
        self.writer = writer if writer is not None else writer_for(path)
        self._broken = False

    def __repr__(self) -> str:
        return f"AccessLog({self.path!r}, {self.format!r})"

    def log(self, ds: DownStream, now: float) -> bool:
        """Queue the line for ``ds``; False when it was dropped (the queue is full)."""
        try:
            line = self.line(ds, now)
        except Exception:  # a getter's bug must never fail the request
            if not self._broken:
                self._broken = True
                log.exception("access log %s: cannot format a line (reported once)", self.path)
            return True
        return self.writer.write(line)


# -- writers --------------------------------------------------------------------------

_STD_FDS = {"stdout": 1, "stderr": 2}


def _key(path: str) -> str:
    if path in ("", "stdout"):
        return "stdout"
    if path == "stderr":
        return path
    return os.path.abspath(path)


class AccessLogWriter:
    """Lines for one path, queued by the event loop and written by a thread.

    :meth:`write` never blocks: past ``capacity`` queued lines it refuses the line
    (counted in :attr:`dropped`).  Nothing is opened before :meth:`retain`.
    """

    def __init__(self, path: str, *, capacity: int = QUEUE_LINES) -> None:
        self.path = path
        self.capacity = capacity
        self._wake_at = max(1, capacity // 4)
        self._queue: collections.deque[str] = collections.deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd = _STD_FDS.get(_key(path), -1)
        self._own_fd = self._fd < 0
        self._refs = 0
        self._reopen = False
        self._failing = False
        #: set once released by its last user (or at exit): lines are refused from then on
        self.closed = False
        #: lines refused because the queue was full (or the writer closed)
        self.dropped = 0
        #: lines the thread could not write (the file would not open, or a write failed)
        self.failed = 0
        #: lines written
        self.written = 0

    def __repr__(self) -> str:
        return f"<AccessLogWriter {self.path!r} queued={len(self._queue)} refs={self._refs}>"

    @property
    def running(self) -> bool:
        return self._thread is not None and not self.closed

    def write(self, line: str) -> bool:
        """Queue ``line`` (ending with a newline); False if it was dropped."""
        queue = self._queue
        size = len(queue)
        if size >= self.capacity or self.closed:
            self.dropped += 1
            return False
        queue.append(line)
        if size + 1 == self._wake_at:
            self._wake.set()
        return True

    def retain(self) -> None:
        """One more user; the first opens the file (its directory created) and starts
        the thread.

        Raises:
            OSError: the file cannot be opened.
        """
        if self.closed:
            raise RuntimeError(f"access log writer {self.path!r} is closed")
        if self._thread is None:
            if self._own_fd:
                self._fd = self._open()
            self._thread = threading.Thread(target=self._run, name=f"accesslog {self.path}", daemon=True)
            self._thread.start()
            _started.append(self)
        self._refs += 1

    def release(self) -> None:
        """One user fewer; after the last the queue is flushed and the file closed (by
        the thread: this never waits)."""
        self._refs -= 1
        if self._refs <= 0:
            self.close()

    def close(self) -> None:
        """Refuse further lines; the thread writes what is queued, closes and ends."""
        self.closed = True
        if _WRITERS.get(_key(self.path)) is self:
            del _WRITERS[_key(self.path)]
        self._wake.set()

    def reopen(self) -> None:
        """Reopen the path before the next batch (logrotate moved the file away)."""
        if self._own_fd:
            self._reopen = True
            self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait (blocking: for tests) until every line queued so far is written; False
        on timeout or when no thread runs."""
        if self._thread is None:
            return False
        deadline = time.monotonic() + timeout
        while self._queue or self._reopen:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            self._wake.set()
            time.sleep(0.002)
        # The queue is empty; a batch taken from it may still be being written: wait
        # for the end of a pass that began after now.
        self._idle.clear()
        self._wake.set()
        return self._idle.wait(max(0.0, deadline - time.monotonic()))

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the thread ----------------------------------------------------------------

    def _open(self) -> int:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _run(self) -> None:
        wake, idle = self._wake, self._idle
        while True:
            wake.wait(FLUSH_INTERVAL)
            wake.clear()
            closing = self.closed
            if self._reopen:
                self._reopen = False
                self._reopen_file()
            self._write_batch()
            idle.set()
            if closing:
                self._write_batch()  # what came in while the flag was read
                if self._own_fd and self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
                idle.set()
                if self in _started:
                    _started.remove(self)
                return

    def _reopen_file(self) -> None:
        old, self._fd = self._fd, -1
        if old >= 0:
            try:
                os.close(old)
            except OSError:
                pass
        try:
            self._fd = self._open()
        except OSError as exc:
            self._report(f"cannot reopen: {exc}")

    def _write_batch(self) -> None:
        queue = self._queue
        count = len(queue)
        if not count:
            return
        lines = [queue.popleft() for _ in range(count)]
        if self._fd < 0 and self._own_fd:
            try:
                self._fd = self._open()
            except OSError as exc:
                self.failed += count
                self._report(f"cannot open: {exc}; {count} line(s) lost")
                return
        data = memoryview("".join(lines).encode("utf-8", "backslashreplace"))
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            self.failed += count
            self._report(f"write failed: {exc}; {count} line(s) lost")
            return
        self.written += count
        if self._failing:
            self._failing = False
            log.warning("access log %s: writing again", self.path)

    def _report(self, problem: str) -> None:
        if not self._failing:  # once per episode, not per batch
            self._failing = True
            log.error("access log %s: %s", self.path, problem)


#: path → its writer (the live one; a closed writer leaves)
_WRITERS: dict[str, AccessLogWriter] = {}
#: every writer whose thread was started (flushed at exit)
_started: list[AccessLogWriter] = []


def writer_for(path: str) -> AccessLogWriter:
    """The writer of ``path``, shared by every access log naming it (created idle)."""
    key = _key(path)
    writer = _WRITERS.get(key)
    if writer is None or writer.closed:
        writer = _WRITERS[key] = AccessLogWriter(path)
    return writer


def reopen_all() -> int:
    """Reopen every access log file (SIGUSR1); the number of writers asked."""
    writers = [w for w in _WRITERS.values() if w.running]
    for writer in writers:
        writer.reopen()
    return len(writers)


@atexit.register
def _flush_at_exit() -> None:
    writers = list(_started)
    for writer in writers:
        writer.close()
    deadline = time.monotonic() + 5.0
    for writer in writers:
        writer.join(max(0.0, deadline - time.monotonic()))
