"""Third-party RPC consumers and providers (npm and PyPI libraries) through mosnpy.

One hop: consumer → mosnpy → provider.  Two hops, MOSN's mesh: consumer → client-side
mosnpy (egress) → server-side mosnpy (ingress) → provider.  Every peer here was
written by other people (tests/peers/README.md); mosnpy runs as ``mosnpy -c``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from tests.peers.harness import (
    PROVIDER_FOR,
    ProviderProcess,
    consumer_summary,
    run_consumer,
    start_consumer,
    start_provider,
    stop,
    wait_for_first_ok,
)
from tests.support import free_port, run_mosnpy

#: consumer kind -> the protocol name mosnpy's listener uses
PROTOCOL = {"dubbo": "dubbo", "py-dubbo": "dubbo", "bolt": "bolt", "anthunder": "bolt"}
#: seconds for a consumer's first call to be answered (Node starts in ~0.25 s here)
FIRST_OK_TIMEOUT = 20.0


def rpc_config(
    port: int, upstream: str, protocol: str, *, name: str = "rpc", timeout: str = "5s"
) -> dict[str, Any]:
    """A MOSN v2 config: one RPC listener routing every service to ``upstream``."""
    return {
        "servers": [
            {
                "default_log_level": "INFO",
                "graceful_timeout": "2s",
                "routers": [
                    {
                        "router_config_name": "rpc_router",
                        "virtual_hosts": [
                            {
                                "name": "all",
                                "domains": ["*"],
                                "routers": [
                                    {
                                        "match": {
                                            "headers": [{"name": "service", "value": ".*", "regex": True}]
                                        },
                                        "route": {"cluster_name": "upstream", "timeout": timeout},
                                    }
                                ],
                            }
                        ],
                    }
                ],
                "listeners": [
                    {
                        "name": name,
                        "address": f"127.0.0.1:{port}",
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "type": "proxy",
                                        "config": {
                                            "downstream_protocol": protocol,
                                            "router_config_name": "rpc_router",
                                        },
                                    }
                                ]
                            }
                        ],
                    }
                ],
            }
        ],
        "cluster_manager": {
            "clusters": [{"name": "upstream", "connect_timeout": "1s", "hosts": [{"address": upstream}]}]
        },
    }


@contextmanager
def provider(kind: str, port: int = 0) -> Iterator[ProviderProcess]:
    proc = start_provider(kind, port)
    try:
        yield proc
    finally:
        stop(proc)


@contextmanager
def mesh(consumer: str, provider_port: int, hops: int) -> Iterator[int]:
    """mosnpy hops in front of the provider; yields the port the consumer dials."""
    protocol = PROTOCOL[consumer]
    with ExitStack() as stack:
        upstream = f"127.0.0.1:{provider_port}"
        port = 0
        for hop in range(hops):  # from the provider side outwards
            port = free_port()
            name = "ingress_rpc" if hop == 0 else "egress_rpc"
            stack.enter_context(run_mosnpy(rpc_config(port, upstream, protocol, name=name), ready_port=port))
            upstream = f"127.0.0.1:{port}"
        yield port


def assert_all_ok(summary: dict[str, Any], expected: int) -> None:
    assert summary["returncode"] == 0 and summary["ok"] == expected and summary["mismatched"] == 0, summary


NODE_AND_PY = ["dubbo", "bolt", "anthunder", "py-dubbo"]


@pytest.mark.parametrize("consumer", NODE_AND_PY)
@pytest.mark.parametrize("hops", [1, 2])
def test_calls_through_mosnpy(consumer: str, hops: int) -> None:
    with provider(PROVIDER_FOR[consumer]) as prov, mesh(consumer, prov.port, hops) as port:
        assert_all_ok(run_consumer(consumer, port), 1)
        many = run_consumer(consumer, port, calls=200, concurrency=20)
        assert_all_ok(many, 200)
        assert many["connections"] == 1  # 20 in flight over one client connection
        if consumer != "py-dubbo":  # dubbo-ssl-python itself garbles strings over 32 KiB
            assert_all_ok(run_consumer(consumer, port, calls=2, payload_bytes=1 << 20), 2)
            assert_all_ok(run_consumer(consumer, port, calls=2, payload_bytes=1 << 20, method="big"), 2)
        failed = run_consumer(consumer, port, calls=3, method="fail")
        assert_all_ok(failed, 3)  # each call got the provider's own exception, intact
        assert "mosnpy-test-error" in str(failed.get("provider_error")) or consumer == "anthunder"
        biz = run_consumer(consumer, port, calls=3, method="bizerror")
        assert_all_ok(biz, 3)


@pytest.mark.parametrize("consumer", ["dubbo", "bolt"])
def test_client_heartbeats_answered(consumer: str) -> None:
    with provider(PROVIDER_FOR[consumer]) as prov, mesh(consumer, prov.port, 1) as port:
        summary = run_consumer(consumer, port, heartbeat=True, heartbeat_wait_ms=5000)
        assert summary["returncode"] == 0, summary
        assert summary["heartbeat"], summary


@pytest.mark.parametrize("consumer", ["dubbo", "bolt"])
def test_provider_killed_mid_calls_then_back(consumer: str) -> None:
    # The provider is killed once the consumer reports its first answered call, so calls
    # are surely in flight then.  Enough calls that most are still to come at the kill
    # (~7k calls/s through mosnpy here: 0.4 s of them); each call after it costs a
    # refused connect and one 10 ms retry, so not too many either (under CPU load 8000
    # of them took up to 19 s of the 25 s allowed below).
    CALLS = 3000
    kind = PROVIDER_FOR[consumer]
    prov = start_provider(kind, 0)
    provider_port = prov.port
    try:
        with mesh(consumer, provider_port, 1) as port:
            assert_all_ok(run_consumer(consumer, port, calls=20, concurrency=5), 20)
            started = time.monotonic()
            load = start_consumer(
                consumer, port, calls=CALLS, concurrency=20, deadline_ms=30000, report_first_ok=True
            )
            try:
                wait_for_first_ok(load, timeout=FIRST_OK_TIMEOUT)  # PeerError with its output if not
                stop(prov)
                result = consumer_summary(load, timeout=40)
            finally:
                stop(load)
            elapsed = time.monotonic() - started
            # every caller got an answer: the successes before the kill, error replies after
            assert result["returncode"] != 0, result
            assert 0 < result["ok"] < CALLS, result
            assert result["ok"] + sum(_count(e) for e in result["errors"]) >= CALLS - 20, result
            assert elapsed < 25, f"callers waited {elapsed:.1f}s: errors were not prompt"
            errors = " ".join(result["errors"])
            if consumer == "dubbo":  # dubbo error replies carry mosnpy's reason as text
                assert "upstream" in errors or "connect" in errors, result
            else:  # bolt error replies are a bare status, which the client reports as such
                assert "Server exception" in errors, result
            # the provider comes back on the same port: calls succeed, mosnpy untouched
            prov = start_provider(kind, provider_port)
            assert_all_ok(run_consumer(consumer, port, calls=20, concurrency=5), 20)
    finally:
        stop(prov)


def _count(error: str) -> int:
    """The consumers fold repeated errors as 'text (xN)'."""
    if error.endswith(")") and "(x" in error:
        try:
            return int(error.rsplit("(x", 1)[1][:-1])
        except ValueError:
            return 1
    return 1


def test_one_auto_port_serves_http1_dubbo_and_bolt(py_backend: Any) -> None:
    import httpx

    with provider("dubbo") as dubbo_provider, provider("bolt") as bolt_provider:
        port = free_port()
        cfg = rpc_config(port, "127.0.0.1:1", "Auto")
        server = cfg["servers"][0]
        server["routers"][0]["virtual_hosts"][0]["routers"] = [
            {
                "match": {"headers": [{"name": "service", "value": "com.mosnpy.test.EchoService"}]},
                "route": {"cluster_name": "dubbo"},
            },
            {
                "match": {"headers": [{"name": "service", "value": "com.mosnpy.test.EchoService:1.0"}]},
                "route": {"cluster_name": "bolt"},
            },
            {"match": {"prefix": "/"}, "route": {"cluster_name": "web"}},
        ]
        cfg["cluster_manager"]["clusters"] = [
            {"name": "dubbo", "hosts": [{"address": f"127.0.0.1:{dubbo_provider.port}"}]},
            {"name": "bolt", "hosts": [{"address": f"127.0.0.1:{bolt_provider.port}"}]},
            {"name": "web", "hosts": [{"address": f"127.0.0.1:{py_backend.port}"}]},
        ]
        with run_mosnpy(cfg, ready_port=port):
            assert_all_ok(run_consumer("dubbo", port, calls=50, concurrency=10), 50)
            assert_all_ok(run_consumer("bolt", port, calls=50, concurrency=10), 50)
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text == "backend default\n"


def tcp_proxy_config(port: int, upstream: str) -> dict[str, Any]:
    """A listener whose only filter is ``tcp_proxy``: the RPC bytes pass untouched."""
    return {
        "servers": [
            {
                "default_log_level": "INFO",
                "graceful_timeout": "2s",
                "listeners": [
                    {
                        "name": "tcp",
                        "address": f"127.0.0.1:{port}",
                        "filter_chains": [
                            {"filters": [{"type": "tcp_proxy", "config": {"cluster": "upstream"}}]}
                        ],
                    }
                ],
            }
        ],
        "cluster_manager": {
            "clusters": [{"name": "upstream", "connect_timeout": "1s", "hosts": [{"address": upstream}]}]
        },
    }


@pytest.mark.parametrize("consumer", ["dubbo", "bolt"])
def test_calls_through_a_tcp_proxy_listener(consumer: str) -> None:
    """MOSN's L4 mode: the real peers' frames (heartbeats included) relayed byte for byte."""
    with provider(PROVIDER_FOR[consumer]) as prov:
        port = free_port()
        with run_mosnpy(tcp_proxy_config(port, f"127.0.0.1:{prov.port}"), ready_port=port):
            assert_all_ok(run_consumer(consumer, port), 1)
            many = run_consumer(consumer, port, calls=100, concurrency=10)
            assert_all_ok(many, 100)
            assert_all_ok(run_consumer(consumer, port, calls=2, payload_bytes=1 << 20), 2)
