"""Virtual host selection from the request's host, in MOSN's priority order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosnpy.config.models import RouterConfig, VirtualHostConfig
from mosnpy.protocol.headers import HeaderMap
from mosnpy.router import RouterConfigError, RouteTable, split_host_port

SETTINGS = settings(max_examples=300, deadline=None, database=None)


def table(*vhosts: tuple[str, list[str]]) -> RouteTable:
    return RouteTable.from_config(
        RouterConfig(
            router_config_name="r",
            virtual_hosts=[VirtualHostConfig(name=n, domains=d) for n, d in vhosts],
        )
    )


def vh_name(t: RouteTable, host: str) -> str | None:
    vh = t.find_virtual_host(host)
    return None if vh is None else vh.name


# -- reference ----------------------------------------------------------------------


def _split(s: str) -> tuple[str, str]:
    host, _, port = s.partition(":")
    return host, port


def reference_select(vhosts: list[tuple[str, list[str]]], request_host: str) -> str | None:
    """Rank every (domain, virtual host) pair for the host; the best rank wins."""
    host, port = _split(request_host.lower())
    best: tuple[tuple[int, int], str] | None = None
    for name, domains in vhosts:
        for domain in domains:
            dhost, dport = _split(domain.lower())
            if dhost == "*" and dport in ("", "*"):
                rank = (5, 0)
            elif not dhost.startswith("*"):
                if dhost != host:
                    continue
                if dport == port:
                    rank = (1, 0)
                elif dport == "*":
                    rank = (2, 0)
                else:
                    continue
            else:
                suffix = dhost[1:]
                if not (len(host) > len(suffix) and host.endswith(suffix)):
                    continue
                if dport == port:
                    rank = (3, -len(suffix))
                elif dport == "*":
                    rank = (4, -len(suffix))
                else:
                    continue
            if best is None or rank < best[0]:
                best = (rank, name)
    return None if best is None else best[1]


LABELS = st.sampled_from(["a", "b", "ab", "foo", "x-1"])
HOSTNAMES = st.lists(LABELS, min_size=1, max_size=3).map(".".join)
PORTS = st.sampled_from(["", "80", "8080"])


@st.composite
def domains(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["exact", "wild-dot", "wild-bare", "default"]))
    if kind == "default":
        return draw(st.sampled_from(["*", "*:*"]))
    host = draw(HOSTNAMES)
    if kind == "wild-dot":
        host = "*." + host
    elif kind == "wild-bare":
        host = "*" + host
    port = draw(st.sampled_from(["", "80", "8080", "*"]))
    return host + (":" + port if port else "")


@st.composite
def vhost_sets(draw: st.DrawFn) -> list[tuple[str, list[str]]]:
    all_domains = draw(st.lists(domains(), max_size=12, unique_by=lambda d: _split(d.lower())))
    # at most one default: "*" and "*:*" are the same domain
    defaults = [d for d in all_domains if d in ("*", "*:*")]
    for extra in defaults[1:]:
        all_domains.remove(extra)
    n = draw(st.integers(1, 4))
    out: list[tuple[str, list[str]]] = [(f"vh{i}", []) for i in range(n)]
    for d in all_domains:
        out[draw(st.integers(0, n - 1))][1].append(d)
    return out


def random_case(data: st.DataObject, s: str) -> str:
    flips = data.draw(st.lists(st.booleans(), min_size=len(s), max_size=len(s)))
    return "".join(c.upper() if f else c for c, f in zip(s, flips, strict=True))


@SETTINGS
@given(vhost_sets(), st.data())
def test_selection_agrees_with_reference(vhosts: list[tuple[str, list[str]]], data: st.DataObject) -> None:
    t = table(*vhosts)
    for _ in range(10):
        host = data.draw(HOSTNAMES)
        port = data.draw(PORTS)
        request_host = random_case(data, host + (":" + port if port else ""))
        assert vh_name(t, request_host) == reference_select(vhosts, request_host), request_host


# -- the order, spelled out ------------------------------------------------------------


def test_priority_order() -> None:
    t = table(
        ("default", ["*"]),
        ("wild-any", ["*.example.com:*"]),
        ("wild-long-any", ["*.api.example.com:*"]),
        ("wild-port", ["*.example.com:8080"]),
        ("exact-any", ["www.example.com:*"]),
        ("exact-port", ["www.example.com:8080"]),
        ("exact-noport", ["www.example.com"]),
    )
    assert vh_name(t, "www.example.com:8080") == "exact-port"
    assert vh_name(t, "www.example.com") == "exact-noport"
    assert vh_name(t, "WWW.Example.COM:9090") == "exact-any"
    assert vh_name(t, "img.example.com:8080") == "wild-port"
    assert vh_name(t, "img.example.com:9090") == "wild-any"
    assert vh_name(t, "v1.api.example.com:8080") == "wild-port"  # port beats suffix length
    assert vh_name(t, "v1.api.example.com:9090") == "wild-long-any"  # longest suffix
    assert vh_name(t, "example.com") == "default"  # the * needs at least one character
    assert vh_name(t, "other.org") == "default"


def test_domain_without_port_only_matches_host_without_port() -> None:
    t = table(("a", ["a.com"]), ("w", ["*.b.com"]), ("d", ["*"]))
    assert vh_name(t, "a.com") == "a"
    assert vh_name(t, "a.com:80") == "d"
    assert vh_name(t, "x.b.com") == "w"
    assert vh_name(t, "x.b.com:80") == "d"


def test_no_default_means_no_virtual_host() -> None:
    t = table(("a", ["a.com:*"]))
    assert vh_name(t, "a.com:1") == "a"
    assert vh_name(t, "b.com") is None
    assert t.match("b.com", "/", HeaderMap()) is None


def test_only_default_skips_parsing() -> None:
    t = table(("d", ["*"]))
    for host in ("", "[::1", "anything:at:all", "A.B:1"):
        assert vh_name(t, host) == "d"


def test_empty_and_odd_hosts_fall_back_to_default() -> None:
    t = table(("a", ["a.com"]), ("v6", ["[::1]:80"]), ("d", ["*"]))
    assert vh_name(t, "") == "d"
    assert vh_name(t, "[::1]:80") == "v6"
    assert vh_name(t, "::1") == "d"
    assert vh_name(t, "[::1") == "d"


def test_wildcard_port_default_and_star_with_port() -> None:
    t = table(("p", ["*:8080"]), ("d", ["*:*"]))
    assert vh_name(t, "anything:8080") == "p"
    assert vh_name(t, "anything:80") == "d"


@pytest.mark.parametrize(
    ("vhosts", "message"),
    [
        ([("a", ["*"]), ("b", ["*:*"])], "second default"),
        ([("a", ["x.com:80"]), ("b", ["X.com:80"])], "already used by virtual host 'a'"),
        ([("a", ["*.x.com"]), ("b", ["*.x.com"])], "already used"),
        ([("a", ["a.*.com"])], "'\\*' may only start"),
        ([("a", ["x.com:http"])], "port must be a number"),
        ([("a", [""])], "empty domain"),
        ([("a", [":80"])], "empty host"),
    ],
)
def test_bad_domains(vhosts: list[tuple[str, list[str]]], message: str) -> None:
    with pytest.raises(RouterConfigError, match=message):
        table(*vhosts)


def test_same_host_different_ports_is_fine() -> None:
    t = table(("a", ["x.com:80"]), ("b", ["x.com:81", "*.x.com:80"]), ("c", ["*.x.com:81"]))
    assert vh_name(t, "x.com:81") == "b"


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("example.com", ("example.com", "")),
        ("example.com:80", ("example.com", "80")),
        ("example.com:", ("example.com", "")),
        ("[::1]:80", ("::1", "80")),
        ("[::1]", ("::1", "")),
        ("::1", ("::1", "")),
        ("[::1", ("[::1", "")),
        ("*.a.com:*", ("*.a.com", "*")),
    ],
)
def test_split_host_port(raw: str, want: tuple[str, str]) -> None:
    assert split_host_port(raw) == want
