"""The ``xprotocols`` registry: codec plugins found through ``mosnpy.xprotocols``.

An entry is an :class:`~mosnpy.protocol.xprotocol.codec.XCodec` class (instantiated
once per connection).  :func:`descriptor` wraps one in the same
:class:`~mosnpy.protocol.descriptor.ProtocolDescriptor` every protocol family registers
— matcher, stream-connection factories (the xprotocol engine's, around this codec) and
pool mode (the codec's ``pool_mode``, multiplexed unless it says otherwise) — so a
listener names ``"dubbo"`` exactly as it names ``"Http1"``, and the proxy serves it
without knowing it is an xprotocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from mosnpy.protocol.api import PoolMode
from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.protocol.xprotocol.codec import XCodec
from mosnpy.protocol.xprotocol.stream import XClientStreamConnection, XServerStreamConnection
from mosnpy.registry import Registry

__all__ = ["XPROTOCOLS", "XProtocolDescriptor", "descriptor"]

XPROTOCOLS: Registry[Callable[[], XCodec]] = Registry("xprotocol", "mosnpy.xprotocols")


@dataclass(frozen=True)
class XProtocolDescriptor(ProtocolDescriptor):
    """A protocol descriptor for an xprotocol codec (``codec_factory`` builds one)."""

    codec_factory: Callable[[], XCodec] = field(default=lambda: _no_codec())


def _no_codec() -> XCodec:  # pragma: no cover - always replaced
    raise RuntimeError("descriptor without a codec factory")


class _ServerFactory:
    """``XServerStreamConnection`` around a fresh codec (xprotocols take no options)."""

    __slots__ = ("codec_factory",)

    def __init__(self, codec_factory: Callable[[], XCodec]) -> None:
        self.codec_factory = codec_factory

    def __call__(self) -> XServerStreamConnection:
        return XServerStreamConnection(self.codec_factory())


class _ClientFactory:
    """``XClientStreamConnection`` around a fresh codec; keyword arguments are the
    pool's keepalive settings."""

    __slots__ = ("codec_factory",)

    def __init__(self, codec_factory: Callable[[], XCodec]) -> None:
        self.codec_factory = codec_factory

    def __call__(self, **keepalive: float) -> XClientStreamConnection:
        return XClientStreamConnection(self.codec_factory(), **keepalive)  # type: ignore[arg-type]


@cache
def descriptor(name: str) -> XProtocolDescriptor:
    """The descriptor of xprotocol ``name``.

    Raises:
        UnknownNameError: no codec is registered under ``name``.
    """
    factory = XPROTOCOLS.get(name)
    probe = factory()
    mode = getattr(probe, "pool_mode", PoolMode.MULTIPLEX)
    return XProtocolDescriptor(
        name=name,
        matcher=probe.match,
        server_factory=factory,
        client_factory=factory,
        pool_mode=mode if isinstance(mode, PoolMode) else PoolMode.MULTIPLEX,
        server_stream_connection=_ServerFactory(factory),
        client_stream_connection=_ClientFactory(factory),
        codec_factory=factory,
    )
