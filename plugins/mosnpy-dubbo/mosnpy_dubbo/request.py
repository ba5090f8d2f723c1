"""The header view of a dubbo request: the routing keys at the start of its body.

A hessian2 request body holds the dubbo version, the service path, the service
version, the method name, the argument types (a JVM descriptor such as
``Ljava/lang/String;I``), the arguments, and the attachments map.  The first four
become ``dubbo``, ``service``, ``version`` and ``method``.  When every argument is a
scalar (so it can be skipped without a full Hessian decoder) the string attachments are
added as well: ``group`` as the client sent it, ``interface`` overriding ``service``, and
any other string attachment under its own name (the four keys above always win).

This is MOSN's view, except that MOSN reads attachments only on listeners named
``ingress_dubbo`` or ``egress_dubbo`` and this reads them always.
"""

from __future__ import annotations

from mosnpy_dubbo.hessian import HessianError, Reader

__all__ = ["count_arguments", "request_view"]

_PRIMITIVES = frozenset("ZBCSIJFD")


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


def request_view(data: bytes | bytearray, offset: int) -> dict[str, str]:
    """The routing keys of the hessian2 request body that starts at ``data[offset]``.

    Never raises: what could not be read is left out.
    """
    reader = Reader(data, offset)
    core: dict[str, str] = {}
    attachments: dict[str, str] = {}
    try:
        for key in ("dubbo", "service", "version", "method"):
            core[key] = reader.read_string() or ""
        for _ in range(count_arguments(reader.read_string() or "")):
            reader.read_scalar()
        reader.read_map(attachments)
    except HessianError:
        pass  # keep what was read
    interface = attachments.get("interface")
    view = attachments | core
    if interface:
        view["service"] = interface
    return view
