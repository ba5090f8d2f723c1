"""Route matching inside a virtual host: first match wins, path and header tests."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosnpy.config.models import (
    DirectResponseConfig,
    HeaderMatcherConfig,
    RouteActionConfig,
    RouteConfig,
    RouteMatchConfig,
    RouterConfig,
    VirtualHostConfig,
)
from mosnpy.protocol.headers import HeaderMap
from mosnpy.router import Route, RouterConfigError, RouteTable, strip_query
from mosnpy.router.matchers import headers_match

SETTINGS = settings(max_examples=300, deadline=None, database=None)


def table_of(*routes: RouteConfig, domains: tuple[str, ...] = ("*",)) -> RouteTable:
    return RouteTable.from_config(
        RouterConfig(
            router_config_name="r",
            virtual_hosts=[VirtualHostConfig(name="vh", domains=domains, routers=routes)],
        )
    )


def to(cluster: str, **match: object) -> RouteConfig:
    return RouteConfig(match=RouteMatchConfig(**match), route=RouteActionConfig(cluster_name=cluster))  # type: ignore[arg-type]


def hdr(name: str, value: str, regex: bool = False) -> HeaderMatcherConfig:
    return HeaderMatcherConfig(name=name, value=value, regex=regex)


def cluster_of(route: Route | None) -> str | None:
    return None if route is None else route.cluster_name


# -- a brute-force reference ---------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    prefix: str | None
    path: str | None
    regex: str | None
    headers: tuple[tuple[str, str, bool], ...]


def reference_first_match(specs: list[Spec], path: str, headers: dict[str, str]) -> int | None:
    """The obvious, slow implementation of the documented rules."""
    path = path.split("?", 1)[0]
    lowered = {k.lower(): v for k, v in headers.items()}
    for i, s in enumerate(specs):
        if s.prefix:
            ok = path[: len(s.prefix)] == s.prefix
        elif s.path:
            ok = path == s.path
        elif s.regex:
            ok = re.fullmatch(s.regex, path) is not None
        else:
            ok = True
        for name, value, is_regex in s.headers:
            got = lowered.get(name.lower())
            if got is None:
                ok = False
            elif value == ".*":
                pass
            elif is_regex:
                ok = ok and re.fullmatch(value, got) is not None
            else:
                ok = ok and got == value
        if ok:
            return i
    return None


SEGMENTS = st.sampled_from(["a", "b", "ab", "api", ""])
PATHS = st.lists(SEGMENTS, min_size=0, max_size=4).map(lambda segs: "/" + "/".join(segs))
REGEXES = st.sampled_from(["/a.*", "/a/[^/]*", "/(a|b)", "/ab?/?", ".*", "/api(/.*)?", "/b/.+"])
HEADER_NAMES = st.sampled_from(["x-a", "X-B", "service"])
HEADER_VALUES = st.sampled_from(["1", "2", "3", "", "com.foo.Svc"])


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    kind = draw(st.sampled_from(["prefix", "path", "regex", "any", "several"]))
    prefix = path = regex = None
    if kind in ("prefix", "several"):
        prefix = draw(PATHS)
    if kind in ("path", "several"):
        path = draw(PATHS)
    if kind in ("regex", "several"):
        regex = draw(REGEXES)
    headers = draw(
        st.lists(
            st.one_of(
                st.tuples(HEADER_NAMES, st.sampled_from(["1", "2", ".*", "", "com.foo.Svc"]), st.just(False)),
                st.tuples(HEADER_NAMES, st.sampled_from(["[12]", "1|3", "com\\..*", ".*"]), st.just(True)),
            ),
            max_size=2,
        )
    )
    return Spec(prefix, path, regex, tuple(headers))


def spec_config(i: int, s: Spec) -> RouteConfig:
    return to(
        f"c{i}",
        prefix=s.prefix,
        path=s.path,
        regex=s.regex,
        headers=[hdr(n, v, r) for n, v, r in s.headers],
    )


@SETTINGS
@given(
    st.lists(specs(), min_size=1, max_size=8),
    st.lists(st.tuples(PATHS, st.sampled_from(["", "?q=1", "?a/b"]))),
    st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=3),
)
def test_first_match_agrees_with_reference(
    route_specs: list[Spec], requests: list[tuple[str, str]], headers: dict[str, str]
) -> None:
    table = table_of(*(spec_config(i, s) for i, s in enumerate(route_specs)))
    hmap = HeaderMap(headers.items())
    routes = table.virtual_hosts[0].routes
    for path, query in requests:
        want = reference_first_match(route_specs, path + query, headers)
        got = table.match("any.host", path + query, hmap)
        assert (None if got is None else routes.index(got)) == want
        # The readable Route.matches agrees with the inlined loop.
        firsts = [i for i, r in enumerate(routes) if r.matches(strip_query(path + query), hmap)]
        assert (firsts[0] if firsts else None) == want


# -- the rules, one at a time ----------------------------------------------------------


def test_prefix_exact_regex_and_any() -> None:
    t = table_of(
        to("exact", path="/health"),
        to("regex", regex="/user/[0-9]+"),
        to("prefix", prefix="/api/"),
        to("any"),
    )
    h = HeaderMap()
    assert cluster_of(t.match("h", "/health", h)) == "exact"
    assert cluster_of(t.match("h", "/health/x", h)) == "any"
    assert cluster_of(t.match("h", "/user/42", h)) == "regex"
    assert cluster_of(t.match("h", "/user/42x", h)) == "any"  # full match, not search
    assert cluster_of(t.match("h", "/x/user/42", h)) == "any"
    assert cluster_of(t.match("h", "/api/v1", h)) == "prefix"
    assert cluster_of(t.match("h", "/API/v1", h)) == "any"  # case-sensitive


def test_query_string_is_ignored_for_matching() -> None:
    t = table_of(to("exact", path="/health"), to("re", regex="/a/b"))
    assert cluster_of(t.match("h", "/health?verbose=1", HeaderMap())) == "exact"
    assert cluster_of(t.match("h", "/a/b?x=/a/c", HeaderMap())) == "re"
    assert t.match("h", "/healthz?", HeaderMap()) is None


def test_first_match_wins_not_longest() -> None:
    t = table_of(to("short", prefix="/"), to("long", prefix="/api"))
    assert cluster_of(t.match("h", "/api/x", HeaderMap())) == "short"


def test_no_route_is_none() -> None:
    t = table_of(to("a", prefix="/a"))
    assert t.match("h", "/b", HeaderMap()) is None


def test_header_matchers_all_must_hold() -> None:
    t = table_of(
        to("canary", prefix="/api", headers=[hdr("x-canary", "1"), hdr("x-region", "eu|us", regex=True)]),
        to("default", prefix="/"),
    )
    assert cluster_of(t.match("h", "/api", HeaderMap([("X-Canary", "1"), ("x-region", "eu")]))) == "canary"
    assert cluster_of(t.match("h", "/api", HeaderMap([("x-canary", "1"), ("x-region", "asia")]))) == "default"
    assert cluster_of(t.match("h", "/api", HeaderMap([("x-canary", "1")]))) == "default"
    assert cluster_of(t.match("h", "/api", HeaderMap([("x-canary", "2"), ("x-region", "us")]))) == "default"
    # regex is a full match: "eu|us" does not accept "europe"
    assert (
        cluster_of(t.match("h", "/api", HeaderMap([("x-canary", "1"), ("x-region", "europe")]))) == "default"
    )


def test_first_value_of_a_repeated_header_is_tested() -> None:
    t = table_of(to("one", headers=[hdr("x-v", "1")]))
    assert t.match("h", "/", HeaderMap([("x-v", "1"), ("x-v", "2")])) is not None
    assert t.match("h", "/", HeaderMap([("x-v", "2"), ("x-v", "1")])) is None


def test_rpc_routes_from_the_dubbo_example() -> None:
    """MOSN's dubbo client config (mosn.md §8): header-only routes, ".*" wildcard."""
    t = table_of(
        to("exact", headers=[hdr("service", "org.demo.GreetingsService"), hdr("version", "1.0.0")]),
        to("fallback", headers=[hdr("service", ".*")]),
    )
    svc = HeaderMap([("service", "org.demo.GreetingsService"), ("version", "1.0.0"), ("method", "sayHi")])
    assert cluster_of(t.match("", "", svc)) == "exact"
    other = HeaderMap([("service", "org.demo.Other"), ("version", "1.0.0")])
    assert cluster_of(t.match("", "", other)) == "fallback"
    assert cluster_of(t.match("", "", HeaderMap([("service", "")]))) == "fallback"  # present
    assert t.match("", "", HeaderMap([("method", "sayHi")])) is None  # absent


