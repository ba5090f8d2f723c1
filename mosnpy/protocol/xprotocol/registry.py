"""The ``xprotocols`` registry: codec plugins found through ``mosnpy.xprotocols``.

An entry is an :class:`~mosnpy.protocol.xprotocol.codec.XCodec` class (instantiated
once per connection).  :func:`descriptor` wraps one in the same
:class:`~mosnpy.protocol.descriptor.ProtocolDescriptor` shape HTTP/1 registers, so a
listener names ``"dubbo"`` exactly as it names ``"Http1"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.protocol.xprotocol.codec import XCodec
from mosnpy.registry import Registry

__all__ = ["XPROTOCOLS", "XProtocolDescriptor", "descriptor"]

XPROTOCOLS: Registry[Callable[[], XCodec]] = Registry("xprotocol", "mosnpy.xprotocols")


@dataclass(frozen=True)
class XProtocolDescriptor(ProtocolDescriptor):
    """A protocol descriptor for an xprotocol codec (``codec_factory`` builds one)."""

    codec_factory: Callable[[], XCodec] = field(default=lambda: _no_codec())


def _no_codec() -> XCodec:  # pragma: no cover - always replaced
    raise RuntimeError("descriptor without a codec factory")


@cache
def descriptor(name: str) -> XProtocolDescriptor:
    """The descriptor of xprotocol ``name``.

    Raises:
        UnknownNameError: no codec is registered under ``name``.
    """
    factory = XPROTOCOLS.get(name)
    probe = factory()
    return XProtocolDescriptor(
        name=name,
        matcher=probe.match,
        server_factory=factory,
        client_factory=factory,
        codec_factory=factory,
    )
