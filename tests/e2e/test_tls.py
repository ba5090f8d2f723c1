"""TLS on both sides of mosnpy, with real clients: curl, openssl s_client, httpx, grpcio.

Certificates come from trustme (a throwaway CA per test module), never from files in
the repository.  mosnpy runs as a subprocess on 127.0.0.1 with a MOSN config whose
filter chains carry ``tls_context`` / ``tls_context_set`` and whose clusters carry the
upstream one; backends are a plain HTTP route (``direct_response``), a trio TLS
backend, and a grpcio server.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trustme

from tests.support.procs import free_port, run_mosnpy
from tests.support.tls import served_certificate

pytestmark = pytest.mark.timeout(60)

CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")


class Certs:
    """A CA, a server certificate for two names (plus 127.0.0.1), another for a third
    name, and a client certificate, written as PEM files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.ca = trustme.CA()
        self.other_ca = trustme.CA()
        self.root = root
        self.ca_pem = self._write("ca.pem", self.ca.cert_pem.bytes())
        self.other_ca_pem = self._write("other-ca.pem", self.other_ca.cert_pem.bytes())
        server = self.ca.issue_cert("a.test", "127.0.0.1")
        self.a_cert, self.a_key = self._pair("a", server)
        second = self.ca.issue_cert("b.test")
        self.b_cert, self.b_key = self._pair("b", second)
        client = self.ca.issue_cert("client@mosnpy.test")
        self.client_cert, self.client_key = self._pair("client", client)

    def _write(self, name: str, data: bytes) -> str:
        path = self.root / name
        path.write_bytes(data)
        return str(path)

    def _pair(self, name: str, leaf: trustme.LeafCert) -> tuple[str, str]:
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        return self._write(f"{name}.crt", chain), self._write(f"{name}.key", leaf.private_key_pem.bytes())


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


def _route(prefix: str, body: str) -> dict[str, Any]:
    return {"match": {"prefix": prefix}, "direct_response": {"status": 200, "body": body}}


def _config(
    listeners: list[dict[str, Any]], clusters: list[dict[str, Any]] = (), routes: Any = None
) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "servers": [
            {
                "default_log_level": "INFO",
                "routers": [
                    {
                        "router_config_name": "r",
                        "virtual_hosts": [
                            {
                                "name": "all",
                                "domains": ["*"],
                                "routers": routes or [_route("/", "hello over tls\n")],
                            }
                        ],
                    }
                ],
                "listeners": listeners,
            }
        ],
        "cluster_manager": {"clusters": list(clusters)},
    }


def _listener(port: int, chain_tls: dict[str, Any], protocol: str = "Http1", **proxy: Any) -> dict[str, Any]:
    return {
        "name": f"l{port}",
        "address": f"127.0.0.1:{port}",
        "filter_chains": [
            {
                **chain_tls,
                "filters": [
                    {
                        "type": "proxy",
                        "config": {"downstream_protocol": protocol, "router_config_name": "r", **proxy},
                    }
                ],
            }
        ],
    }


