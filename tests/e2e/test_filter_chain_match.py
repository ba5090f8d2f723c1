"""One port, several filter chains chosen by ``filter_chain_match``, with real clients.

mosnpy runs as a subprocess (``mosnpy -c``) on 127.0.0.1 with one listener whose
chains are picked by SNI (``a.test`` / ``b.test``, each with its own certificate from a
throwaway trustme CA and its own ``proxy`` filter routing to its own backend cluster)
and by transport protocol (a plaintext chain on the same port).  curl (``--resolve``),
Python's ``ssl`` sockets and httpx are the clients; a SIGHUP reload swaps one chain's
routes.
"""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.support import PyBackend, free_port, run_mosnpy, start_py_backend
from tests.support.tls import served_certificate

pytestmark = pytest.mark.timeout(60)

CURL = shutil.which("curl")


class Certs:
    """A CA and one certificate per name (for that name only), as PEM files."""

    def __init__(self, root: Path) -> None:
        self.ca = trustme.CA()
        self.ca_pem = str(root / "ca.pem")
        Path(self.ca_pem).write_bytes(self.ca.cert_pem.bytes())
        self.pairs: dict[str, tuple[str, str]] = {}
        for name in ("a.test", "b.test"):
            leaf = self.ca.issue_cert(name)
            cert, key = root / f"{name}.crt", root / f"{name}.key"
            cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
            key.write_bytes(leaf.private_key_pem.bytes())
            self.pairs[name] = (str(cert), str(key))

    def tls(self, name: str) -> dict[str, Any]:
        cert, key = self.pairs[name]
        return {"status": True, "cert_chain": cert, "private_key": key}

    def der(self, name: str) -> bytes:
        return ssl.PEM_cert_to_DER_cert(Path(self.pairs[name][0]).read_text())


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("fcm-certs"))


@pytest.fixture
def backends() -> Iterator[tuple[PyBackend, PyBackend]]:
    with start_py_backend("A") as a, start_py_backend("B") as b:
        yield a, b


def _proxy(router: str) -> dict[str, Any]:
    return {"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": router}}


def _router(name: str, action: dict[str, Any]) -> dict[str, Any]:
    return {
        "router_config_name": name,
        "virtual_hosts": [
            {"name": name, "domains": ["*"], "routers": [{"match": {"prefix": "/"}, **action}]}
        ],
    }


def _config(
    port: int, certs: Certs, a: PyBackend, b: PyBackend, *, b_goes_to: str = "cluster_b"
) -> dict[str, Any]:
    """a.test → cluster_a (backend A), b.test → ``b_goes_to``, plaintext → a direct answer."""
    chains = [
        {
            "filter_chain_match": {"server_names": ["a.test"]},
            "tls_context": certs.tls("a.test"),
            "filters": [_proxy("route_a")],
        },
        {
            "filter_chain_match": {"server_names": ["b.test"], "transport_protocol": "tls"},
            "tls_context": certs.tls("b.test"),
            "filters": [_proxy("route_b")],
        },
        {"filter_chain_match": {"transport_protocol": "raw_buffer"}, "filters": [_proxy("route_plain")]},
    ]
    return {
        "servers": [
            {
                "default_log_level": "DEBUG",
                "routers": [
                    _router("route_a", {"route": {"cluster_name": "cluster_a", "timeout": "5s"}}),
                    _router("route_b", {"route": {"cluster_name": b_goes_to, "timeout": "5s"}}),
                    _router("route_plain", {"direct_response": {"status": 200, "body": "plaintext chain\n"}}),
                ],
                "listeners": [{"name": "edge", "address": f"127.0.0.1:{port}", "filter_chains": chains}],
            }
        ],
        "cluster_manager": {
            "clusters": [
                {"name": "cluster_a", "hosts": [{"address": f"127.0.0.1:{a.port}"}]},
                {"name": "cluster_b", "hosts": [{"address": f"127.0.0.1:{b.port}"}]},
            ]
        },
    }


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert CURL, "curl is installed by .ci/run"
    return subprocess.run(
        [CURL, "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=20
    )


def _https(certs: Certs, name: str, port: int, path: str = "/") -> subprocess.CompletedProcess[str]:
    return _curl(
        "--cacert", certs.ca_pem, "--resolve", f"{name}:{port}:127.0.0.1", f"https://{name}:{port}{path}"
    )


def test_two_server_names_get_their_own_certificates_and_reach_their_own_clusters(
    certs: Certs, backends: tuple[PyBackend, PyBackend]
) -> None:
    a, b = backends
    port, admin = free_port(), free_port()
    config = _config(port, certs, a, b)
    config["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}}
    with run_mosnpy(config, ready_port=port) as proc:
        for name, answer in (("a.test", "backend A\n"), ("b.test", "backend B\n"), ("a.test", "backend A\n")):
            done = _https(certs, name, port)
            assert (done.returncode, done.stdout) == (0, answer), (name, done.stderr)
            assert served_certificate(port, name, certs.ca_pem) == certs.der(name)
        # httpx, with SNI given apart from the address it connects to; one client per
        # name, since a kept-alive connection stays on the chain its handshake chose
        context = ssl.create_default_context(cafile=certs.ca_pem)
        for name, answer in (("b.test", "backend B\n"), ("a.test", "backend A\n")):
            with httpx.Client(verify=context, timeout=10) as client:
                got = [
                    client.get(
                        f"https://127.0.0.1:{port}/x",
                        headers={"host": name},
                        extensions={"sni_hostname": name},
                    )
                    for _ in range(3)
                ]
            assert [(r.status_code, r.text, r.headers["x-backend"]) for r in got] == [
                (200, answer, answer[8])
            ] * 3
        # a name no chain takes, and TLS without a name, are refused before any handshake
        unknown = _https(certs, "c.test", port)
        assert unknown.returncode != 0 and "backend" not in unknown.stdout
        no_sni = _curl("--cacert", certs.ca_pem, f"https://127.0.0.1:{port}/")
        assert no_sni.returncode != 0
        with pytest.raises((ssl.SSLError, ConnectionError)):
            served_certificate(port, "c.test", certs.ca_pem)
        # the plaintext chain serves on the same port
        plain = _curl(f"http://127.0.0.1:{port}/")
        assert (plain.returncode, plain.stdout) == (0, "plaintext chain\n"), plain.stderr
        stats = httpx.get(f"http://127.0.0.1:{admin}/api/v1/stats", timeout=10).json()
        time.sleep(0.2)
        log = proc.output()
    assert stats["listeners"]["edge"]["no_filter_chain_match"] == 3  # c.test twice, no SNI once
    assert "no filter chain matches" in log
    assert "TLS handshake failed" not in log  # refused by the choice, not by a handshake


def test_reload_swaps_a_chains_routes_and_keeps_the_others(
    certs: Certs, backends: tuple[PyBackend, PyBackend], tmp_path: Path
) -> None:
    a, b = backends
    port = free_port()
    path = tmp_path / "mosnpy.json"
    path.write_text(json.dumps(_config(port, certs, a, b)))
    with run_mosnpy(path, ready_port=port) as proc:
        assert _https(certs, "b.test", port).stdout == "backend B\n"
        path.write_text(json.dumps(_config(port, certs, a, b, b_goes_to="cluster_a")))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded the config" not in proc.output():
            assert time.monotonic() < deadline, proc.output()
            time.sleep(0.02)
        assert _https(certs, "b.test", port).stdout == "backend A\n"
        assert _https(certs, "a.test", port).stdout == "backend A\n"
        assert _curl(f"http://127.0.0.1:{port}/").stdout == "plaintext chain\n"
