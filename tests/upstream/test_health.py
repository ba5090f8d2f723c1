"""Active health checks: real backends go down and come back; traffic follows."""

from __future__ import annotations

import httpx
import pytest
import trio

import mosnpy
from mosnpy.config.models import (
    ClusterConfig,
    ClusterManagerConfig,
    FilterChainConfig,
    FilterConfig,
    HealthCheckConfig,
    HostConfig,
    ListenerConfig,
    MosnConfig,
    RouteActionConfig,
    RouteConfig,
    RouteMatchConfig,
    RouterConfig,
    ServerConfig,
    VirtualHostConfig,
)
from mosnpy.upstream.health import Http1Checker, TcpChecker
from mosnpy.upstream.host import Host
from tests.support import free_port, start_py_backend


def config(hosts: list[str], check: HealthCheckConfig) -> MosnConfig:
    route = RouteConfig(match=RouteMatchConfig(prefix="/"), route=RouteActionConfig(cluster_name="c"))
    proxy = FilterConfig(type="proxy", config={"downstream_protocol": "Http1", "router_config_name": "r"})
    return MosnConfig(
        servers=[
            ServerConfig(
                graceful_timeout=0.5,
                listeners=[
                    ListenerConfig(
                        name="l", address="127.0.0.1:0", filter_chains=[FilterChainConfig(filters=[proxy])]
                    )
                ],
                routers=[
                    RouterConfig(
                        router_config_name="r", virtual_hosts=[VirtualHostConfig(name="v", routers=[route])]
                    )
                ],
            )
        ],
        cluster_manager=ClusterManagerConfig(
            clusters=[
                ClusterConfig(
                    name="c",
                    hosts=[HostConfig(address=h) for h in hosts],
                    connect_timeout=0.5,
                    health_check=check,
                )
            ]
        ),
    )


HTTP_CHECK = HealthCheckConfig(
    protocol="Http1", interval=0.05, timeout=0.5, check_config={"http_check_config": {"path": "/health"}}
)


async def test_traffic_follows_health() -> None:
    with start_py_backend("a") as a, start_py_backend("b") as b:
        server = mosnpy.MosnServer(config([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], HTTP_CHECK))
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            port = server.listener("l").port
            host_a = server.clusters.get("c").hosts[0]

            def names(n: int) -> set[str]:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
                    return {c.get("/").text.strip() for _ in range(n)}

            assert await trio.to_thread.run_sync(names, 10) == {"backend a", "backend b"}
            a.stop()
            with trio.fail_after(5):
                while host_a.healthy:
                    await trio.sleep(0.02)
            assert await trio.to_thread.run_sync(names, 10) == {"backend b"}
            with start_py_backend("a-again", port=a.port):
                with trio.fail_after(5):
                    while not host_a.healthy:
                        await trio.sleep(0.02)
                assert await trio.to_thread.run_sync(names, 10) == {"backend a-again", "backend b"}
                server.shutdown()


async def test_checkers() -> None:
    with start_py_backend("h") as backend:
        host = Host(f"127.0.0.1:{backend.port}")
        assert await TcpChecker({}).check(host)
        assert await Http1Checker({"http_check_config": {"path": "/health"}}).check(host)
        assert not await Http1Checker({"http_check_config": {"path": "/status/503"}}).check(host)
        assert await Http1Checker({"http_check_config": {"path": "/status/503", "codes": [503]}}).check(host)
    dead = Host(f"127.0.0.1:{free_port()}")
    assert not await TcpChecker({}).check(dead)
    assert not await Http1Checker({}).check(dead)


def test_bad_check_config_is_a_config_error() -> None:
    bad = HealthCheckConfig(protocol="Http1", check_config={"http_check_config": {"pth": "/x"}})
    with pytest.raises(mosnpy.ConfigError, match=r"cluster_manager\.clusters\[0\].*pth"):
        mosnpy.MosnServer(config(["127.0.0.1:1"], bad))
