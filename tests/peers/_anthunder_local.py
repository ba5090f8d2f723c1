"""Keep anthunder off the network except for the addresses we give it.

anthunder's Client/AioClient and listeners register with a MOSN sidecar over HTTP at
the fixed address 127.0.0.1:13330 (``MeshClient``) when they are created.  These tests
pick their own ports, so that registration is replaced by a stub that refuses at once;
anthunder then logs "Fail to startup mesh client" and goes on without a mesh, which is
its documented direct mode (``SERVICE_MAP[interface] = (host, port)``).
"""

from __future__ import annotations

import logging
from typing import Any


class _NoMesh:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def startup(self) -> bool:
        raise ConnectionError("mesh registration disabled: the peers only use ports the tests pick")


def _drop_mesh_notice(record: logging.LogRecord) -> bool:
    return "Fail to startup mesh client" not in record.getMessage()


def disable_mesh() -> None:
    import anthunder.client.base as client_base
    import anthunder.listener.base_listener as listener_base

    for name in ("anthunder.client.base", "anthunder.listener.base_listener"):
        logging.getLogger(name).addFilter(_drop_mesh_notice)

    client_base.MeshClient = _NoMesh
    listener_base.MeshClient = _NoMesh
