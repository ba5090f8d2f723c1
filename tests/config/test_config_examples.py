"""The example configs of the MOSN reference (mosn.md §8) load, in JSON and in YAML."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from mosnpy.config import (
    AdminConfig,
    CircuitBreakerConfig,
    FilterConfig,
    HeaderMatcherConfig,
    MosnConfig,
    RetryPolicyConfig,
    WeightedClusterConfig,
    load_config,
    parse_config,
    parse_proxy_config,
)

DATA = Path(__file__).parent / "data"
EXAMPLES = ["dubbo_client.json", "http1_proxy.json"]
IGNORED = "not supported by mosnpy yet; ignored"


def doc(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / name).read_text())
    return loaded


def test_dubbo_client_example() -> None:
    warnings: list[str] = []
    config = load_config(DATA / "dubbo_client.json", warnings=warnings)

    assert warnings == [f"pprof: {IGNORED}", f"metrics: {IGNORED}", f"tracing: {IGNORED}"]
    (server,) = config.servers
    (listener,) = server.listeners
    assert (listener.name, listener.type, listener.address) == ("egress_dubbo", "egress", "0.0.0.0:2045")
    # The proxy filter keeps its original mapping; the protocol name is the runtime's business.
    assert listener.filter_chains[0].filters == (
        FilterConfig(
            type="proxy", config={"downstream_protocol": "dubbo", "router_config_name": "client_router"}
        ),
    )
    assert listener.stream_filters == (FilterConfig(type="dubbo_stream", config={}),)
    (router,) = server.routers
    first, second = router.virtual_hosts[0].routers
    assert first.match.headers == (
        HeaderMatcherConfig(name="service", value="org.demo.GreetingsService"),
        HeaderMatcherConfig(name="version", value="1.0.0"),
    )
    assert first.match.prefix is first.match.path is first.match.regex is None
    assert first.route is not None and first.route.timeout == 3.0
    assert first.route.retry_policy == RetryPolicyConfig(retry_on=True, retry_timeout=1.0, num_retries=3)
    assert second.route is not None and second.route.cluster_name == "clientCluster"
    (cluster,) = config.cluster_manager.clusters
    assert (cluster.name, cluster.lb_type, cluster.connect_timeout) == ("clientCluster", "LB_RANDOM", 2.0)
    assert cluster.circuit_breakers == (CircuitBreakerConfig(max_connections=2, max_requests=10000),)
    assert [h.address for h in cluster.hosts] == ["127.0.0.1:2046"]
    assert config.admin == AdminConfig(address="127.0.0.1:34901")


def test_http1_proxy_example() -> None:
    warnings: list[str] = []
    config = load_config(DATA / "http1_proxy.json", warnings=warnings)

    assert warnings == []
    check = config.cluster_manager.clusters[0].health_check
    assert check is not None
    assert (check.protocol, check.interval, check.timeout) == ("Http1", 10.0, 1.0)
    assert check.check_config == {"http_check_config": {"port": 8080, "path": "/health"}}
    health, canary, default = config.servers[0].routers[0].virtual_hosts[0].routers
    assert health.match.path == "/health"
    assert health.direct_response is not None and health.direct_response.body == "ok"
    assert canary.route is not None
    assert canary.route.weighted_clusters == (
        WeightedClusterConfig(name="v2", weight=10),
        WeightedClusterConfig(name="v1", weight=90),
    )
    assert default.route is not None and default.route.timeout == 5.0
    assert default.route.retry_policy is not None
    assert default.route.retry_policy.status_codes == (502, 503)
    assert config.servers[0].listeners[0].stream_filters[0].config == {
        "abort": {"status": 503, "percentage": 1}
    }
    assert [c.name for c in config.cluster_manager.clusters] == ["v1", "v2"]
    assert config.admin == AdminConfig(address="0.0.0.0:34901")


def test_ignored_keys_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mosnpy.config"):
        load_config(DATA / "dubbo_client.json")
    messages = [r.getMessage() for r in caplog.records if r.name == "mosnpy.config"]
    assert messages == [f"pprof: {IGNORED}", f"metrics: {IGNORED}", f"tracing: {IGNORED}"]


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_yaml_and_json_give_equal_models(name: str, suffix: str, tmp_path: Path) -> None:
    yaml_file = tmp_path / f"config{suffix}"
    yaml_file.write_text(yaml.safe_dump(doc(name), sort_keys=False))
    json_warnings: list[str] = []
    yaml_warnings: list[str] = []
    assert load_config(yaml_file, warnings=yaml_warnings) == load_config(DATA / name, warnings=json_warnings)
    assert yaml_warnings == json_warnings


HANDWRITTEN_YAML = """\
# The HTTP/1 example, written by hand: durations unquoted, MOSN's nested forms.
servers:
  - default_log_path: stdout
    routers:
      - router_config_name: r
        virtual_hosts:
          - name: h
            domains: ["*"]
            routers:
              - match: {prefix: /}
                route:
                  cluster_name: v1
                  timeout: 1m30s
                  request_headers_to_add:
                    - header: {key: x-from, value: mosnpy}
                      append: true
    listeners:
      - name: http
        address: 0.0.0.0:2045
        filter_chains:
          - filters:
              - type: proxy
                config: {downstream_protocol: Http1, router_config_name: r}
