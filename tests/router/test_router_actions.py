"""What a matched route does: clusters, weights, header edits, rewrites, Routers."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosnpy.config.models import (
    DirectResponseConfig,
    HeaderValueConfig,
    RedirectConfig,
    RetryPolicyConfig,
    RouteActionConfig,
    RouteConfig,
    RouteMatchConfig,
    RouterConfig,
    VirtualHostConfig,
    WeightedClusterConfig,
)
from mosnpy.protocol.headers import HeaderMap
from mosnpy.registry import UnknownNameError
from mosnpy.router import Route, RouterConfigError, Routers, RouteTable


def one_route(route: RouteConfig, **router: object) -> Route:
    t = RouteTable.from_config(
        RouterConfig(
            router_config_name="r",
            virtual_hosts=[VirtualHostConfig(name="vh", routers=[route])],
            **router,
        )
    )
    return t.virtual_hosts[0].routes[0]


def weighted(*weights: int) -> Route:
    return one_route(
        RouteConfig(
            match=RouteMatchConfig(prefix="/"),
            route=RouteActionConfig(
                weighted_clusters=[
                    WeightedClusterConfig(name=f"c{i}", weight=w) for i, w in enumerate(weights)
                ]
            ),
        )
    )


# -- weighted clusters ----------------------------------------------------------------


class Enumerating(random.Random):
    """A fake RNG whose randrange walks 0, 1, 2, ... so every slot is visited once."""

    def __init__(self) -> None:
        super().__init__(0)
        self.next = 0

    def randrange(self, stop: int, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        value = self.next % stop
        self.next += 1
        return value


WEIGHTS = st.lists(st.integers(0, 20), min_size=1, max_size=6).filter(lambda ws: sum(ws) > 0)


@settings(max_examples=200, deadline=None, database=None)
@given(WEIGHTS)
def test_every_slot_maps_to_its_cluster_exactly(weights: list[int]) -> None:
    """Over one pass of all ``total`` random values each cluster gets exactly its weight."""
    route = weighted(*weights)
    rng = Enumerating()
    counts = Counter(route.choose_cluster(rng) for _ in range(sum(weights)))
    assert counts == Counter({f"c{i}": w for i, w in enumerate(weights) if w})


@settings(max_examples=25, deadline=None, database=None, derandomize=True)
@given(WEIGHTS, st.integers(0, 2**32))
def test_weighted_choice_distribution(weights: list[int], seed: int) -> None:
    route = weighted(*weights)
    rng = random.Random(seed)
    n = 4000
    counts = Counter(route.choose_cluster(rng) for _ in range(n))
    total = sum(weights)
    for i, w in enumerate(weights):
        p = w / total
        tolerance = 6 * math.sqrt(n * p * (1 - p)) + 1
        assert abs(counts[f"c{i}"] - n * p) <= tolerance, (weights, counts)


def test_weighted_choice_uses_the_module_rng_by_default() -> None:
    route = weighted(1, 1)
    assert {route.choose_cluster() for _ in range(200)} == {"c0", "c1"}


def test_bad_weights() -> None:
    with pytest.raises(RouterConfigError, match="add up to 0"):
        weighted(0, 0)
    with pytest.raises(RouterConfigError, match="negative"):
        weighted(3, -1)


def test_plain_route_attributes() -> None:
    policy = RetryPolicyConfig(retry_on=True, num_retries=2, status_codes=(502, 503))
    r = one_route(
        RouteConfig(
            match=RouteMatchConfig(prefix="/"),
            route=RouteActionConfig(
                cluster_name="v1",
                timeout=5.0,
                retry_policy=policy,
                upstream_protocol="Http2",
                host_rewrite="backend.local",
            ),
        )
    )
    assert r.cluster_name == "v1" and r.choose_cluster() == "v1"
    assert r.timeout == 5.0 and r.retry_policy is policy
    assert r.upstream_protocol == "Http2" and r.host_rewrite == "backend.local"
    assert r.direct_response is None and r.redirect is None
    assert r.virtual_host_name == "vh"


def test_redirect_route_and_bad_code() -> None:
    r = one_route(
        RouteConfig(match=RouteMatchConfig(), redirect=RedirectConfig(response_code=302, path_redirect="/x"))
    )
    assert r.redirect is not None and r.redirect.response_code == 302
    assert r.timeout == 0.0 and r.retry_policy is None
    with pytest.raises(RouterConfigError, match="response_code"):
        one_route(RouteConfig(match=RouteMatchConfig(), redirect=RedirectConfig(response_code=200)))


# -- header edits ----------------------------------------------------------------------


def hv(key: str, value: str, append: bool = False) -> HeaderValueConfig:
    return HeaderValueConfig(key=key, value=value, append=append)


def test_request_headers_route_then_virtual_host_then_router() -> None:
    t = RouteTable.from_config(
        RouterConfig(
            router_config_name="r",
            request_headers_to_add=[hv("x-level", "router"), hv("x-router", "1")],
            request_headers_to_remove=["x-drop-router"],
            virtual_hosts=[
                VirtualHostConfig(
                    name="vh",
                    request_headers_to_add=[hv("x-level", "vhost"), hv("x-trace", "vh", append=True)],
                    request_headers_to_remove=["x-drop-vh"],
                    routers=[
                        RouteConfig(
                            match=RouteMatchConfig(),
                            route=RouteActionConfig(
                                cluster_name="c",
                                request_headers_to_add=[
                                    hv("x-level", "action"),
                                    hv("X-Trace", "action", append=True),
                                ],
                                request_headers_to_remove=["x-drop-action"],
                            ),
                            request_headers_to_add=[hv("x-trace", "entry", append=True)],
                            request_headers_to_remove=["x-drop-entry"],
                        )
                    ],
                )
            ],
        )
    )
    headers = HeaderMap(
        [
            ("x-trace", "client"),
            ("x-drop-router", "1"),
            ("x-drop-vh", "1"),
            ("x-drop-action", "1"),
            ("x-drop-entry", "1"),
            ("x-level", "client"),
        ]
    )
    route = t.match("h", "/", headers)
    assert route is not None
    route.apply_request_headers(headers)
    assert headers.get_all("x-trace") == ["client", "action", "entry", "vh"]
    assert headers.get_all("x-level") == ["router"]  # the least specific level is applied last
    assert headers["x-router"] == "1"
    assert not any(n.startswith("x-drop") for n in headers)


def test_remove_runs_before_add_within_a_level() -> None:
    r = one_route(
        RouteConfig(
            match=RouteMatchConfig(),
            route=RouteActionConfig(
                cluster_name="c",
                request_headers_to_add=[hv("x-a", "new", append=True)],
                request_headers_to_remove=["x-a"],
            ),
        )
    )
    h = HeaderMap([("x-a", "old"), ("x-a", "older")])
    r.apply_request_headers(h)
    assert h.get_all("x-a") == ["new"]


def test_response_headers() -> None:
    r = one_route(
        RouteConfig(
            match=RouteMatchConfig(),
            route=RouteActionConfig(
                cluster_name="c",
                response_headers_to_add=[hv("x-served-by", "mosnpy"), hv("via", "mosnpy", append=True)],
                response_headers_to_remove=["server"],
            ),
        )
    )
    h = HeaderMap([("Server", "nginx"), ("Via", "1.1 a")])
    r.apply_response_headers(h)
    assert h.items_all() == [("via", "1.1 a"), ("x-served-by", "mosnpy"), ("via", "mosnpy")]


def test_no_edits_keep_the_raw_header_bytes() -> None:
    r = one_route(RouteConfig(match=RouteMatchConfig(), route=RouteActionConfig(cluster_name="c")))
    h = HeaderMap.from_raw([("host", "a")], b"Host: a\r\n")
    r.apply_request_headers(h)
    r.apply_response_headers(h)
    assert h.raw == b"Host: a\r\n"


# -- path rewrite ----------------------------------------------------------------------


def rewrite_route(rewrite: str, **match: str) -> Route:
    return one_route(
        RouteConfig(
            match=RouteMatchConfig(**match), route=RouteActionConfig(cluster_name="c", prefix_rewrite=rewrite)
        )
    )


@pytest.mark.parametrize(
    ("match", "rewrite", "path", "want"),
    [
        ({"prefix": "/api/"}, "/", "/api/users?id=1", "/users?id=1"),
        ({"prefix": "/api"}, "/v2", "/api/users", "/v2/users"),
        ({"prefix": "/api"}, "/v2", "/other", "/other"),  # not matched: unchanged
        ({"path": "/old"}, "/new", "/old?x=1", "/new?x=1"),
        ({"path": "/old"}, "/new", "/older", "/older"),
        ({"regex": "/item/[0-9]+"}, "/item", "/item/42?a", "/item?a"),
        ({}, "/base", "/x?y", "/base/x?y"),
        ({"prefix": "/api"}, "", "/api/x?q", "/api/x?q"),  # no rewrite configured
    ],
)
def test_rewrite_path(match: dict[str, str], rewrite: str, path: str, want: str) -> None:
    assert rewrite_route(rewrite, **match).rewrite_path(path) == want


# -- Routers ---------------------------------------------------------------------------


def router(name: str) -> RouterConfig:
    return RouterConfig(
        router_config_name=name,
        virtual_hosts=[
            VirtualHostConfig(
                name="vh",
                routers=[
                    RouteConfig(
                        match=RouteMatchConfig(path="/health"),
                        direct_response=DirectResponseConfig(status=200),
                    )
                ],
            )
        ],
    )


def test_routers_by_name() -> None:
    routers = Routers.from_configs([router("client_router"), router("server_router")])
    assert routers.get("client_router").name == "client_router"
    assert routers["server_router"].name == "server_router"
    assert "client_router" in routers and "x" not in routers
    assert len(routers) == 2 and list(routers) == ["client_router", "server_router"]
    assert set(routers.as_mapping()) == {"client_router", "server_router"}


def test_unknown_router_lists_known_names() -> None:
    routers = Routers.from_configs([router("b"), router("a")])
    with pytest.raises(KeyError) as info:
        routers.get("c")
    assert isinstance(info.value, UnknownNameError)
    assert str(info.value) == "unknown router config 'c' (known: a, b)"


def test_duplicate_router_names() -> None:
    with pytest.raises(RouterConfigError, match="defined twice"):
        Routers.from_configs([router("a"), router("a")])


def test_errors_name_the_router() -> None:
    bad = RouterConfig(
        router_config_name="edge",
        virtual_hosts=[VirtualHostConfig(name="a"), VirtualHostConfig(name="b")],
    )
    with pytest.raises(RouterConfigError, match=r"router 'edge'.*second default"):
        RouteTable.from_config(bad)
