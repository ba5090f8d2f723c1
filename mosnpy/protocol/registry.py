"""Protocol names → descriptors, across both registries.

``PROTOCOLS`` holds stream protocols (``Http1``; HTTP/2 later), found through the
``mosnpy.protocols`` entry-point group; ``XPROTOCOLS`` holds multiplexed RPC codecs
(``dubbo``, ``bolt``, ...) from ``mosnpy.xprotocols``.  Configs name either kind the
same way, so :func:`lookup` searches both.  ``Auto`` is reserved: "sniff every
registered protocol".  MOSN's legacy ``"X"`` + ``sub_protocol`` spelling is rewritten
by the config loader before names get here.

A name that a known plugin distribution provides (``dubbo``, ``bolt``, ...) but that is
not installed gets a hint naming the plugin to install (:func:`plugin_hint`).
"""

from __future__ import annotations

from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.protocol.xprotocol.registry import XPROTOCOLS, descriptor
from mosnpy.registry import Registry, UnknownNameError

__all__ = ["AUTO", "KNOWN_PLUGINS", "PROTOCOLS", "known_names", "lookup", "plugin_hint"]

AUTO = "Auto"

#: protocol name -> the plugin distribution that provides it, and where it lives in
#: mosnpy's source tree.
KNOWN_PLUGINS: dict[str, tuple[str, str]] = {
    "dubbo": ("mosnpy-dubbo", "plugins/mosnpy-dubbo"),
    "bolt": ("mosnpy-bolt", "plugins/mosnpy-bolt"),
    "boltv2": ("mosnpy-bolt", "plugins/mosnpy-bolt"),
}

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
    raise UnknownNameError("protocol", name, known_names(), hint=plugin_hint(name))


def plugin_hint(name: str) -> str:
    """What to install for protocol ``name`` when a known plugin provides it, else ``""``."""
    plugin = KNOWN_PLUGINS.get(name)
    if plugin is None:
        return ""
    dist, source = plugin
    return f"install the {dist} plugin (pip install -e {source})"
