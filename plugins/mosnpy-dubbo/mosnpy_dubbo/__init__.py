"""Dubbo 2.x for mosnpy: an xprotocol codec plugin (entry point ``mosnpy.xprotocols``
``dubbo``).  The core never imports this package; it finds the codec by name."""

from mosnpy_dubbo.codec import DubboCodec, DubboFrame

__all__ = ["DubboCodec", "DubboFrame"]
