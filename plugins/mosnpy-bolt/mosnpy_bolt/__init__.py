"""SOFA Bolt for mosnpy: xprotocol codec plugins (entry points ``mosnpy.xprotocols``
``bolt`` and ``boltv2``).  The core never imports this package; it finds the codecs by
name."""

from mosnpy_bolt.codec import BoltCodec, BoltFrame, BoltV2Codec

__all__ = ["BoltCodec", "BoltFrame", "BoltV2Codec"]