def test_dot_star_is_any_value_with_or_without_regex_flag() -> None:
    for regex in (False, True):
        t = table_of(to("c", headers=[hdr("x", ".*", regex=regex)]))
        assert t.match("h", "/", HeaderMap([("x", "line1\nline2")])) is not None
        assert t.match("h", "/", HeaderMap()) is None


def test_several_path_kinds_prefix_wins_then_path_then_regex() -> None:
    t = table_of(to("c", prefix="/p", path="/exact", regex="/r"))
    assert t.match("h", "/p/x", HeaderMap()) is not None
    assert t.match("h", "/exact", HeaderMap()) is None
    t = table_of(to("c", path="/exact", regex="/r"))
    assert t.match("h", "/exact", HeaderMap()) is not None
    assert t.match("h", "/r", HeaderMap()) is None


def test_empty_strings_are_unset() -> None:
    t = table_of(to("c", prefix="", path="", regex=""))
    assert t.match("h", "/anything", HeaderMap()) is not None


def test_invalid_regexes_are_config_errors_naming_the_route() -> None:
    with pytest.raises(RouterConfigError, match=r"virtual_hosts\[0\]\.routers\[1\]\.match\.regex"):
        table_of(to("a"), to("b", regex="(unclosed"))
    with pytest.raises(RouterConfigError, match=r"routers\[0\]\.match\.headers\[0\]"):
        table_of(to("a", headers=[hdr("x", "[", regex=True)]))
    assert issubclass(RouterConfigError, ValueError)