cluster_manager:
  clusters:
    - name: v1
      connect_timeout: 500ms
      hosts: [{address: "127.0.0.1:8080"}]
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 34901}}
"""

HANDWRITTEN_JSON = {
    "servers": [
        {
            "default_log_path": "stdout",
            "routers": [
                {
                    "router_config_name": "r",
                    "virtual_hosts": [
                        {
                            "name": "h",
                            "domains": ["*"],
                            "routers": [
                                {
                                    "match": {"prefix": "/"},
                                    "route": {
                                        "cluster_name": "v1",
                                        "timeout": 90,
                                        "request_headers_to_add": [
                                            {"key": "x-from", "value": "mosnpy", "append": True}
                                        ],
                                    },
                                }
                            ],
                        }
                    ],
                }
            ],
            "listeners": [
                {
                    "name": "http",
                    "address": "0.0.0.0:2045",
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "type": "proxy",
                                    "config": {"downstream_protocol": "Http1", "router_config_name": "r"},
                                }
                            ]
                        }
                    ],
                }
            ],
        }
    ],
    "cluster_manager": {
        "clusters": [{"name": "v1", "connect_timeout": 0.5, "hosts": [{"address": "127.0.0.1:8080"}]}]
    },
    "admin": {"address": "127.0.0.1:34901"},
}


def test_handwritten_yaml_matches_flat_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "config.yaml"
    yaml_file.write_text(HANDWRITTEN_YAML)
    json_file = tmp_path / "config.json"
    json_file.write_text(json.dumps(HANDWRITTEN_JSON))
    from_yaml = load_config(yaml_file)
    assert from_yaml == load_config(json_file)
    route = from_yaml.servers[0].routers[0].virtual_hosts[0].routers[0].route
    assert route is not None and route.timeout == 90.0
    assert route.request_headers_to_add[0].append is True


def test_dubbo_server_with_legacy_protocol_spelling() -> None:
    """The dubbo *server* MOSN of mosn.md, written with the legacy ``X``/sub_protocol."""
    server_doc = doc("dubbo_client.json")
    server = server_doc["servers"][0]
    listener = server["listeners"][0]
    listener.update(name="ingress_dubbo", type="ingress", address="127.0.0.1:2046")
    legacy = {
        "downstream_protocol": "X",
        "upstream_protocol": "X",
        "router_config_name": "server_router",
        "extend_config": {"sub_protocol": "dubbo"},
    }
    listener["filter_chains"][0]["filters"][0]["config"] = legacy
    server["routers"][0]["router_config_name"] = "server_router"
    vhost = server["routers"][0]["virtual_hosts"][0]
    vhost["routers"] = [
        {
            "match": {"headers": [{"name": "service", "value": ".*"}]},
            "route": {"cluster_name": "serverCluster"},
        }
    ]
    server_doc["cluster_manager"]["clusters"][0].update(
        name="serverCluster", hosts=[{"address": "127.0.0.1:20880"}]
    )
    server_doc["admin"]["address"]["socket_address"]["port_value"] = 34911

    config = parse_config(copy.deepcopy(server_doc))

    filter_config = config.servers[0].listeners[0].filter_chains[0].filters[0].config
    assert filter_config == legacy  # the original mapping is kept
    proxy = parse_proxy_config(filter_config, "somewhere.config")
    assert (proxy.downstream_protocol, proxy.upstream_protocol) == ("dubbo", "dubbo")
    assert config.admin == AdminConfig(address="127.0.0.1:34911")


def test_empty_document_is_the_default_config() -> None:
    assert parse_config({}) == MosnConfig()
