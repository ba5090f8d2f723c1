"""MOSN's own example configs run unchanged under ``mosnpy -c``, or are refused in one
run that names every problem; nothing is dropped silently.

The configs (``tests/config/mosn_examples/``, see its README) reproduce MOSN's
``examples/codes/*`` and ``configs/mosn_config.json`` with MOSN's keys, spellings
(``"Name"``) and shapes; only their ports are placeholders, mapped here to ports the
test picked on 127.0.0.1.  For each one the test knows every key mosnpy has no use
for (each must be named once, by path) and, for those mosnpy cannot run, every error
(all must come in one run).  The ones that can run are started with real clients:
curl through the HTTP samples, the Node.js dubbo and bolt peers through the RPC ones.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme

from mosnpy.config import ConfigError, load_config
from tests.peers.harness import PeerError, run_consumer, start_provider, stop
from tests.support import REPO_ROOT, PyBackend, free_port, run_mosnpy, start_py_backend

EXAMPLES = Path(__file__).parent / "mosn_examples"
IGNORED = "not supported by mosnpy yet; ignored"
L0 = "servers[0].listeners[0]"
L1 = "servers[0].listeners[1]"
C0 = "cluster_manager.clusters[0]"
C1 = "cluster_manager.clusters[1]"
CBL = "conn_buffer_limit_bytes"
#: the connection_manager filter of mosn_config.json, and its route
CM = f"{L0}.filter_chains[0].filters[1].config"
CM_ROUTE = f"{CM}.virtual_hosts[0].routers[0].route"

#: example → the paths mosnpy names as accepted but not supported, in order.
UNSUPPORTED: dict[str, list[str]] = {
    "http_sample_config.json": [f"{L0}.log_path", f"{L1}.log_path", f"{C0}.{CBL}", f"{C1}.{CBL}"],
    "http_sample_client_config.json": ["disable_upgrade", f"{C0}.{CBL}"],
    "http_sample_server_config.json": ["disable_upgrade", f"{C0}.{CBL}"],
    "protocol_auto_sample_config.json": [f"{C0}.{CBL}", f"{C1}.{CBL}"],
    "slow_start_sample_config.json": [
        "disable_upgrade",
        f"{C0}.{CBL}",
        f"{C0}.health_check.service_name",
        f"{C0}.slow_start",
    ],
    "dsl_sample_config.json": [f"{L0}.log_path", f"{L1}.log_path", f"{C0}.{CBL}", "pprof"],
    "tcpproxy_sample_config.json": [f"{L0}.log_path", f"{C0}.{CBL}"],
    "proxy_fallback_config.json": [
        f"{L0}.filter_chains[0].filters[0].config.fallback_for_unknown_protocol",
    ],
    "dubbo_config.json": [f"{L0}.log_path", f"{L1}.log_path", f"{C0}.{CBL}", f"{C1}.{CBL}", "tracing"],
    "dubbo_client_config.json": ["disable_upgrade", f"{L0}.log_path", f"{C0}.{CBL}", "tracing"],
    "dubbo_server_config.json": ["close_graceful", f"{L0}.log_path", f"{C0}.{CBL}", "tracing"],
    "sofarpc_xprotocol_client_config.json": ["disable_upgrade", f"{C0}.{CBL}"],
    "sofarpc_xprotocol_server_config.json": ["disable_upgrade", f"{C0}.{CBL}"],
    "xprotocol_example_server_config.json": ["close_graceful", f"{C0}.{CBL}", "third_part_codec"],
    "mosn_config.json": [
        "servers[0].mosn_server_name",
        "servers[0].processor",
        f"{L0}.inspector",
        f"{L0}.filter_chains[0].match",
        f"{L0}.filter_chains[0].tls_context.ecdh_curves",
        f"{L0}.filter_chains[0].filters[0].config.name",
        f"{CM_ROUTE}.metadata_match",
        f"{CM_ROUTE}.weighted_clusters[0].cluster.metadata_match",
        f"{CM_ROUTE}.weighted_clusters[1].cluster.metadata_match",
        f"{CM_ROUTE}.cluster_name",
        f"{L0}.log_path",
        f"{L0}.log_level",
        f"{C0}.health_check.check_path",
        f"{C0}.hosts[0].hostname",
        f"{C0}.hosts[0].metadata",
        f"{C0}.lb_subset_config",
        "metrics",
        "pprof",
        "tracing",
    ],
}

#: example → every error ``mosnpy -c`` must report for it, all in the same run.
REFUSED: dict[str, list[str]] = {
    # "Auto" sniffs the RPC protocols too, and those do not convert to Http1.
    "proxy_fallback_config.json": [
        f"{L0}.filter_chains[0].filters[0].config.upstream_protocol: converting ",
    ],
    "dsl_sample_config.json": [
        f"{L0}.stream_filters[0].type: unknown stream filter 'dsl' (known: ",
        f"{L1}.stream_filters[0].type: unknown stream filter 'dsl' (known: ",
    ],
    "sofarpc_xprotocol_server_config.json": [
        f"{L0}.stream_filters[0].type: unknown stream filter 'healthcheck' (known: ",
    ],
    "xprotocol_example_server_config.json": [
        f"{L0}.filter_chains[0].filters[0].config.downstream_protocol: unknown protocol 'x_example' (known: ",
    ],
    "mosn_config.json": [
        f"{CM_ROUTE}.weighted_clusters[0]: unknown cluster 'serverCluster1' (known: test_cpp)",
        f"{CM_ROUTE}.weighted_clusters[1]: unknown cluster 'serverCluster2' (known: test_cpp)",
        f"{L0}.stream_filters[0].type: unknown stream filter 'healthcheck' (known: ",
        f"{L0}.filter_chains[0].filters[0].config.downstream_protocol: unknown protocol 'SofaRpc' (known: ",
    ],
}

_ADDRESS = re.compile(r"127\.0\.0\.1:(\d+)")


@pytest.fixture(scope="module")
def pems() -> dict[str, str]:
    """``@CA_CERT@``, ``@CERT_CHAIN@``, ``@PRIVATE_KEY@``: a CA and a cert it issued."""
    ca = trustme.CA()
    cert = ca.issue_cert("hello.com")
    return {
        "@CA_CERT@": ca.cert_pem.bytes().decode(),
        "@CERT_CHAIN@": cert.cert_chain_pems[0].bytes().decode(),
        "@PRIVATE_KEY@": cert.private_key_pem.bytes().decode(),
    }


def materialize(
    name: str, workdir: Path, ports: Mapping[int, int] | None = None, pems: Mapping[str, str] | None = None
) -> tuple[Path, dict[int, int]]:
    """Example ``name`` with its ports mapped (``ports`` first, free ports for the rest)
    and its placeholders filled, written to ``workdir``; returns its path and the map.

    Only values change: every key keeps MOSN's spelling.
    """
    mapping = dict(ports or {})
    fills = {"@LOG_DIR@": str(workdir / "logs"), **(pems or {})}

    def port(original: int) -> int:
        if original not in mapping:
            mapping[original] = free_port()
        return mapping[original]

    def fill(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: fill(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, str):
            for placeholder, text in fills.items():
                value = value.replace(placeholder, text)
            return _ADDRESS.sub(lambda m: f"127.0.0.1:{port(int(m.group(1)))}", value)
        if key == "port_value" and isinstance(value, int):
            return port(value)
        return value

    doc = fill(json.loads((EXAMPLES / name).read_text()))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    path.write_text(json.dumps(doc, indent=2))
    return path, mapping


def unsupported_paths(warnings: list[str]) -> list[str]:
    paths = []
    for line in warnings:
        path, _, message = line.partition(": ")
        assert IGNORED in message or message.startswith("ignored: "), line
        paths.append(path)
    return paths


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(UNSUPPORTED)
    assert set(REFUSED) <= set(UNSUPPORTED)


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_example_loads_naming_each_unsupported_key_once(
    name: str, tmp_path: Path, pems: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = materialize(name, tmp_path, pems=pems)
    warnings: list[str] = []
    with caplog.at_level(logging.WARNING, logger="mosnpy.config"):
        try:
            load_config(path, warnings=warnings)
        except ConfigError as exc:
            # Only references between sections may fail here (names meet registries in
            # the CLI run below): never a key of MOSN's.
            assert name == "mosn_config.json", str(exc)
            assert all("unknown cluster" in e.problem for e in exc.errors), str(exc)
    assert unsupported_paths(warnings) == UNSUPPORTED[name]
    assert [r.getMessage() for r in caplog.records if r.name == "mosnpy.config"] == warnings


def mosnpy_cli(config: Path, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mosnpy", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_example_mosnpy_cannot_run_is_refused_in_one_run(
    name: str, tmp_path: Path, pems: dict[str, str]
) -> None:
    path, _ = materialize(name, tmp_path, pems=pems)
    done = mosnpy_cli(path, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    header, *errors = done.stderr.splitlines()
    assert header == f"mosnpy: bad config {path}:"
    assert len(errors) == len(REFUSED[name]), done.stderr
    for expected in REFUSED[name]:
        assert any(line.startswith(expected) for line in errors), (expected, done.stderr)
    # every unsupported key was named once on the way (the startup log is stdout)
    named = [line.split(" mosnpy.config: ", 1)[1] for line in done.stdout.splitlines()]
    assert unsupported_paths(named) == UNSUPPORTED[name], done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == [path]  # no log file opened for a config refused


# -- the HTTP samples, with curl ------------------------------------------------------


def curl_get(port: int, path: str = "/") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-D", "-", f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        timeout=20,
        check=False,
    )


def assert_served_by(port: int, backend: PyBackend) -> None:
    done = curl_get(port, "/hello")
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), done.stdout
    assert f"x-backend: {backend.name}".encode() in head.lower()
    assert body == f"backend {backend.name}\n".encode()


@contextmanager
def mosnpy_on(name: str, workdir: Path, ports: dict[int, int], listen: int) -> Iterator[dict[int, int]]:
    """``mosnpy -c`` on example ``name`` (ports mapped as given), ready on ``listen``."""
    path, mapping = materialize(name, workdir, ports)
    with run_mosnpy(path, ready_port=mapping[listen]) as proc:
        yield mapping
        out = proc.output()
    assert "Traceback" not in out
    named = [line.split(" mosnpy.config: ", 1)[1] for line in out.splitlines() if " mosnpy.config: " in line]
    assert unsupported_paths(named) == UNSUPPORTED[name], out  # each once, nothing else


def test_http_sample_one_process_http1_to_http2_to_http1(tmp_path: Path) -> None:
    """http-sample/config.json: curl → clientListener (Http1, upstream Http2) →
    serverListener (Http2, upstream Http1) → backend; routers from connection_manager."""
    with start_py_backend("http-sample") as backend:
        ports = {8080: backend.port}
        with mosnpy_on("http_sample_config.json", tmp_path, ports, listen=2045) as mapping:
            assert_served_by(mapping[2045], backend)


def test_http_sample_client_and_server_processes(tmp_path: Path) -> None:
    """http-sample/{client,server}_config.json: two mosnpy processes, as in MOSN's demo."""
    with ExitStack() as stack:
        backend = stack.enter_context(start_py_backend("http-server"))
        ports = {8080: backend.port, 2046: free_port(), 2045: free_port()}
        stack.enter_context(mosnpy_on("http_sample_server_config.json", tmp_path / "s", ports, listen=2046))
        stack.enter_context(mosnpy_on("http_sample_client_config.json", tmp_path / "c", ports, listen=2045))
        assert_served_by(ports[2045], backend)
        assert_served_by(ports[2046], backend)