def test_direct_response_routes_match_like_any_other() -> None:
    t = table_of(
        RouteConfig(
            match=RouteMatchConfig(path="/health"),
            direct_response=DirectResponseConfig(status=200, body="ok"),
        ),
        to("v1", prefix="/"),
    )
    r = t.match("h", "/health", HeaderMap())
    assert r is not None and r.direct_response == DirectResponseConfig(status=200, body="ok")
    assert r.cluster_name == "" and r.choose_cluster() == ""


# -- exact header values: a prefix is not a match ------------------------------------------

# (route value, request value, matches?): each value in a pair is a prefix of the other.
PREFIX_PAIRS = [
    ("canary", "canary", True),
    ("canary", "canary-2", False),  # the route's value is a prefix of the request's
    ("canary-2", "canary", False),  # the request's value is a prefix of the route's
    ("canary", "", False),  # "" is a prefix of everything
    ("", "canary", False),
    ("", "", True),
    ("1.0", "1.0.0", False),
    ("Canary", "canary", False),  # values are case-sensitive
]


@pytest.mark.parametrize(("want", "got", "ok"), PREFIX_PAIRS)
def test_exact_header_value_is_not_a_prefix_match(want: str, got: str, ok: bool) -> None:
    """Catches exact header matching turned into prefix matching, either way round
    (``got.startswith(value)`` or ``value.startswith(got)``), in the route table's
    inlined loop and in every matcher helper of ``matchers.py``."""
    t = table_of(to("exact", headers=[hdr("x-v", want)]), to("other"))
    headers = HeaderMap([("x-v", got)])
    assert cluster_of(t.match("h", "/", headers)) == ("exact" if ok else "other"), (want, got)
    route = t.virtual_hosts[0].routes[0]
    assert route.matches("/", headers) is ok, (want, got)
    matcher = route.header_matchers[0]
    assert matcher.matches(headers) is ok, (want, got)
    assert headers_match([matcher], headers) is ok, (want, got)
    assert headers_match([matcher], {"x-v": got}) is ok, (want, got)


@pytest.mark.parametrize(("want", "got", "ok"), PREFIX_PAIRS[:3])
def test_regex_header_value_is_a_full_match_not_a_prefix(want: str, got: str, ok: bool) -> None:
    """Catches a regex header matcher using ``re.match``/``search`` instead of ``fullmatch``."""
    t = table_of(to("exact", headers=[hdr("x-v", want, regex=True)]), to("other"))
    headers = HeaderMap([("x-v", got)])
    assert cluster_of(t.match("h", "/", headers)) == ("exact" if ok else "other"), (want, got)
    route = t.virtual_hosts[0].routes[0]
    assert route.matches("/", headers) is ok, (want, got)
    assert headers_match(route.header_matchers, headers) is ok, (want, got)


def test_exact_header_routes_with_prefix_related_values_pick_the_right_cluster() -> None:
    """Catches prefix matching of header values: ``canary`` must not take ``canary-2``
    traffic (listed first), and ``canary-2`` must not take ``canary`` traffic."""
    t = table_of(
        to("c1", headers=[hdr("x-v", "canary")]),
        to("c2", headers=[hdr("x-v", "canary-2")]),
        to("default"),
    )
    assert cluster_of(t.match("h", "/", HeaderMap([("x-v", "canary")]))) == "c1"
    assert cluster_of(t.match("h", "/", HeaderMap([("x-v", "canary-2")]))) == "c2"
    assert cluster_of(t.match("h", "/", HeaderMap([("x-v", "canary-")]))) == "default"
    assert cluster_of(t.match("h", "/", HeaderMap([("x-v", "canar")]))) == "default"
    t = table_of(
        to("c2", headers=[hdr("x-v", "canary-2")]),
        to("c1", headers=[hdr("x-v", "canary")]),
        to("default"),
    )
    assert cluster_of(t.match("h", "/", HeaderMap([("x-v", "canary")]))) == "c1"
    assert cluster_of(t.match("h", "/", HeaderMap([("x-v", "canary-2")]))) == "c2"
