"""The header view of a dubbo request: the routing keys at the start of its body.

A hessian2 request body holds the dubbo version, the service path, the service
version, the method name, the argument types (a JVM descriptor such as
``Ljava/lang/String;I``), the arguments, and the attachments map.  The first four
become ``dubbo``, ``service``, ``version`` and ``method``.  When every argument is a
scalar (so it can be skipped without a full Hessian decoder) the string attachments are
added as well: ``group`` and ``interface`` as the client sent them, and any other string
attachment under its own name (the four keys above always win).

The view is lazy (:class:`RequestView`): a route that reads ``service`` decodes the
four leading strings and nothing else (most calls not even those: the same leading
bytes were seen before and their strings remembered); the arguments are skipped and the
attachments read only when some other key is asked for, or the view is iterated.  So
``service`` is always the request's path, as MOSN has it on most listeners (MOSN lets
the ``interface`` attachment override it on listeners named ``ingress_dubbo`` or
``egress_dubbo``); match on ``interface`` to route by the attachment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

from mosnpy_dubbo.hessian import HessianError, Reader

__all__ = ["CORE_KEYS", "RequestView", "count_arguments", "request_view"]

#: The leading strings of a request body, in order, under the names routes read.
CORE_KEYS: Final = ("dubbo", "service", "version", "method")

_PRIMITIVES: Final = frozenset("ZBCSIJFD")

#: How much of a body the core keys are first looked for in (they are usually < 100 bytes).
_CORE_WINDOW: Final = 256

#: Core keys already read, by the bytes they were read from.  Calls repeat a few
#: services and methods, so most requests find theirs here and decode no string.  Only
#: bytes that decide the strings alone are keys (four short ASCII strings); the map starts
#: over when full, so a stream of unique names costs memory only up to the limit.
_SEEN: Final[dict[bytes, dict[str, str]]] = {}
_SEEN_MAX: Final = 1024


def count_arguments(descriptor: str) -> int:
    """How many arguments a JVM parameter descriptor lists (``"[ILjava/lang/String;"`` → 2).

    Raises:
        HessianError: the descriptor is malformed.
    """
    count = pos = 0
    while pos < len(descriptor):
        while pos < len(descriptor) and descriptor[pos] == "[":
            pos += 1
        if pos < len(descriptor) and descriptor[pos] in _PRIMITIVES:
            pos += 1
        elif pos < len(descriptor) and descriptor[pos] == "L" and ";" in descriptor[pos:]:
            pos = descriptor.index(";", pos) + 1
        else:
            raise HessianError(f"bad parameter descriptor {descriptor!r}")
        count += 1
    return count


def _short_strings_end(data: bytes, count: int) -> int:
    """Where ``count`` strings of the one-byte-length form would end if each were ASCII
    (a byte per UTF-16 unit); -1 if one has another form or runs past ``data``."""
    pos = 0
    for _ in range(count):
        if pos >= len(data) or data[pos] >= 0x20:
            return -1
        pos += 1 + data[pos]
    return pos if pos <= len(data) else -1


def _core_strings(data: bytes) -> tuple[dict[str, str], int]:
    """The core keys read from the start of ``data``, and where they end (-1: they could
    not all be read; what could is kept)."""
    core: dict[str, str] = {}
    reader = Reader(data)
    try:
        for key in CORE_KEYS:
            core[key] = reader.read_string() or ""
    except HessianError:
        return core, -1
    return core, reader.pos


class RequestView(Mapping[str, str]):
    """The routing keys of the hessian2 request body at ``data[offset]``, read on demand.

    Never raises: what could not be read is left out.
    """

    __slots__ = ("_all", "_core", "_data", "_end", "_offset")

    def __init__(self, data: bytes | bytearray, offset: int) -> None:
        self._data = data
        self._offset = offset
        self._core: dict[str, str] | None = None
        self._all: dict[str, str] | None = None
        self._end = -1  # where the core strings ended (-1: could not read them all)

    def _read_core(self) -> dict[str, str]:
        data, start = self._data, self._offset
        # The four strings are short: read them from a copy of the body's first bytes,
        # and from all of it only when they run past that window.
        window = bytes(data[start : start + _CORE_WINDOW])
        short_end = _short_strings_end(window, len(CORE_KEYS))
        if short_end >= 0:
            core = _SEEN.get(window[:short_end])
            if core is not None:
                self._core, self._end = core, start + short_end
                return core
        core, end = _core_strings(window)
        if end < 0 and len(window) == _CORE_WINDOW:
            core, end = _core_strings(bytes(data[start:]))
        elif end >= 0 and end == short_end:
            # All four were short and ASCII: those bytes alone decide them.
            if len(_SEEN) >= _SEEN_MAX:
                _SEEN.clear()
            _SEEN[window[:end]] = core
        self._core = core
        self._end = end if end < 0 else start + end
        return core

    def _read_all(self) -> dict[str, str]:
        core = self._core if self._core is not None else self._read_core()
        attachments: dict[str, str] = {}
        if self._end >= 0:
            reader = Reader(bytes(self._data[self._end :]))
            try:
                for _ in range(count_arguments(reader.read_string() or "")):
                    reader.read_scalar()
                reader.read_map(attachments)
            except HessianError:
                pass  # keep what was read
        view = self._all = attachments | core
        return view

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        view = self._all
        if view is None:
            if key in CORE_KEYS:
                core = self._core if self._core is not None else self._read_core()
                return core.get(key, default)
            if self._data.find(key.encode(), self._offset) < 0:
                # Not even its bytes are in the body, so no attachment has this name
                # (hessian writes a string's UTF-8 bytes contiguously): a miss needs no
                # decoding, and a proxy probes for absent keys on every request.
                return default
            view = self._read_all()
        return view.get(key, default)

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._all if self._all is not None else self._read_all())

    def __len__(self) -> int:
        return len(self._all if self._all is not None else self._read_all())


def request_view(data: bytes | bytearray, offset: int) -> dict[str, str]:
    """Every routing key of the hessian2 request body at ``data[offset]``, at once."""
    return dict(RequestView(data, offset))
