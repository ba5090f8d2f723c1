"""What a protocol plugin hands the ``protocols`` registry: one small frozen object.

A :class:`ProtocolDescriptor` names the protocol as configs spell it (``"Http1"``),
carries its sniffing matcher for listeners that detect the protocol, and builds the
sans-I/O codecs for each new connection: ``server_codec`` for a downstream connection
(parses requests), ``client_codec`` for an upstream one (parses responses).  Both take
the protocol's ``extend_config`` section as keyword arguments; keys the protocol does
not know are refused with a message that lists the ones it does, so a config typo is
reported by name instead of surfacing as a ``TypeError``.

A protocol family that has stream connections (:mod:`mosnpy.protocol.api`) names their
factories here too, with its :class:`~mosnpy.protocol.api.PoolMode`: that is all the
proxy needs to serve it, so a third party registers a whole new family through the
``mosnpy.protocols`` entry-point group with no change to the core.  Every xprotocol
codec gets one (:mod:`mosnpy.protocol.xprotocol.registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mosnpy.protocol.api import ClientStreamConnection, PoolMode, ServerStreamConnection
from mosnpy.protocol.matcher import Matcher

__all__ = ["ProtocolDescriptor"]


@dataclass(frozen=True)
class ProtocolDescriptor:
    """A protocol's name, matcher and codec factories.

    Codecs differ per protocol, so the factories are typed loosely (``Any``); code that
    drives one protocol knows its codec class and annotates with it.

    Attributes:
        name: the name configs use (``downstream_protocol: "Http1"``).
        matcher: sniffs a connection's first bytes (MATCH / AGAIN / FAILED).
        server_factory: builds the codec for a downstream connection.
        client_factory: builds the codec for an upstream connection.
        options: the ``extend_config`` keys the factories accept.
        pool_mode: how upstream connections are shared.
        server_stream_connection: builds a downstream stream connection (keyword
            arguments: the ``extend_config`` options); None for a protocol the proxy
            drives through its codec (HTTP/1, until it moves onto stream connections).
        client_stream_connection: builds an upstream stream connection.
        family: protocols of one non-empty family convert into each other (``"http"``:
            HTTP/1.1 and HTTP/2), so a listener may speak one and its upstream the other.
    """

    name: str
    matcher: Matcher
    server_factory: Callable[..., Any]
    client_factory: Callable[..., Any]
    options: frozenset[str] = field(default=frozenset())
    pool_mode: PoolMode = PoolMode.PING_PONG
    server_stream_connection: Callable[..., ServerStreamConnection] | None = None
    client_stream_connection: Callable[..., ClientStreamConnection] | None = None
    family: str = ""
    #: the ALPN ids this protocol goes by over TLS (``("h2",)``), offered upstream
    alpn: tuple[str, ...] = ()

    def converts_to(self, other: ProtocolDescriptor) -> bool:
        """Whether streams of this protocol may be forwarded as ``other``."""
        return other is self or (bool(self.family) and self.family == other.family)

    def server_codec(self, **extend_config: object) -> Any:
        """A codec for one downstream connection, configured by ``extend_config``."""
        self.check_options(extend_config)
        return self.server_factory(**extend_config)

    def client_codec(self, **extend_config: object) -> Any:
        """A codec for one upstream connection, configured by ``extend_config``."""
        self.check_options(extend_config)
        return self.client_factory(**extend_config)

    def check_options(self, extend_config: dict[str, object]) -> None:
        """Raise ``ValueError`` naming any key of ``extend_config`` not in :attr:`options`."""
        unknown = sorted(set(extend_config) - self.options)
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            names = ", ".join(unknown)
            raise ValueError(f"{self.name} extend_config: unknown key(s) {names} (known: {known})")
