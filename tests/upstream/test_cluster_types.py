"""Cluster types: SIMPLE and STRICT_DNS serve; an unknown type is a config error.

ORIGINAL_DST has its own tests (tests/upstream/test_original_dst_cluster.py)."""

from __future__ import annotations

import httpx
import pytest
import trio

import mosnpy
from mosnpy.config import parse_config
from tests.e2e.test_http1_cli import http_config, to
from tests.support import free_port, start_py_backend


def test_unknown_cluster_type_names_the_key_and_the_known_types() -> None:
    cfg = http_config(free_port(), {"c": ["127.0.0.1:1"]}, [to("c")])
    cfg["cluster_manager"]["clusters"][0]["type"] = "EDS"
    with pytest.raises(mosnpy.ConfigError) as info:
        mosnpy.MosnServer(parse_config(cfg))
    assert info.value.path == "cluster_manager.clusters[0].type"
    assert "SIMPLE" in str(info.value) and "STRICT_DNS" in str(info.value)


async def test_strict_dns_cluster_resolves_host_names() -> None:
    with start_py_backend("dns") as backend:
        port = free_port()
        cfg = http_config(port, {"c": [f"localhost:{backend.port}"]}, [to("c")])
        cfg["cluster_manager"]["clusters"][0]["type"] = "STRICT_DNS"
        server = mosnpy.MosnServer(parse_config(cfg))
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)

            def get() -> str:
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text

            # "localhost" may resolve to ::1 before 127.0.0.1 (the backend listens on
            # the latter only): connect tries each address in turn.
            assert await trio.to_thread.run_sync(get) == "backend dns\n"
            server.shutdown()
