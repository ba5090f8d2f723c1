"""Just enough Hessian 2 for dubbo's header view and error replies.

Reading: strings (all four encodings, chunked ones included), every scalar (null,
booleans, ints, longs, doubles, dates, binaries) so they can be skipped, and maps of
scalars (a request's attachments).  Lists, objects and references raise
:class:`HessianError`: the caller keeps what it has read so far.

Writing: strings only (the body of an error reply).

Hessian counts a string's length in UTF-16 code units and Java writes a character
outside the BMP as two 3-byte surrogates (CESU-8); both directions do the same here.
"""

from __future__ import annotations

from typing import Final

__all__ = ["HessianError", "Reader", "encode_string"]

#: payload sizes of fixed-width scalars, by tag (ints, longs, doubles, dates, booleans, null)
_FIXED: Final[dict[int, int]] = {
    **dict.fromkeys(range(0x80, 0xC0), 0),  # int, one byte
    **dict.fromkeys(range(0xC0, 0xD0), 1),  # int, two bytes
    **dict.fromkeys(range(0xD0, 0xD8), 2),  # int, three bytes
    **dict.fromkeys(range(0xD8, 0xF0), 0),  # long, one byte
    **dict.fromkeys(range(0xF0, 0x100), 1),  # long, two bytes
    **dict.fromkeys(range(0x38, 0x40), 2),  # long, three bytes
    0x49: 4,  # 'I' int
    0x59: 4,  # long as int32
    0x4C: 8,  # 'L' long
    0x5B: 0,  # double 0.0
    0x5C: 0,  # double 1.0
    0x5D: 1,  # double as byte
    0x5E: 2,  # double as short
    0x5F: 4,  # double as float32 (mills)
    0x44: 8,  # 'D' double
    0x4A: 8,  # 'J' date in ms
    0x4B: 4,  # date in minutes
    0x4E: 0,  # 'N' null
    0x54: 0,  # 'T' true
    0x46: 0,  # 'F' false
}
_END: Final = 0x5A  # 'Z' ends a map
_MAX_CHUNK: Final = 0x7FFF  # characters per string chunk (at most 0xFFFE UTF-16 units)


class HessianError(ValueError):
    """The bytes are not Hessian 2, or use a part of it this module does not read."""


class Reader:
    """Reads values from ``data`` starting at ``pos`` (which it advances).

    ``data`` is ``bytes``, not a buffer: compiled, indexing and slicing ``bytes`` are
    direct C calls, where a union with ``bytearray`` goes through generic lookups.
    """

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def _byte(self) -> int:
        if self.pos >= len(self.data):
            raise HessianError("truncated")
        self.pos += 1
        return self.data[self.pos - 1]

    def _skip(self, size: int) -> None:
        if self.pos + size > len(self.data):
            raise HessianError("truncated")
        self.pos += size

    def _u16(self) -> int:
        return (self._byte() << 8) | self._byte()

    def read_string(self) -> str | None:
        """A string, or None for null."""
        data, pos = self.data, self.pos
        if pos < len(data) and data[pos] < 0x20:
            # The common case inline: a short string (one byte of length), all ASCII, so
            # its UTF-16 units are its bytes.
            end = pos + 1 + data[pos]
            if end <= len(data):
                try:
                    text = data[pos + 1 : end].decode("ascii")
                except UnicodeDecodeError:
                    pass  # not ASCII: counted in UTF-16 units, read below
                else:
                    self.pos = end
                    return text
        tag = self._byte()
        if tag == 0x4E:
            return None
        return self._string(tag)

    def _string(self, tag: int) -> str:
        parts = []
        while True:
            if tag < 0x20:
                units, final = tag, True
            elif 0x30 <= tag <= 0x33:
                units, final = ((tag - 0x30) << 8) | self._byte(), True
            elif tag in (0x52, 0x53):  # 'R' chunk, 'S' final chunk
                units, final = self._u16(), tag == 0x53
            else:
                raise HessianError(f"expected a string, found tag {tag:#04x}")
            parts.append(self._chars(units))
            if final:
                return "".join(parts)
            tag = self._byte()

    def _chars(self, units: int) -> str:
        data, start = self.data, self.pos
        end = start + units
        if end <= len(data) and data[start:end].isascii():
            self.pos = end
            return data[start:end].decode("ascii")
        pos = start
        while units > 0:
            if pos >= len(data):
                raise HessianError("truncated string")
            lead = data[pos]  # UTF-8 lead byte: sequence length; 4 bytes are 2 UTF-16 units
            pos += 1 if lead < 0x80 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
            units -= 2 if lead >= 0xF0 else 1
        if pos > len(data) or units < 0:
            raise HessianError("truncated string")
        self.pos = pos
        try:
            text = data[start:pos].decode("utf-8", "surrogatepass")
            return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")  # join surrogates
        except UnicodeError as exc:
            raise HessianError(f"bad string: {exc}") from None

    def read_scalar(self) -> str | None:
        """A string, or None after skipping any other scalar."""
        tag = self._byte()
        size = _FIXED.get(tag)
        if size is not None:
            self._skip(size)
            return None
        if tag < 0x20 or 0x30 <= tag <= 0x33 or tag in (0x52, 0x53):
            return self._string(tag)
        self._skip_binary(tag)
        return None

    def _skip_binary(self, tag: int) -> None:
        while True:
            if 0x20 <= tag <= 0x2F:
                self._skip(tag - 0x20)
                return
            if 0x34 <= tag <= 0x37:
                self._skip(((tag - 0x34) << 8) | self._byte())
                return
            if tag not in (0x41, 0x42):  # 'A' chunk, 'B' final chunk
                raise HessianError(f"unsupported value, tag {tag:#04x}")
            self._skip(self._u16())
            if tag == 0x42:
                return
            tag = self._byte()

    def read_map(self, into: dict[str, str]) -> None:
        """A map of scalars: its string-to-string entries go ``into`` as they are read
        (so they survive a later error)."""
        tag = self._byte()
        if tag == 0x4D:  # 'M' typed map: a type (name or reference) first
            self.read_scalar()
        elif tag != 0x48:  # 'H' untyped map
            raise HessianError(f"expected a map, found tag {tag:#04x}")
        while self.pos < len(self.data) and self.data[self.pos] != _END:
            key, value = self.read_scalar(), self.read_scalar()
            if key is not None and value is not None:
                into[key] = value
        self._byte()


def _cesu8(text: str) -> bytes:
    if text.isascii():
        return text.encode("ascii")
    units = []
    for char in text:
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            units.append(chr(0xD800 | code >> 10) + chr(0xDC00 | code & 0x3FF))
        else:
            units.append(char)
    return "".join(units).encode("utf-8", "surrogatepass")


def encode_string(text: str) -> bytes:
    """``text`` as a Hessian 2 string (compact forms when short, chunks when long)."""
    chunks = [text[i : i + _MAX_CHUNK] for i in range(0, len(text), _MAX_CHUNK)] or [""]
    out = bytearray()
    for index, chunk in enumerate(chunks):
        units = len(chunk) + sum(1 for char in chunk if ord(char) > 0xFFFF)
        if index < len(chunks) - 1:
            out += b"R" + units.to_bytes(2, "big")
        elif units < 0x20:
            out.append(units)
        elif units < 0x400:
            out += bytes((0x30 | units >> 8, units & 0xFF))
        else:
            out += b"S" + units.to_bytes(2, "big")
        out += _cesu8(chunk)
    return bytes(out)
