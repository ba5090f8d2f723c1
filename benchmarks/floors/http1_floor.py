"""The HTTP/1.1 floor: the cheapest trio reverse proxy that still does the job properly.

    python benchmarks/floors/http1_floor.py --listen PORT --upstream PORT

How it keeps the cost down (each point is a choice mosnpy could make too):

* plain non-blocking stdlib sockets: ``recv_into`` / ``send`` are called directly, and
  the task parks in ``trio.lowlevel.wait_readable`` / ``wait_writable`` only on EAGAIN;
* yield, then recv: right before a read that would usually find nothing yet (the
  upstream answer just after the request left; the client's next request just after
  the response left) the task yields once, so the bytes are usually there by the time
  it reads;
* one task per downstream connection, which holds one pooled keep-alive upstream
  connection while it lives (LIFO pool);
* the raw head is forwarded: one regex scan of the head finds the lines that matter
  (Content-Length, Transfer-Encoding, Connection and the other hop-by-hop headers,
  Expect), and httptools (llhttp) is fed the same bytes to validate them; the head is
  rewritten only when it carries hop-by-hop headers other than ``Connection: keep-alive``;
* a message whose head and body are both at hand leaves in one ``send``.

Framing: Content-Length, chunked (llhttp finds the end; it is fed up to each CRLFCRLF so
that it never reads into the next message), no body (HEAD, 1xx, 204, 304), or until the
upstream closes.  ``Expect: 100-continue`` is answered here; Upgrade/CONNECT get 501,
malformed requests 400, upstream failures 502.  A request on a reused upstream
connection that the upstream closed before answering is retried once on a new one.
Simplifications: no timeouts; pipelined requests wait in the buffer and are answered in
order.  SIGTERM ends the process.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
from pathlib import Path

import httptools
import trio
from trio.lowlevel import checkpoint, wait_readable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import rawio

BUF = 65536
CRLF2 = b"\r\n\r\n"
# One scan of a head: every line that matters for framing or is hop-by-hop; each match
# starts at the "\r\n" before the line, and findall() gives (content-length, connection,
# transfer-encoding, expect, other hop-by-hop name, value): one group per kind saves
# lower-casing the names.
HEADER_RE = re.compile(
    rb"\r\n(?:(content-length)|(connection)|(transfer-encoding)|(expect)|(keep-alive|proxy-connection|"
    rb"te|trailer|upgrade|proxy-authenticate|proxy-authorization))[ \t]*:[ \t]*([^\r\n]*)",
    re.IGNORECASE,
)
HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    )
)
KEEP_ALIVE = frozenset((b"keep-alive",))
CLOSE = frozenset((b"close",))
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
BY_LENGTH, CHUNKED, UNTIL_CLOSE = range(3)


def simple_response(status: int, reason: bytes) -> bytes:
    return b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % (status, reason)


BAD_REQUEST = simple_response(400, b"Bad Request")
TOO_LARGE = simple_response(431, b"Request Header Fields Too Large")
NOT_IMPLEMENTED = simple_response(501, b"Not Implemented")
BAD_GATEWAY = simple_response(502, b"Bad Gateway")


class ProxyError(Exception):
    """Ends the downstream connection, after sending ``response`` if there is one."""

    def __init__(self, response: bytes | None = None) -> None:
        super().__init__()
        self.response = response


class UpstreamGone(Exception):
    """The upstream closed or failed before a byte of the response arrived."""


class Sink:
    """httptools callbacks: only message-complete (header callbacks cost time)."""

    __slots__ = ("done", "keep_alive", "parser")

    def __init__(self) -> None:
        self.done = False
        self.keep_alive = False
        self.parser: httptools.HttpRequestParser | httptools.HttpResponseParser | None = None

    def on_message_complete(self) -> None:
        self.done = True
        # read here: llhttp resets its flags once the message is complete
        self.keep_alive = self.parser.should_keep_alive()  # type: ignore[union-attr]


def request_parser() -> tuple[httptools.HttpRequestParser, Sink]:
    sink = Sink()
    sink.parser = parser = httptools.HttpRequestParser(sink)
    return parser, sink


def response_parser() -> tuple[httptools.HttpResponseParser, Sink]:
    sink = Sink()
    sink.parser = parser = httptools.HttpResponseParser(sink)
    return parser, sink


class Conn:
    """A socket with its read buffer: unread bytes are ``buf[r:w]``."""

    __slots__ = ("buf", "mv", "r", "sock", "w")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray(BUF)
        self.mv = memoryview(self.buf)
        self.r = self.w = 0

    def make_room(self) -> None:
        """Start at 0 when empty; when full, move the unread bytes down."""
        if self.r == self.w:
            self.r = self.w = 0
        elif self.w == BUF:
            if self.r == 0:
                raise ProxyError(TOO_LARGE)
            size = self.w - self.r
            self.mv[:size] = self.mv[self.r : self.w]
            self.r, self.w = 0, size

    def head_now(self) -> int:
        """End of the head at ``r`` if the bytes at hand, plus one recv that does not
        wait, hold all of it; else -1 (then :meth:`read_head` waits for the rest)."""
        hend = self.buf.find(CRLF2, self.r, self.w)
        if hend >= 0:
            return hend
        self.make_room()
        try:
            n = self.sock.recv_into(self.mv[self.w :])
        except BlockingIOError:
            return -1
        self.w += n
        return self.buf.find(CRLF2, self.r, self.w) if n else -1

    async def fill(self) -> int:
        """Read more bytes after ``w`` (0 at EOF)."""
        self.make_room()
        while True:
            try:
                n = self.sock.recv_into(self.mv[self.w :])
            except BlockingIOError:
                await wait_readable(self.sock)
                continue
            self.w += n
            return n

    async def read_head(self) -> int:
        """Index of the CRLFCRLF ending the head at ``r``; -1 at EOF before any byte."""
        hend = self.buf.find(CRLF2, self.r, self.w)
        while hend < 0:
            seen = self.w - self.r
            if not await self.fill():
                if self.r == self.w:
                    return -1
                raise ProxyError(BAD_REQUEST)
            hend = self.buf.find(CRLF2, self.r + max(0, seen - 3), self.w)
        return hend

    def close(self) -> None:
        rawio.close(self.sock)


NO_HEADERS: tuple[int, bool, frozenset[bytes] | None, bool, bool] = (-1, False, None, False, False)


def framing(
    hits: list[tuple[bytes, bytes, bytes, bytes, bytes, bytes]],
) -> tuple[int, bool, frozenset[bytes] | None, bool, bool]:
    """(content-length or -1, chunked, Connection tokens, other hop-by-hop, expect 100)."""
    if not hits:
        return NO_HEADERS
    length = -1
    chunked = expect = other_hop = False
    tokens: frozenset[bytes] | None = None
    for is_length, is_connection, is_te, is_expect, _other, value in hits:
        if is_length:
            length = int(value)  # llhttp has checked it (digits; duplicates agree)
        elif is_connection:
            v = value.rstrip().lower()
            new = KEEP_ALIVE if v == b"keep-alive" else frozenset(t.strip() for t in v.split(b","))
            tokens = new if tokens is None else tokens | new
        elif is_te:
            chunked = value.rstrip().lower().endswith(b"chunked")
        elif is_expect:
            expect = value.strip().lower() == b"100-continue"
        else:
            other_hop = True
    return length, chunked, tokens, other_hop, expect


def strip_head(
    buf: bytearray, start: int, hend: int, tokens: frozenset[bytes] | None, close: bool, expect: bool
) -> bytes:
    """The head at ``buf[start:hend]`` without hop-by-hop lines, ending in CRLFCRLF."""
    drop = HOP_BY_HOP | tokens if tokens else HOP_BY_HOP
    if expect:
        drop = drop | {b"expect"}
    lines = bytes(buf[start:hend]).split(b"\r\n")
    kept = [lines[0]]
    kept += [ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().lower() not in drop]
    if close:
        kept.append(b"connection: close")
    return b"\r\n".join(kept) + CRLF2


def chunked_end(buf: bytearray, r: int, w: int, carry: bytes) -> int:
    """End of the first CRLFCRLF that ends in ``buf[r:w]``, counting ``carry`` (the up to
    3 bytes fed just before ``r``); ``w`` when there is none."""
    for k in (3, 2, 1):
        if len(carry) >= k and r + 4 - k <= w and carry[-k:] + buf[r : r + 4 - k] == CRLF2:
            return r + 4 - k
    found = buf.find(CRLF2, r, w)
    return w if found < 0 else found + 4


async def relay(
    src: Conn,
    dst: socket.socket,
    parser: httptools.HttpRequestParser | httptools.HttpResponseParser,
    sink: Sink,
    mode: int,
    remaining: int,
    first: bytes,
) -> bool:
    """Forward the rest of a body from ``src`` to ``dst``, ``first`` (the head) in front
    of the first piece.  Returns True if it ended at ``src``'s EOF (UNTIL_CLOSE)."""
    carry = b""
    while True:
        r, w = src.r, src.w
        done = False
        if mode == BY_LENGTH:
            end = r + min(remaining, w - r)
            if end > r:
                parser.feed_data(src.mv[r:end])
            remaining -= end - r
            done = remaining == 0
            if done and not sink.done:
                raise ProxyError(BAD_GATEWAY)  # llhttp disagrees with the framing
        elif mode == CHUNKED:
            end = r
            while end < w and not sink.done:
                stop = chunked_end(src.buf, end, w, carry)
                parser.feed_data(src.mv[end:stop])
                carry = (carry + bytes(src.mv[max(end, stop - 3) : stop]))[-3:]
                end = stop
            done = sink.done
        else:
            end = w
        src.r = end
        piece = src.mv[r:end]
        if first:
            data: bytes | memoryview = first + bytes(piece) if len(piece) else first
            first = b""
        else:
            data = piece
        if len(data):
            await rawio.send_all(dst, data)
        if done:
            return False
        if not await src.fill():
            if mode == UNTIL_CLOSE:
                return True
            raise ProxyError()


