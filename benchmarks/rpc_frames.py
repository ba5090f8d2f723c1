"""Dubbo 2.x and SOFA Bolt v1 frames as raw bytes, for the RPC benchmark tools.

Shared by ``floors/rpc_floor.py`` (the id-rewriting floor) and ``rpc_load.py`` (the load
generator and the echo provider).  Nothing is decoded beyond the fixed header: frames are
cut by their length fields and ids are patched by slicing, as MOSN's fast encoders do.

Wire formats (big-endian; MOSN reference, section 4):

* Dubbo: 16-byte header.  ``[0:2]`` magic ``da bb``, ``[2]`` flag (0x80 request,
  0x40 two-way, 0x20 event/heartbeat), ``[3]`` status, ``[4:12]`` id (u64),
  ``[12:16]`` body length (u32).
* Bolt v1: ``[0]`` proto 1, ``[1]`` type (0 response, 1 request, 2 oneway),
  ``[2:4]`` cmdcode (0 heartbeat), ``[4]`` ver2, ``[5:9]`` id (u32), ``[9]`` codec.
  Request header 22 bytes: timeout ``[10:14]``, classLen ``[14:16]``, headerLen
  ``[16:18]``, contentLen ``[18:22]``.  Response header 20 bytes: status ``[10:12]``,
  classLen ``[12:14]``, headerLen ``[14:16]``, contentLen ``[16:20]``.

The sample frames are real captures (third-party clients and servers), looked up in
``$MOSNPY_VECTORS``, ``/work/shared/vectors`` and the plugins' ``tests/vectors``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

REQUEST, ONEWAY, HEARTBEAT, RESPONSE, HEARTBEAT_RESPONSE = range(5)

Frames = list[tuple[int, int, int]]  # (start, end, kind) of each whole frame
Scanner = Callable[[bytes], tuple[Frames, int]]

_U32 = struct.Struct(">I").unpack_from
_LENS = struct.Struct(">HHI").unpack_from  # bolt classLen, headerLen, contentLen


class FrameError(Exception):
    """Bytes that cannot start a frame of the protocol."""


def scan_dubbo(buf: bytes) -> tuple[Frames, int]:
    """Whole dubbo frames at the start of ``buf`` and the number of bytes they span."""
    frames: Frames = []
    pos = 0
    size = len(buf)
    while size - pos >= 16:
        if buf[pos] != 0xDA or buf[pos + 1] != 0xBB:
            raise FrameError(f"bad dubbo magic {buf[pos : pos + 2].hex()} at {pos}")
        end = pos + 16 + _U32(buf, pos + 12)[0]
        if end > size:
            break
        flag = buf[pos + 2]
        if flag & 0x80:
            kind = HEARTBEAT if flag & 0x20 else (REQUEST if flag & 0x40 else ONEWAY)
        else:
            kind = HEARTBEAT_RESPONSE if flag & 0x20 else RESPONSE
        frames.append((pos, end, kind))
        pos = end
    return frames, pos


def scan_bolt(buf: bytes) -> tuple[Frames, int]:
    """Whole bolt v1 frames at the start of ``buf`` and the number of bytes they span."""
    frames: Frames = []
    pos = 0
    size = len(buf)
    while size - pos >= 20:
        if buf[pos] != 1:
            raise FrameError(f"bad bolt v1 proto byte {buf[pos]:#x} at {pos}")
        kind_byte = buf[pos + 1]
        heartbeat = buf[pos + 2] == 0 and buf[pos + 3] == 0
        if kind_byte == 0:
            class_len, header_len, content_len = _LENS(buf, pos + 12)
            end = pos + 20 + class_len + header_len + content_len
            kind = HEARTBEAT_RESPONSE if heartbeat else RESPONSE
        elif kind_byte in (1, 2):
            if size - pos < 22:
                break
            class_len, header_len, content_len = _LENS(buf, pos + 14)
            end = pos + 22 + class_len + header_len + content_len
            kind = ONEWAY if kind_byte == 2 else (HEARTBEAT if heartbeat else REQUEST)
        else:
            raise FrameError(f"bad bolt type {kind_byte} at {pos}")
        if end > size:
            break
        frames.append((pos, end, kind))
        pos = end
    return frames, pos


@dataclass(frozen=True)
class Protocol:
    """Where a protocol keeps its id, how to cut its frames, and its sample captures."""

    name: str
    id_start: int
    id_len: int
    scan: Scanner
    call: str  # capture prefix of the echo call
    heartbeat: str  # capture prefix of the heartbeat

    @property
    def id_end(self) -> int:
        return self.id_start + self.id_len

    @property
    def id_space(self) -> int:
        return 1 << (8 * self.id_len)

    def around_id(self, frame: bytes) -> tuple[bytes, bytes]:
        """(head, tail) with ``frame == head + id + tail``."""
        return frame[: self.id_start], frame[self.id_end :]


PROTOCOLS: dict[str, Protocol] = {
    "dubbo": Protocol("dubbo", 4, 8, scan_dubbo, "dubbo-node-echo", "dubbo-node-heartbeat"),
    "bolt": Protocol("bolt", 5, 4, scan_bolt, "bolt-node-echo", "bolt-node-heartbeat"),
}


def vector_dirs() -> list[Path]:
    dirs = [Path(os.environ["MOSNPY_VECTORS"])] if os.environ.get("MOSNPY_VECTORS") else []
    dirs.append(Path("/work/shared/vectors"))
    dirs += sorted((ROOT / "plugins").glob("*/tests/vectors"))
    return dirs


def load_vector(name: str) -> bytes:
    """The bytes of capture ``name`` (a file stem such as ``dubbo-node-echo-request``)."""
    for directory in vector_dirs():
        path = directory / f"{name}.hex"
        if path.is_file():
            return bytes.fromhex(path.read_text().strip())
    raise FileNotFoundError(f"{name}.hex not found in {', '.join(map(str, vector_dirs()))}")


def load_exchange(proto: Protocol, prefix: str) -> tuple[bytes, bytes]:
    """(request, response) of capture ``prefix``, each checked to be one whole frame."""
    request = load_vector(f"{prefix}-request")
    response = load_vector(f"{prefix}-response")
    for frame, kinds in ((request, (REQUEST, HEARTBEAT)), (response, (RESPONSE, HEARTBEAT_RESPONSE))):
        frames, used = proto.scan(frame)
        if len(frames) != 1 or used != len(frame) or frames[0][2] not in kinds:
            raise ValueError(f"{prefix}: not one whole {proto.name} frame")
    return request, response
