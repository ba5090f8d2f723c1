"""The examples serve real requests: the in-code canary proxy, run in-process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx
import trio

import mosnpy
from tests.support import free_port, start_py_backend

ROOT = Path(__file__).resolve().parents[2]


def load_example(relpath: str) -> ModuleType:
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


async def test_canary_example_routes_by_its_own_filter() -> None:
    canary_mod = load_example("examples/canary/canary_proxy.py")
    port = free_port()
    with start_py_backend("stable") as stable, start_py_backend("canary") as canary:
        builder = canary_mod.build(
            f"127.0.0.1:{port}",
            [stable.url.removeprefix("http://")],
            [canary.url.removeprefix("http://")],
            50,
        )
        async with trio.open_nursery() as nursery:
            server: mosnpy.MosnServer = await nursery.start(builder.serve)

            def client_calls() -> list[tuple[int, str, str]]:
                out = []
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                    for headers in (
                        {},
                        {"cookie": "canary=always"},
                        {"cookie": "canary=never", "x-canary": "1"},
                    ):
                        r = c.get("/", headers=headers)
                        out.append((r.status_code, r.text, r.headers.get("x-canary-route", "")))
                    users = [c.get("/", headers={"x-user-id": f"user{i}"}).text for i in range(40)]
                    out.append((0, ",".join(sorted(set(users))), ""))
                    h = c.get("/health")
                    out.append((h.status_code, h.text, ""))
                return out

            results = await trio.to_thread.run_sync(client_calls)
            server.shutdown()
        assert results[0] == (200, "backend stable\n", "stable")
        assert results[1] == (200, "backend canary\n", "canary")
        # a client cannot force the canary with the header itself: the filter strips it
        assert results[2] == (200, "backend stable\n", "stable")
        # with percent=50 and 40 users, both clusters see traffic
        assert results[3][1] == "backend canary\n,backend stable\n"
        assert results[4] == (200, "ok\n", "")


async def test_public_api_is_guarded() -> None:
    expected = {
        "MosnServer", "ProxyBuilder", "run", "ClusterConfig", "ConfigError", "FilterChainConfig",
        "FilterConfig", "HostConfig", "ListenerConfig", "MosnConfig", "RouteConfig", "RouterConfig",
        "ServerConfig", "load_config", "parse_config", "LISTENER_FILTERS", "LOAD_BALANCERS",
        "NETWORK_FILTERS", "PROTOCOLS", "STREAM_FILTERS", "Registry", "UnknownNameError", "Connection",
        "FilterPhase", "FilterStatus", "HeaderMap", "Host", "LbContext", "LoadBalancer", "ReadFilter",
        "Stream", "StreamFilterChain", "StreamFilterStatus", "WriteFilter",
    }  # fmt: skip
    assert set(mosnpy.__all__) == expected
    for name in mosnpy.__all__:
        assert getattr(mosnpy, name) is not None


def test_every_example_config_loads_and_builds() -> None:
    configs = sorted((ROOT / "examples").rglob("*.json"))
    assert len(configs) >= 5
    for path in configs:
        warnings: list[str] = []
        config = mosnpy.load_config(path, warnings=warnings)
        server = mosnpy.MosnServer(config)  # every name resolves in its registry
        assert server.listeners, path
        assert all(w.startswith(("pprof", "tracing")) for w in warnings), (path, warnings)