def test_tcpproxy_sample(tmp_path: Path) -> None:
    """tcpproxy-sample: the bytes of an HTTP exchange relayed by tcp_proxy."""
    with ExitStack() as stack:
        backend = stack.enter_context(start_py_backend("tcp"))
        m = stack.enter_context(
            mosnpy_on("tcpproxy_sample_config.json", tmp_path, {8080: backend.port}, listen=2045)
        )
        assert_served_by(m[2045], backend)


def test_protocol_auto_sample(tmp_path: Path) -> None:
    with ExitStack() as stack:
        backend = stack.enter_context(start_py_backend("auto"))
        ports = {8080: backend.port}
        m = stack.enter_context(mosnpy_on("protocol_auto_sample_config.json", tmp_path, ports, listen=2045))
        assert_served_by(m[2045], backend)


def test_slow_start_sample_weighted_round_robin(tmp_path: Path) -> None:
    """slow-start-sample: LB_WEIGHTED_ROUNDROBIN over three backends weighted 1:2:3."""
    with ExitStack() as stack:
        backends = [stack.enter_context(start_py_backend(f"w{i}")) for i in (1, 2, 3)]
        ports = {8080 + i: b.port for i, b in enumerate(backends)}
        mapping = stack.enter_context(
            mosnpy_on("slow_start_sample_config.json", tmp_path, ports, listen=2046)
        )
        served = []
        for _ in range(12):
            done = curl_get(mapping[2046], "/")
            assert done.returncode == 0, done.stderr
            served.append(done.stdout.rpartition(b"backend ")[2].strip().decode())
        assert sorted(served.count(f"w{i}") for i in (1, 2, 3)) == [2, 4, 6]