def _server_tls(certs: Certs, **extra: Any) -> dict[str, Any]:
    return {"status": True, "cert_chain": certs.a_cert, "private_key": certs.a_key, **extra}


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert CURL, "curl is installed by .ci/run"
    return subprocess.run(
        [CURL, "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=20
    )


@pytest.fixture
def tls_proxy(certs: Certs) -> Iterator[int]:
    port = free_port()
    cfg = _config([_listener(port, {"tls_context": _server_tls(certs, alpn="h2,http/1.1")}, "Http1,Http2")])
    with run_mosnpy(cfg, ready_port=port):
        yield port


def test_curl_with_the_ca_gets_the_answer_over_tls(certs: Certs, tls_proxy: int) -> None:
    done = _curl("--cacert", certs.ca_pem, f"https://127.0.0.1:{tls_proxy}/x")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello over tls\n"
    refused = _curl(f"https://127.0.0.1:{tls_proxy}/x")  # the system roots do not know our CA
    assert refused.returncode != 0 and "certificate" in refused.stderr.lower()


def test_alpn_picks_http2_and_http11_per_connection(certs: Certs, tls_proxy: int) -> None:
    h2 = _curl(
        "--cacert",
        certs.ca_pem,
        "--http2",
        "-w",
        "%{http_version}",
        "-o",
        "/dev/null",
        f"https://127.0.0.1:{tls_proxy}/",
    )
    h1 = _curl(
        "--cacert",
        certs.ca_pem,
        "--http1.1",
        "-w",
        "%{http_version}",
        "-o",
        "/dev/null",
        f"https://127.0.0.1:{tls_proxy}/",
    )
    assert (h2.stdout, h1.stdout) == ("2", "1.1"), (h2.stderr, h1.stderr)


def test_httpx_http2_over_tls(certs: Certs, tls_proxy: int) -> None:
    context = ssl.create_default_context(cafile=certs.ca_pem)
    with httpx.Client(verify=context, http2=True) as client:
        answers = [client.get(f"https://127.0.0.1:{tls_proxy}/n{i}") for i in range(5)]
    assert [(a.status_code, a.http_version, a.text) for a in answers] == [
        (200, "HTTP/2", "hello over tls\n")
    ] * 5


def test_two_server_names_on_one_port_get_their_own_certificates(certs: Certs) -> None:
    port = free_port()
    chain = {
        "tls_context_set": [
            {"status": True, "server_name": "a.test", "cert_chain": certs.a_cert, "private_key": certs.a_key},
            {"status": True, "server_name": "b.test", "cert_chain": certs.b_cert, "private_key": certs.b_key},
        ]
    }
    with run_mosnpy(_config([_listener(port, chain)]), ready_port=port):
        for name in ("a.test", "b.test"):
            resolve = f"{name}:{port}:127.0.0.1"
            done = _curl("--cacert", certs.ca_pem, "--resolve", resolve, f"https://{name}:{port}/")
            assert done.returncode == 0, (name, done.stderr)
            assert done.stdout == "hello over tls\n"
        for name, leaf in (("a.test", certs.a_cert), ("b.test", certs.b_cert)):
            assert served_certificate(port, name, certs.ca_pem) == ssl.PEM_cert_to_DER_cert(
                Path(leaf).read_text()
            )
        if OPENSSL:
            out = subprocess.run(
                [
                    *(OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "b.test"),
                    *("-CAfile", certs.ca_pem, "-verify_hostname", "b.test"),
                ],
                input="",
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout
            assert "Verify return code: 0 (ok)" in out


def test_a_required_client_certificate(certs: Certs) -> None:
    port = free_port()
    tls = _server_tls(certs, ca_cert=certs.ca_pem, verify_client=True, require_client_cert=True)
    with run_mosnpy(_config([_listener(port, {"tls_context": tls})]), ready_port=port) as proc:
        without = _curl("--cacert", certs.ca_pem, f"https://127.0.0.1:{port}/")
        assert without.returncode != 0
        with_cert = _curl(
            "--cacert",
            certs.ca_pem,
            "--cert",
            certs.client_cert,
            "--key",
            certs.client_key,
            f"https://127.0.0.1:{port}/",
        )
        assert with_cert.returncode == 0, with_cert.stderr
        assert with_cert.stdout == "hello over tls\n"
        if OPENSSL:
            out = subprocess.run(
                [
                    OPENSSL,
                    "s_client",
                    "-connect",
                    f"127.0.0.1:{port}",
                    "-CAfile",
                    certs.ca_pem,
                    "-alpn",
                    "http/1.1",
                ],
                input="GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert "hello over tls" not in out.stdout
        assert "TLS handshake failed" in proc.output()


def test_tls_and_plaintext_share_a_port_with_fall_back(certs: Certs) -> None:
    port = free_port()
    with run_mosnpy(
        _config([_listener(port, {"tls_context": _server_tls(certs, fall_back=True)})]), ready_port=port
    ):
        over_tls = _curl("--cacert", certs.ca_pem, f"https://127.0.0.1:{port}/")
        plain = _curl(f"http://127.0.0.1:{port}/")
    assert (over_tls.stdout, plain.stdout) == ("hello over tls\n", "hello over tls\n"), (
        over_tls.stderr,
        plain.stderr,
    )


# -- upstream TLS -----------------------------------------------------------------------------


async def _tls_backend(certs: Certs, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """An HTTP/1.1 backend behind TLS (certificate for 127.0.0.1 and a.test)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.a_cert, certs.a_key)

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                data = await stream.receive_some(65536)
                if not data:
                    return
                request += data
            body = b"from the tls backend\n"
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            await stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    listeners = await trio.open_ssl_over_tcp_listeners(0, context, host="127.0.0.1")
    task_status.started(listeners[0].transport_listener.socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


def _upstream_config(port: int, backend: int, ca: str, server_name: str = "") -> dict[str, Any]:
    cluster = {
        "name": "tls_backend",
        "type": "SIMPLE",
        "lb_type": "LB_ROUNDROBIN",
        "connect_timeout": "3s",
        "hosts": [{"address": f"127.0.0.1:{backend}"}],
        "tls_context": {"status": True, "ca_cert": ca, "server_name": server_name},
    }
    routes = [{"match": {"prefix": "/"}, "route": {"cluster_name": "tls_backend", "timeout": "5s"}}]
    listener = _listener(port, {})
    return _config([listener], [cluster], routes)


async def test_upstream_tls_verified_by_the_cluster_ca(certs: Certs) -> None:
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(_tls_backend, certs)
        port = free_port()
        with run_mosnpy(_upstream_config(port, backend, certs.ca_pem, "a.test"), ready_port=port):
            async with httpx.AsyncClient() as client:
                answer = await client.get(f"http://127.0.0.1:{port}/")
        assert (answer.status_code, answer.text) == (200, "from the tls backend\n")
        nursery.cancel_scope.cancel()


async def test_a_wrong_upstream_ca_fails_the_request_with_502_and_says_why(certs: Certs) -> None:
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(_tls_backend, certs)
        port = free_port()
        with run_mosnpy(_upstream_config(port, backend, certs.other_ca_pem), ready_port=port) as proc:
            async with httpx.AsyncClient() as client:
                answer = await client.get(f"http://127.0.0.1:{port}/")
            await trio.sleep(0.2)
            log = proc.output()
        assert answer.status_code == 502
        assert "from the tls backend" not in answer.text
        assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log
        nursery.cancel_scope.cancel()


# -- gRPC over TLS ---------------------------------------------------------------------------


def test_grpc_over_tls_through_mosnpy(certs: Certs) -> None:
    import grpc  # type: ignore[import-untyped]

    from tests.support.grpc_peer import GRPC_OPTIONS, UNARY, GrpcServer

    with GrpcServer() as server:
        port = free_port()
        cluster = {
            "name": "grpc",
            "type": "SIMPLE",
            "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": server.address}],
        }
        routes = [{"match": {"prefix": "/"}, "route": {"cluster_name": "grpc", "timeout": "10s"}}]
        tls = _server_tls(certs, alpn="h2")
        cfg = _config([_listener(port, {"tls_context": tls}, "Http2")], [cluster], routes)
        with run_mosnpy(cfg, ready_port=port):
            credentials = grpc.ssl_channel_credentials(root_certificates=certs.ca.cert_pem.bytes())
            options = [*GRPC_OPTIONS, ("grpc.ssl_target_name_override", "a.test")]
            with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
                call = channel.unary_unary(UNARY)
                assert call(b"over tls" * 1000, timeout=10) == b"over tls" * 1000


# -- a real backend behind the TLS listener ----------------------------------------------------


def test_curl_httpx_and_openssl_reach_nginx_through_the_tls_listener(
    certs: Certs, nginx_backend: Any
) -> None:
    """TLS ends at mosnpy; nginx (HTTP/1, plaintext) answers behind it, whatever the
    client negotiated (HTTP/1.1 or HTTP/2 by ALPN)."""
    port = free_port()
    cluster = {
        "name": "nginx",
        "type": "SIMPLE",
        "lb_type": "LB_ROUNDROBIN",
        "hosts": [{"address": f"127.0.0.1:{nginx_backend.port}"}],
    }
    routes = [{"match": {"prefix": "/"}, "route": {"cluster_name": "nginx", "timeout": "10s"}}]
    listener = _listener(
        port,
        {"tls_context": _server_tls(certs, alpn="h2,http/1.1")},
        "Http1,Http2",
        upstream_protocol="Http1",
    )
    index = nginx_backend.index_body.decode()
    with run_mosnpy(_config([listener], [cluster], routes), ready_port=port):
        for version in ("--http1.1", "--http2"):
            done = _curl("--cacert", certs.ca_pem, version, f"https://127.0.0.1:{port}/")
            assert (done.returncode, done.stdout) == (0, index), (version, done.stderr)
        context = ssl.create_default_context(cafile=certs.ca_pem)
        with httpx.Client(verify=context, http2=True) as client:
            big = client.get(f"https://127.0.0.1:{port}/big")
        assert big.http_version == "HTTP/2"
        assert hashlib.sha256(big.content).hexdigest() == nginx_backend.big_sha256
        if OPENSSL:
            out = subprocess.run(
                [
                    OPENSSL,
                    "s_client",
                    "-connect",
                    f"127.0.0.1:{port}",
                    "-CAfile",
                    certs.ca_pem,
                    "-alpn",
                    "http/1.1",
                    "-ign_eof",
                ],
                input="GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout
            assert "ALPN protocol: http/1.1" in out
            assert index in out


def test_certificate_files_are_read_again_on_reload(certs: Certs, tmp_path: Path) -> None:
    """Rotated certificate files (the same paths, a new certificate and key) are served
    to new connections after SIGHUP; before it, the old one still is."""
    import signal
    import time

    cert, key = tmp_path / "srv.crt", tmp_path / "srv.key"
    shutil.copyfile(certs.a_cert, cert)
    shutil.copyfile(certs.a_key, key)
    port = free_port()
    tls = {"tls_context": {"status": True, "cert_chain": str(cert), "private_key": str(key)}}
    config = tmp_path / "mosnpy.json"
    config.write_text(json.dumps(_config([_listener(port, tls)])))
    old = ssl.PEM_cert_to_DER_cert(Path(certs.a_cert).read_text())
    rotated = certs.ca.issue_cert("a.test", "127.0.0.1")
    with run_mosnpy(config, ready_port=port) as proc:
        assert served_certificate(port, "a.test", certs.ca_pem) == old
        cert.write_bytes(b"".join(blob.bytes() for blob in rotated.cert_chain_pems))
        key.write_bytes(rotated.private_key_pem.bytes())
        assert served_certificate(port, "a.test", certs.ca_pem) == old  # files are read on reload only
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded the config" not in proc.output():
            assert time.monotonic() < deadline, proc.output()
            time.sleep(0.02)
        new = served_certificate(port, "a.test", certs.ca_pem)
        assert new == ssl.PEM_cert_to_DER_cert(rotated.cert_chain_pems[0].bytes().decode())
        assert new != old
        done = _curl("--cacert", certs.ca_pem, f"https://127.0.0.1:{port}/")
        assert done.returncode == 0 and done.stdout == "hello over tls\n", done.stderr
