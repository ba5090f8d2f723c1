"""Test helpers for people who extend mosnpy.

:func:`check_xcodec` is the conformance kit for xprotocol plugins: give it a codec and
a few real wire frames, and it checks everything the framework relies on (framing,
byte-exact re-encoding, request-id patching, garbage handling, heartbeats, error
replies).  It is plain synchronous code, so it runs from any test.
"""

from mosnpy.testing.xcodec import check_xcodec

__all__ = ["check_xcodec"]