class Upstream(Conn):
    """A pooled upstream connection: its response parser lives as long as it does."""

    __slots__ = ("parser", "sink", "uses")

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.parser, self.sink = response_parser()
        self.uses = 0


class Proxy:
    def __init__(self, upstream_port: int, max_idle: int = 1024) -> None:
        self.upstream_port = upstream_port
        self.idle: list[Upstream] = []  # LIFO
        self.max_idle = max_idle

    async def serve(self, lsock: socket.socket) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                nursery.start_soon(self.downstream, await rawio.accept(lsock))

    async def connect(self) -> Upstream:
        try:
            return Upstream(await rawio.connect(self.upstream_port))
        except OSError:
            raise ProxyError(BAD_GATEWAY) from None

    async def downstream(self, sock: socket.socket) -> None:
        client = Conn(sock)
        held: list[Upstream] = []  # the upstream connection this client holds, if any
        try:
            parser, sink = request_parser()
            while True:
                hend = client.buf.find(CRLF2, client.r, client.w)
                if hend < 0:
                    await checkpoint()  # yield, then recv: the next request is usually in by now
                    hend = client.head_now()
                    if hend < 0:
                        hend = await client.read_head()
                if hend < 0 or not await self.exchange(client, hend, parser, sink, held):
                    return
        except ProxyError as exc:
            if exc.response:
                try:
                    sock.send(exc.response)
                except OSError:
                    pass
        except (OSError, httptools.HttpParserError):
            pass
        finally:
            client.close()
            for up in held:
                if len(self.idle) < self.max_idle:
                    self.idle.append(up)
                else:
                    up.close()

    async def exchange(
        self,
        client: Conn,
        hend: int,
        parser: httptools.HttpRequestParser,
        sink: Sink,
        held: list[Upstream],
    ) -> bool:
        """Forward the request whose head ends at ``hend``, relay its response, and keep
        the upstream connection in ``held`` if it can carry the next one.  Returns whether
        the client connection stays open."""
        buf, mv, r = client.buf, client.mv, client.r
        he = hend + 4
        try:
            length, chunked, tokens, hop, expect = framing(HEADER_RE.findall(buf, r, hend))
        except ValueError:
            raise ProxyError(BAD_REQUEST) from None
        sink.done = False
        try:
            parser.feed_data(mv[r:he])
        except httptools.HttpParserUpgrade:
            raise ProxyError(NOT_IMPLEMENTED) from None
        except httptools.HttpParserError:
            raise ProxyError(BAD_REQUEST) from None
        is_head = buf.startswith(b"HEAD ", r)
        rewrite = hop or expect or (tokens is not None and tokens != KEEP_ALIVE)
        head_out = strip_head(buf, r, hend, tokens, False, expect) if rewrite else None
        if sink.done:
            end = he
        elif chunked:
            end = -1
        elif length > 0:
            end = he + length
        else:
            raise ProxyError(BAD_REQUEST)

        if held:
            up = held.pop()
        elif self.idle:
            up = self.idle.pop()
        else:
            up = await self.connect()
        try:
            if 0 <= end <= client.w:
                # the whole request is at hand: validate its body, then one send
                if end > he:
                    parser.feed_data(mv[he:end])
                    if not sink.done:
                        raise ProxyError(BAD_REQUEST)
                out = mv[r:end] if head_out is None else head_out + bytes(mv[he:end])
                client.r = end
                while True:
                    try:
                        sent = rawio.send_now(up.sock, out)
                        if sent != len(out):
                            await rawio.send_all(up.sock, out[sent:])
                        await checkpoint()  # yield, then recv: the answer usually arrives meanwhile
                        keep_alive, reusable = await self.respond(client, up, sink.keep_alive, is_head)
                        break
                    except (UpstreamGone, OSError):
                        # a pooled connection the upstream had closed: once more on a new one
                        if not up.uses:
                            raise ProxyError(BAD_GATEWAY) from None
                        up.close()
                        up = await self.connect()
            else:
                # the body is still arriving (or chunked): the head and what is here, then the rest
                first = head_out if head_out is not None else bytes(mv[r:he])
                client.r = he
                if expect:
                    await rawio.send_all(client.sock, CONTINUE)
                try:
                    mode = CHUNKED if end < 0 else BY_LENGTH
                    await relay(client, up.sock, parser, sink, mode, length, first)
                    await checkpoint()
                    keep_alive, reusable = await self.respond(client, up, sink.keep_alive, is_head)
                except (UpstreamGone, OSError):
                    raise ProxyError(BAD_GATEWAY) from None
        except BaseException:
            up.close()
            raise
        if reusable:
            held.append(up)
        else:
            up.close()
        return keep_alive

    async def respond(self, client: Conn, up: Upstream, keep_alive: bool, is_head: bool) -> tuple[bool, bool]:
        """Relay the response to the request just sent on ``up``.  Returns (the client
        connection stays open, ``up`` can carry another request).  Raises UpstreamGone if
        ``up`` ends before the first byte of a response."""
        parser, sink = up.parser, up.sink
        started = False
        try:
            while True:
                try:
                    hend = up.head_now()
                    if hend < 0:
                        hend = await up.read_head()
                except OSError:
                    hend = -1
                if hend < 0:
                    if started or up.r != up.w:
                        raise ProxyError(BAD_GATEWAY if not started else None)
                    raise UpstreamGone()
                started = True
                ubuf, umv, ur = up.buf, up.mv, up.r
                uhe = hend + 4
                length, chunked, tokens, hop, _ = framing(HEADER_RE.findall(ubuf, ur, hend))
                sink.done = False
                parser.feed_data(umv[ur:uhe])
                status = parser.get_status_code()
                if status >= 200:
                    break
                if status == 101:
                    raise ProxyError(BAD_GATEWAY)
                await rawio.send_all(client.sock, bytes(umv[ur:uhe]))  # 100, 102, 103
                up.r = uhe
        except (httptools.HttpParserError, ValueError):
            raise ProxyError(BAD_GATEWAY) from None
        if is_head:
            end = uhe
            reusable_head = parser.should_keep_alive()
            up.parser, up.sink = parser, sink = response_parser()  # llhttp would wait for a body
            sink.done, sink.keep_alive = True, reusable_head
        elif sink.done:
            end = uhe  # 204, 304, Content-Length: 0
        elif length >= 0:
            end = uhe + length
        elif chunked:
            end = -1
        else:
            end = -2  # until the upstream closes: the client cannot keep its connection
            keep_alive = False
        # rewrite the head only if its hop-by-hop lines are not what we would send anyway
        wanted = KEEP_ALIVE if keep_alive else CLOSE
        rewrite = hop or (tokens != wanted if tokens is not None else not keep_alive)
        head_out = strip_head(ubuf, ur, hend, tokens, not keep_alive, False) if rewrite else None
        at_eof = False
        if 0 <= end <= up.w:
            if end > uhe:
                parser.feed_data(umv[uhe:end])
                if not sink.done:
                    raise ProxyError(BAD_GATEWAY)
            out = umv[ur:end] if head_out is None else head_out + bytes(umv[uhe:end])
            up.r = end
            sent = rawio.send_now(client.sock, out)
            if sent != len(out):
                await rawio.send_all(client.sock, out[sent:])
        else:
            first = head_out if head_out is not None else bytes(umv[ur:uhe])
            up.r = uhe
            if end == uhe:
                await rawio.send_all(client.sock, first)
            else:
                mode = BY_LENGTH if end >= 0 else (CHUNKED if end == -1 else UNTIL_CLOSE)
                at_eof = await relay(up, client.sock, parser, sink, mode, length, first)
        up.uses += 1
        reusable = not at_eof and sink.done and sink.keep_alive and up.r == up.w
        if up.r == up.w:
            up.r = up.w = 0
        return keep_alive, reusable


async def main(args: argparse.Namespace) -> None:
    lsock = rawio.listen(args.listen)
    print(f"http1_floor: 127.0.0.1:{args.listen} -> 127.0.0.1:{args.upstream}", flush=True)
    await Proxy(args.upstream).serve(lsock)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--upstream", type=int, required=True)
    trio.run(main, ap.parse_args())
