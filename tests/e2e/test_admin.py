"""The admin API served where the config has ``admin``, through ``mosnpy -c``."""

from __future__ import annotations

import httpx

from tests.e2e.test_http1_cli import http_config, to
from tests.support import PyBackend, free_port, run_mosnpy


def test_admin_endpoints(py_backend: PyBackend) -> None:
    port, admin = free_port(), free_port()
    cfg = http_config(port, {"py": [f"127.0.0.1:{py_backend.port}"]}, [to("py")])
    cfg["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}}
    with run_mosnpy(cfg, ready_port=port) as proc:
        base = f"http://127.0.0.1:{admin}"
        with httpx.Client(base_url=base, timeout=5) as c:
            assert "/api/v1/stats" in c.get("/").json()["endpoints"]
            dump = c.get("/api/v1/config_dump").json()
            assert dump["servers"][0]["listeners"][0]["address"] == f"127.0.0.1:{port}"
            assert dump["cluster_manager"]["clusters"][0]["name"] == "py"
            assert c.get("/api/v1/version").json()["version"]
            # traffic shows up in the stats: a kept-alive client connection is open
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                assert client.get("/").status_code == 200
                stats = c.get("/api/v1/stats").json()
                assert stats["listeners"]["http"]["connections"] == 1
                cluster = stats["clusters"]["py"]
                assert cluster["active_requests"] == 0
                [host] = cluster["hosts"]
                assert (
                    host.items()
                    >= {
                        "address": f"127.0.0.1:{py_backend.port}",
                        "weight": 1,
                        "healthy": True,
                        "active_requests": 0,
                    }.items()
                )
                assert "idle=1" in cluster["pools"][0]
                assert stats["listeners"]["http"]["request_total"] == 1
                assert stats["listeners"]["http"]["response_total"] == {"200": 1}
                assert cluster["counters"]["requests"] == 1
                client.get("/status/503")
            metrics = c.get("/metrics")
            assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
            lines = set(metrics.text.splitlines())
            assert 'downstream_request_total{listener="http"} 2.0' in lines
            assert 'downstream_response_total{code="200",listener="http"} 1.0' in lines
            assert 'downstream_response_total{code="503",listener="http"} 1.0' in lines
            assert 'upstream_request_total{cluster="py"} 2.0' in lines
            assert f'upstream_host_healthy{{cluster="py",host="127.0.0.1:{py_backend.port}"}} 1.0' in lines
            missing = c.get("/api/v1/nope")
            assert missing.status_code == 404 and "endpoints" in missing.json()
            assert c.post("/api/v1/stats").status_code == 405
        assert "not served" not in proc.output()
