"""Protocol names → descriptors, across both registries.

``PROTOCOLS`` holds stream protocols (``Http1``; HTTP/2 later), found through the
``mosnpy.protocols`` entry-point group; ``XPROTOCOLS`` holds multiplexed RPC codecs
(``dubbo``, ``bolt``, ...) from ``mosnpy.xprotocols``.  Configs name either kind the
same way, so :func:`lookup` searches both.  ``Auto`` is reserved: "sniff every
registered protocol".  MOSN's legacy ``"X"`` + ``sub_protocol`` spelling is rewritten
by the config loader before names get here.
"""

from __future__ import annotations

from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.protocol.xprotocol.registry import XPROTOCOLS, descriptor
from mosnpy.registry import Registry, UnknownNameError

__all__ = ["AUTO", "PROTOCOLS", "known_names", "lookup"]

AUTO = "Auto"

PROTOCOLS: Registry[ProtocolDescriptor] = Registry("protocol", "mosnpy.protocols")


def known_names() -> list[str]:
    """Every protocol name a config may use (both registries), sorted."""
    return sorted({*PROTOCOLS.names(), *XPROTOCOLS.names()})


def lookup(name: str) -> ProtocolDescriptor:
    """The descriptor for ``name`` from either registry.

    Raises:
        UnknownNameError: neither registry has ``name`` (the message lists both).
    """
    if name in PROTOCOLS:
        return PROTOCOLS.get(name)
    if name in XPROTOCOLS:
        return descriptor(name)
    raise UnknownNameError("protocol", name, known_names())
