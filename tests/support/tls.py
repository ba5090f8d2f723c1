"""TLS helpers shared by the end-to-end tests (certificates come from trustme)."""

from __future__ import annotations

import socket
import ssl


def served_certificate(port: int, name: str, cafile: str) -> bytes:
    """The leaf certificate (DER) a TLS listener on 127.0.0.1:``port`` serves to a
    client asking for ``name`` (SNI), verified against ``cafile``."""
    context = ssl.create_default_context(cafile=cafile)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der
