"""The protocol registry: ``downstream_protocol`` names → protocol descriptors.

Built-ins (``Http1``) register through the ``mosnpy.protocols`` entry-point group, as a
third party's protocol would.  ``Auto`` is reserved: it means "sniff every registered
protocol that has a matcher".
"""

from __future__ import annotations

from mosnpy.protocol.descriptor import ProtocolDescriptor
from mosnpy.registry import Registry

__all__ = ["AUTO", "PROTOCOLS"]

AUTO = "Auto"

PROTOCOLS: Registry[ProtocolDescriptor] = Registry("protocol", "mosnpy.protocols")
