"""TLS under any connection: ``ssl.MemoryBIO`` behind the connection's transport seam.

Theory of operation
-------------------
A :class:`TLSConnection` is a :class:`~mosnpy.net.connection.Connection` whose bytes
pass through an ``ssl.SSLObject`` on two memory BIOs: what arrives from the socket is
written to the incoming BIO and read back as plaintext; what the layers above send is
encrypted into records and handed to the plain connection's own writing path
(:meth:`~mosnpy.net.connection.Connection._write_wire`), so TLS costs no task and no
extra wake-up per connection, keeps one ``send`` per batch and the same backpressure
(the backlog is counted in wire bytes).  Everything above the connection — listener
filters aside — is unchanged: stream connections see plaintext.

Why memory BIOs rather than ``SSLSocket``: a wrapped socket reads records on its own
schedule and cannot say how much it buffered; the BIO pair keeps every ``recv`` and
``send`` in our hands (the §8 socket habits: yield then read, one send per message).

Contexts come from MOSN's ``tls_context`` (:class:`TLSConfig`): certificate and key
(file paths or inline PEM), a CA for peer verification, ``verify_client`` /
``require_client_cert``, version bounds, cipher suites, ALPN; several server contexts
are chosen by SNI (``tls_context_set``).  Upstream contexts verify the server by
default (``insecure_skip`` turns it off, loudly) and send SNI.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Sequence
from typing import Final

import trio

from mosnpy.config.models import TLSConfig
from mosnpy.native import mypyc_attr
from mosnpy.net.connection import READ_SIZE, Connection, ConnectionClosedError, open_socket
from mosnpy.net.events import ConnectionEvent

__all__ = [
    "TLSConfig",
    "TLSConnection",
    "TLSHandshakeError",
    "client_context",
    "connect_tls",
    "server_context",
]

log: Final = logging.getLogger("mosnpy.net")

_VERSIONS: Final = {
    "tls_auto": None,
    "": None,
    "tlsv1_0": ssl.TLSVersion.TLSv1,
    "tlsv1_1": ssl.TLSVersion.TLSv1_1,
    "tlsv1_2": ssl.TLSVersion.TLSv1_2,
    "tlsv1_3": ssl.TLSVersion.TLSv1_3,
}


@mypyc_attr(native_class=False)
class TLSHandshakeError(ConnectionError):
    """The TLS handshake failed (bad certificate, no shared version, peer gone...)."""


def _version(value: str) -> ssl.TLSVersion | None:
    key = value.strip().lower().replace(".", "_").replace("tls1_", "tlsv1_")
    if key in ("1_0", "1_1", "1_2", "1_3"):
        key = "tlsv" + key
    if key not in _VERSIONS:
        raise ValueError(f"unknown TLS version {value!r} (TLS_AUTO, TLSv1_0 .. TLSv1_3)")
    return _VERSIONS[key]


def _pem_file(value: str, what: str) -> str:
    """A path for ``value``: a file path as is, inline PEM written to a private file."""
    if "-----BEGIN" not in value:
        if not os.path.isfile(value):
            raise ValueError(f"{what}: no such file {value!r}")
        return value
    fd, path = tempfile.mkstemp(prefix="mosnpy-tls-", suffix=".pem")
    with os.fdopen(fd, "w") as out:
        out.write(value)
    return path


def _alpn(cfg: TLSConfig) -> list[str]:
    return [p.strip() for p in cfg.alpn.split(",") if p.strip()]


def _common(ctx: ssl.SSLContext, cfg: TLSConfig) -> None:
    low, high = _version(cfg.min_version), _version(cfg.max_version)
    if low is not None:
        ctx.minimum_version = low
    if high is not None:
        ctx.maximum_version = high
    if cfg.cipher_suites:
        try:
            ctx.set_ciphers(cfg.cipher_suites.replace(",", ":"))
        except ssl.SSLError as exc:
            raise ValueError(f"cipher_suites {cfg.cipher_suites!r}: {exc}") from None
    if cfg.alpn:
        ctx.set_alpn_protocols(_alpn(cfg))


def _load_chain(ctx: ssl.SSLContext, cfg: TLSConfig) -> None:
    cert = _pem_file(cfg.cert_chain, "cert_chain")
    key = _pem_file(cfg.private_key, "private_key") if cfg.private_key else None
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"cert_chain/private_key: {exc}") from None


def server_context(configs: Sequence[TLSConfig]) -> ssl.SSLContext:
    """A listener's context: the first config's certificate, and the others' chosen by
    SNI (each config's ``server_name``), as MOSN's ``tls_context_set``.

    Raises:
        ValueError: a missing certificate or key, a bad version or cipher string.
    """
    contexts: dict[str, ssl.SSLContext] = {}
    first: ssl.SSLContext | None = None
    for cfg in configs:
        if not cfg.cert_chain:
            raise ValueError("a listener tls_context needs cert_chain and private_key")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _common(ctx, cfg)
        _load_chain(ctx, cfg)
        if cfg.verify_client or cfg.require_client_cert:
            if not cfg.ca_cert:
                raise ValueError("verify_client / require_client_cert need ca_cert")
            ctx.load_verify_locations(_pem_file(cfg.ca_cert, "ca_cert"))
            ctx.verify_mode = ssl.CERT_REQUIRED if cfg.require_client_cert else ssl.CERT_OPTIONAL
        if first is None:
            first = ctx
        if cfg.server_name:
            contexts[cfg.server_name.lower()] = ctx
    if first is None:
        raise ValueError("no tls_context")
    if len(configs) > 1:

        def pick(sslobj: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext) -> None:
            chosen = contexts.get((name or "").lower())
            if chosen is not None:
                sslobj.context = chosen

        first.sni_callback = pick
    return first


def client_context(cfg: TLSConfig) -> ssl.SSLContext:
    """An upstream context: the server is verified (``ca_cert``, else the system's
    roots) unless ``insecure_skip``; a client certificate when given (mTLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _common(ctx, cfg)
    if cfg.insecure_skip:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        log.warning("an upstream tls_context has insecure_skip: the server is not verified")
    elif cfg.ca_cert:
        ctx.load_verify_locations(_pem_file(cfg.ca_cert, "ca_cert"))
    else:
        ctx.load_default_certs()
    if cfg.cert_chain:
        _load_chain(ctx, cfg)
    return ctx


class TLSConnection(Connection):
    """A connection whose bytes are TLS records (see the module docstring)."""

    __slots__ = ("_incoming", "_outgoing", "_ssl", "_tls_eof")

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        super().__init__(sock, server_side=server_side)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self._tls_eof = False

    @property
    def alpn_protocol(self) -> str | None:
        """The protocol ALPN chose (``"h2"``, ``"http/1.1"``), or None."""
        return self._ssl.selected_alpn_protocol()

    # -- the handshake -----------------------------------------------------------------

    async def handshake(self, timeout: float) -> None:
        """Run the handshake to its end within ``timeout`` seconds.

        Raises:
            TLSHandshakeError: it failed or timed out (the connection is closed).
        """
        try:
            with trio.fail_after(timeout):
                while True:
                    try:
                        self._ssl.do_handshake()
                    except ssl.SSLWantReadError:
                        await self._flush_records()
                        data = await self._raw_receive()
                        if not data:
                            raise TLSHandshakeError("the peer closed during the TLS handshake") from None
                        self._incoming.write(data)
                        continue
                    except ssl.SSLError as exc:
                        await self._flush_records_quietly()
                        raise TLSHandshakeError(f"TLS handshake failed: {exc.reason or exc}") from None
                    await self._flush_records()
                    return
        except trio.TooSlowError:
            self.close(ConnectionEvent.LOCAL_CLOSE)
            raise TLSHandshakeError(f"TLS handshake not done within {timeout:g}s") from None
        except (TLSHandshakeError, ConnectionClosedError) as exc:
            self.close(ConnectionEvent.LOCAL_CLOSE)
            if isinstance(exc, TLSHandshakeError):
                raise
            raise TLSHandshakeError(f"TLS handshake failed: {exc}") from None

    async def _raw_receive(self) -> bytes:
        while True:
            try:
                return self._sock.recv(READ_SIZE)
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_readable(self._sock)
                except trio.ClosedResourceError:
                    raise ConnectionClosedError(f"{self!r} was closed during the handshake") from None
            except OSError as exc:
                raise ConnectionClosedError(f"read failed: {exc}") from exc

    async def _flush_records(self) -> None:
        records = self._outgoing.read()
        if records:
            await self._send_unlocked(records)

    async def _flush_records_quietly(self) -> None:
        """Send the alert a failed handshake produced, if the socket takes it."""
        try:
            records = self._outgoing.read()
            if records:
                self._sock.send(records)
        except OSError:
            pass

    # -- the transport seam --------------------------------------------------------------

    def receive_nowait(self, max_bytes: int = READ_SIZE) -> bytes | None:
        if self.closed:
            raise ConnectionClosedError(f"{self!r} is closed")
        tls = self._ssl
        while True:
            try:
                data = tls.read(max_bytes)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return b""  # close_notify: a clean end
            except ssl.SSLError as exc:
                if self._tls_eof:
                    return b""  # the peer closed without close_notify: treat as EOF
                self.close(ConnectionEvent.READ_ERROR_CLOSE)
                raise ConnectionClosedError(f"TLS read failed: {exc.reason or exc}") from None
            else:
                self.last_active = trio.current_time()
                if self._outgoing.pending:
                    self._write_records()  # a key update or ticket answer
                return data
            if self._tls_eof:
                return b""
            try:
                raw = self._sock.recv(max_bytes)
            except BlockingIOError:
                return None
            except OSError as exc:
                self.close(ConnectionEvent.READ_ERROR_CLOSE)
                raise ConnectionClosedError(f"read failed: {exc}") from exc
            if not raw:
                self._tls_eof = True
                self._incoming.write_eof()
            else:
                self.traffic.read += len(raw)
                self._incoming.write(raw)

    def _write_wire(self, data: bytes | bytearray) -> None:
        if self.closed:
            raise ConnectionClosedError(f"{self!r} is closed")
        try:
            self._ssl.write(data)
        except ssl.SSLError as exc:
            self.close(ConnectionEvent.WRITE_ERROR_CLOSE)
            raise ConnectionClosedError(f"TLS write failed: {exc.reason or exc}") from None
        self._write_records()

    def _write_records(self) -> None:
        records = self._outgoing.read()
        if records:
            super()._write_wire(records)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt in call order (records must reach the wire in the order they were
        made), then wait until the socket took them."""
        if self.filter_manager.write_filters:
            buf = bytearray(data)
            if not self.filter_manager.on_write(buf):
                await trio.lowlevel.checkpoint()
                return
            data = buf
        self._write_wire(bytes(data))
        await self.drain()

    def peer_closed_while_idle(self) -> bool:
        """Read what the idle peer sent (a session ticket is fine); EOF, an alert or
        application data nobody asked for mean the connection is unusable."""
        if self.closed:
            return True
        try:
            data = self.receive_nowait(1)
        except ConnectionClosedError:
            return True
        return data is not None

    def shutdown_write(self) -> None:
        if self.closed:
            return
        try:
            self._ssl.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        try:
            self._write_records()
        except ConnectionClosedError:
            return
        super().shutdown_write()

    def close(self, event: ConnectionEvent = ConnectionEvent.LOCAL_CLOSE) -> None:
        if not self.closed and event is ConnectionEvent.LOCAL_CLOSE and not self._wbuf:
            # A best-effort close_notify, so the peer sees a clean end.
            try:
                self._ssl.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLError, ValueError):
                pass
            try:
                records = self._outgoing.read()
                if records:
                    self._sock.send(records)
            except OSError:
                pass
        super().close(event)


async def connect_tls(
    address: str, context: ssl.SSLContext, *, server_hostname: str | None, timeout: float
) -> TLSConnection:
    """Connect to ``address`` and run the client handshake, both within ``timeout``.

    Raises:
        OSError, TimeoutError: the connect failed.
        TLSHandshakeError: the handshake failed (e.g. the server's certificate does not
            verify: the message says why).
    """
    deadline = trio.current_time() + timeout
    sock = await open_socket(address, timeout=timeout)
    conn = TLSConnection(sock, context, server_side=False, server_hostname=server_hostname)
    await conn.handshake(max(deadline - trio.current_time(), 0.001))
    return conn