# -- the RPC samples, with the Node.js peers -------------------------------------------


@contextmanager
def provider(kind: str) -> Iterator[int]:
    try:
        proc = start_provider(kind, 0)
    except PeerError as exc:  # the peers are optional (tests/peers/README.md)
        pytest.skip(str(exc))
    try:
        yield proc.port
    finally:
        stop(proc)


def assert_calls_ok(kind: str, port: int) -> None:
    summary = run_consumer(kind, port, calls=3)
    assert summary["returncode"] == 0 and summary["ok"] == 3 and summary["mismatched"] == 0, summary


def test_dubbo_client_and_server_configs(tmp_path: Path) -> None:
    """dubbo/{client,server}_config.json: consumer → 'dubbo' egress → 'X' + sub_protocol
    dubbo ingress → provider."""
    with provider("dubbo") as provider_port, ExitStack() as stack:
        ports = {20880: provider_port, 2046: free_port(), 2045: free_port()}
        stack.enter_context(mosnpy_on("dubbo_server_config.json", tmp_path / "s", ports, listen=2046))
        stack.enter_context(mosnpy_on("dubbo_client_config.json", tmp_path / "c", ports, listen=2045))
        assert_calls_ok("dubbo", ports[2045])


def test_dubbo_config_with_connection_manager_routers(tmp_path: Path) -> None:
    """dubbo/config.json: both hops in one process, routers declared by
    connection_manager filters."""
    with ExitStack() as stack:
        provider_port = stack.enter_context(provider("dubbo"))
        mapping = stack.enter_context(
            mosnpy_on("dubbo_config.json", tmp_path, {20880: provider_port}, listen=2045)
        )
        assert_calls_ok("dubbo", mapping[2045])


def test_sofarpc_xprotocol_client_config(tmp_path: Path) -> None:
    """sofarpc-with-xprotocol-sample/client_config.json: bolt consumer → mosnpy → provider."""
    with provider("bolt") as provider_port:
        ports = {2046: provider_port}
        with mosnpy_on("sofarpc_xprotocol_client_config.json", tmp_path, ports, listen=2045) as mapping:
            assert_calls_ok("bolt", mapping[2045])
