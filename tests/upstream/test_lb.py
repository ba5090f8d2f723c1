"""Hosts, addresses and the built-in load balancers."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from importlib.metadata import entry_points

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosnpy.config.models import HostConfig
from mosnpy.upstream.host import Host, parse_address
from mosnpy.upstream.lb import LbContext, LeastRequest, LoadBalancer, Random, RoundRobin, WeightedRoundRobin
from mosnpy.upstream.registry import LOAD_BALANCERS

SETTINGS = settings(max_examples=200, deadline=None, database=None)
# Statistical tests: a fixed example sequence and seeded RNGs, so a run is reproducible.
STATS = settings(max_examples=20, deadline=None, database=None, derandomize=True)

ALL_LBS: list[type[LoadBalancer]] = [RoundRobin, WeightedRoundRobin, Random, LeastRequest]


def make_hosts(weights: Sequence[int], healthy: Sequence[bool] | None = None) -> list[Host]:
    hosts = [Host(f"10.0.0.{i}:80", weight=w) for i, w in enumerate(weights)]
    if healthy is not None:
        for h, ok in zip(hosts, healthy, strict=True):
            h.healthy = ok
    return hosts


def within(count: int, n: int, p: float) -> bool:
    """``count`` out of ``n`` is within 6 standard deviations of ``n * p``."""
    return abs(count - n * p) <= 6 * math.sqrt(n * p * (1 - p)) + 1


@st.composite
def health_masks(draw: st.DrawFn, n: int, at_least_one: bool = True) -> list[bool]:
    mask = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if at_least_one and not any(mask):
        mask[draw(st.integers(0, n - 1))] = True
    return mask


# -- addresses and hosts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "want"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("localhost:0", ("localhost", 0)),
        ("backend.svc.cluster.local:65535", ("backend.svc.cluster.local", 65535)),
        ("[::1]:2045", ("::1", 2045)),
        ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
    ],
)
def test_parse_address(addr: str, want: tuple[str, int]) -> None:
    assert parse_address(addr) == want


@pytest.mark.parametrize(
    "addr",
    [
        "",
        "127.0.0.1",
        "127.0.0.1:",
        ":80",
        "host:http",
        "host:65536",
        "host:-1",
        "host:+80",
        "host:\uff18\uff10",  # full-width digits
        "host:000000080",
        "::1:80",
        "[::1]",
        "[::1]80",
        "[::1:80",
        "/var/run/sock",
        "a b:80",
        "[]:80",
    ],
)
def test_parse_address_rejects_junk(addr: str) -> None:
    with pytest.raises(ValueError, match="bad address"):
        parse_address(addr)


@SETTINGS
@given(
    st.one_of(
        st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
        st.ip_addresses(v=4).map(str),
    ),
    st.integers(0, 65535),
)
def test_parse_address_round_trips(host: str, port: int) -> None:
    assert parse_address(f"{host}:{port}") == (host, port)


@SETTINGS
@given(st.ip_addresses(v=6), st.integers(0, 65535))
def test_parse_address_round_trips_ipv6(ip: object, port: int) -> None:
    assert parse_address(f"[{ip}]:{port}") == (str(ip), port)


def test_host_from_config_and_defaults() -> None:
    h = Host.from_config(HostConfig(address="127.0.0.1:8080", hostname="a", weight=5, metadata={"zone": "x"}))
    assert (h.address, h.hostname, h.weight, dict(h.metadata)) == ("127.0.0.1:8080", "a", 5, {"zone": "x"})
    assert h.healthy is True and h.active_requests == 0
    assert not hasattr(h, "__dict__")  # slots
    u = Host("/run/backend.sock")
    assert u.weight == 1 and dict(u.metadata) == {}
    assert "unhealthy" in repr(Host("a:1", healthy=False))


@pytest.mark.parametrize("weight", [0, -1, True, 1.5])
def test_host_weight_must_be_positive_int(weight: object) -> None:
    with pytest.raises(ValueError, match="weight"):
        Host("a:1", weight=weight)  # type: ignore[arg-type]


def test_host_address_required() -> None:
    with pytest.raises(ValueError):
        Host("")


# -- shared behaviour --------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_LBS)
def test_no_hosts_or_no_healthy_host_gives_none(cls: type[LoadBalancer]) -> None:
    assert cls([], {}).choose() is None
    lb = cls(make_hosts([1, 2, 3], [False, False, False]), {})
    assert all(lb.choose() is None for _ in range(20))


@pytest.mark.parametrize("cls", ALL_LBS)
def test_health_is_read_live(cls: type[LoadBalancer]) -> None:
    hosts = make_hosts([1, 1, 2])
    lb = cls(hosts, {})
    hosts[0].healthy = hosts[2].healthy = False
    assert {lb.choose() for _ in range(50)} == {hosts[1]}
    hosts[1].healthy = False
    assert lb.choose() is None
    hosts[2].healthy = True
    assert lb.choose() is hosts[2]


@pytest.mark.parametrize("cls", ALL_LBS)
def test_protocol_shape(cls: type[LoadBalancer]) -> None:
    hosts = make_hosts([1, 2])
    lb: LoadBalancer = cls(hosts, {})
    assert list(lb.hosts) == hosts
    assert lb.choose(LbContext(headers={"x": "1"}, downstream_address="1.2.3.4:5")) in hosts


@SETTINGS
@given(st.data())
def test_unhealthy_hosts_are_never_picked(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(ALL_LBS))
    weights = data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=8))
    mask = data.draw(health_masks(len(weights)))
    hosts = make_hosts(weights, mask)
    for h in hosts:
        h.active_requests = data.draw(st.integers(0, 5))
    kwargs = {} if cls is RoundRobin or cls is WeightedRoundRobin else {"rng": random.Random(0)}
    lb = cls(hosts, {}, **kwargs)
    for _ in range(3 * len(hosts)):
        chosen = lb.choose()
        assert chosen is not None and chosen.healthy


# -- round robin --------------------------------------------------------------------------


@SETTINGS
@given(st.integers(1, 8).flatmap(lambda n: health_masks(n)), st.integers(1, 5), st.integers(0, 20))
def test_round_robin_visits_healthy_hosts_equally(mask: list[bool], k: int, warmup: int) -> None:
    hosts = make_hosts([1] * len(mask), mask)
    lb = RoundRobin(hosts, {})
    for _ in range(warmup):  # any starting point
        lb.choose()
    healthy = [h for h in hosts if h.healthy]
    counts = Counter(lb.choose() for _ in range(k * len(healthy)))
    assert counts == Counter({h: k for h in healthy})


def test_round_robin_order() -> None:
    hosts = make_hosts([1, 1, 1], [True, False, True])
    lb = RoundRobin(hosts, {})
    assert [lb.choose() for _ in range(4)] == [hosts[0], hosts[2], hosts[0], hosts[2]]


def test_round_robin_exact_order_starts_at_the_first_host_and_goes_forward() -> None:
    """Catches a reversed cursor (a, c, b, ...) or a wrong starting host, which the
    symmetric health masks above cannot tell apart from the right order."""
    hosts = make_hosts([1, 1, 1])
    a, b, c = hosts
    lb = RoundRobin(hosts, {})
    assert [lb.choose() for _ in range(7)] == [a, b, c, a, b, c, a]


def test_round_robin_skips_a_host_that_turns_unhealthy_and_keeps_going_forward() -> None:
    """Catches a reversed cursor, or a cursor that restarts or stalls after a skip."""
    hosts = make_hosts([1, 1, 1, 1])
    a, b, c, d = hosts
    lb = RoundRobin(hosts, {})
    assert [lb.choose(), lb.choose()] == [a, b]
    c.healthy = False  # the next host in line
    assert [lb.choose() for _ in range(5)] == [d, a, b, d, a]
    c.healthy = True
    assert [lb.choose() for _ in range(4)] == [b, c, d, a]
    a.healthy = False  # wrapping round must skip it too
    assert [lb.choose() for _ in range(4)] == [b, c, d, b]


# -- weighted round robin -------------------------------------------------------------


def picks_of(lb: WeightedRoundRobin, hosts: list[Host], n: int) -> list[int]:
    out = []
    for _ in range(n):
        chosen = lb.choose()
        assert chosen is not None
        out.append(hosts.index(chosen))
    return out


WRR_WEIGHTS = st.lists(st.integers(1, 12), min_size=1, max_size=7)


@SETTINGS
@given(WRR_WEIGHTS)
def test_wrr_one_cycle_gives_exactly_the_weights_and_repeats(weights: list[int]) -> None:
    hosts = make_hosts(weights)
    lb = WeightedRoundRobin(hosts, {})
    total = sum(weights)
    first = picks_of(lb, hosts, total)
    assert Counter(first) == Counter(dict(enumerate(weights)))
    assert picks_of(lb, hosts, total) == first  # the schedule is periodic


@SETTINGS
@given(WRR_WEIGHTS, st.integers(0, 2))
def test_wrr_is_smooth(weights: list[int], cycles: int) -> None:
    """From a cycle's start, after t picks no host has more than ceil(t*w/W) picks.

    This holds for windows that start a cycle (any cycle, as the schedule repeats), not
    for windows that start anywhere: weights 5,1,1 give the cycle ``a a b a c a a``, so
    ``a`` gets 4 picks in a row across the cycle boundary, where ceil(4*5/7) = 3.
    """
    hosts = make_hosts(weights)
    lb = WeightedRoundRobin(hosts, {})
    total = sum(weights)
    picks_of(lb, hosts, cycles * total)
    seq = picks_of(lb, hosts, total)
    for i, w in enumerate(weights):
        count = 0
        for t in range(1, total + 1):
            count += seq[t - 1] == i
            assert count <= math.ceil(t * w / total), (i, t, seq)


def test_wrr_interleaves() -> None:
    hosts = make_hosts([5, 1, 1])
    assert picks_of(WeightedRoundRobin(hosts, {}), hosts, 7) == [0, 0, 1, 0, 2, 0, 0]


def test_wrr_exact_sequence_with_distinct_weights() -> None:
    """Catches a changed tie-break (last host instead of first), a reversed scan, or a
    winner docked by its own weight instead of the healthy total: each gives another
    order for weights 1, 2, 3 (nginx's smooth WRR gives c b a c b c, then repeats)."""
    hosts = make_hosts([1, 2, 3])
    assert picks_of(WeightedRoundRobin(hosts, {}), hosts, 12) == [2, 1, 0, 2, 1, 2] * 2
    hosts = make_hosts([3, 2, 1])
    assert picks_of(WeightedRoundRobin(hosts, {}), hosts, 6) == [0, 1, 0, 2, 1, 0]


def test_wrr_exact_sequence_when_a_host_turns_unhealthy() -> None:
    """Catches an unhealthy host still scored or counted in the total W: with weights
    4, 2, 1 and the heaviest down, b and c must alternate as 2:1 from the scores held."""
    hosts = make_hosts([4, 2, 1])
    lb = WeightedRoundRobin(hosts, {})
    assert picks_of(lb, hosts, 7) == [0, 1, 0, 2, 0, 1, 0]
    hosts[0].healthy = False
    assert picks_of(lb, hosts, 6) == [1, 2, 1, 1, 2, 1]


@SETTINGS
@given(WRR_WEIGHTS.flatmap(lambda ws: st.tuples(st.just(ws), health_masks(len(ws)))))
def test_wrr_shares_among_healthy_hosts(case: tuple[list[int], list[bool]]) -> None:
    weights, mask = case
    hosts = make_hosts(weights, mask)
    lb = WeightedRoundRobin(hosts, {})
    healthy_total = sum(w for w, ok in zip(weights, mask, strict=True) if ok)
    counts = Counter(picks_of(lb, hosts, healthy_total))
    assert counts == Counter({i: w for i, (w, ok) in enumerate(zip(weights, mask, strict=True)) if ok})


def test_wrr_with_equal_weights_is_round_robin() -> None:
    hosts = make_hosts([3, 3, 3])
    lb = WeightedRoundRobin(hosts, {})
    assert picks_of(lb, hosts, 6) == [0, 1, 2, 0, 1, 2]


# -- random ------------------------------------------------------------------------------


@STATS
@given(st.integers(1, 6).flatmap(lambda n: health_masks(n)), st.integers(0, 2**32))
def test_random_is_uniform_over_healthy_hosts(mask: list[bool], seed: int) -> None:
    hosts = make_hosts([1] * len(mask), mask)
    lb = Random(hosts, {}, rng=random.Random(seed))
    n = 6000
    counts = Counter(lb.choose() for _ in range(n))
    healthy = [h for h in hosts if h.healthy]
    assert set(counts) == set(healthy)
    for h in healthy:
        assert within(counts[h], n, 1 / len(healthy)), counts


def test_random_ignores_weights_like_mosn() -> None:
    hosts = make_hosts([1, 9])
    lb = Random(hosts, {}, rng=random.Random(7))
    n = 4000
    assert within(Counter(lb.choose() for _ in range(n))[hosts[0]], n, 0.5)


# -- least request -------------------------------------------------------------------------


def reference_p2c(hosts: list[Host], choices: int, rng: random.Random) -> Host:
    drawn = [hosts[rng.randrange(len(hosts))] for _ in range(choices)]
    return min(drawn, key=lambda h: h.active_requests)  # min keeps the first on ties


@SETTINGS
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=8),
    st.integers(1, 4),
    st.integers(0, 2**32),
)
def test_least_request_is_power_of_choices(loads: list[int], choices: int, seed: int) -> None:
    hosts = make_hosts([1] * len(loads))
    for h, load in zip(hosts, loads, strict=True):
        h.active_requests = load
    lb = LeastRequest(hosts, {"choice_count": choices}, rng=random.Random(seed))
    ref_rng = random.Random(seed)
    for _ in range(20):
        assert lb.choose() is reference_p2c(hosts, choices, ref_rng)


def test_least_request_prefers_less_loaded_hosts() -> None:
    hosts = make_hosts([1, 1, 1, 1])
    for h, load in zip(hosts, [0, 5, 5, 5], strict=True):
        h.active_requests = load
    n = 8000
    lb = LeastRequest(hosts, {}, rng=random.Random(1))
    counts = Counter(lb.choose() for _ in range(n))
    # the idle host wins unless both draws miss it: 1 - (3/4)**2 = 7/16
    assert within(counts[hosts[0]], n, 7 / 16)
    many = LeastRequest(hosts, {"choice_count": 40}, rng=random.Random(2))
    assert all(many.choose() is hosts[0] for _ in range(200))


def test_least_request_keeps_loads_even() -> None:
    """Requests that never finish: P2C keeps the spread small, random does not."""

    def spread(lb_cls: type[LeastRequest] | type[Random]) -> int:
        hosts = make_hosts([1] * 8)
        lb = lb_cls(hosts, {}, rng=random.Random(3))
        for _ in range(2000):
            chosen = lb.choose()
            assert chosen is not None
            chosen.active_requests += 1
        loads = [h.active_requests for h in hosts]
        return max(loads) - min(loads)

    assert spread(LeastRequest) <= 6 < spread(Random)


@STATS
@given(st.integers(1, 6).flatmap(lambda n: health_masks(n)), st.integers(0, 2**32))
def test_least_request_uniform_over_healthy_when_idle(mask: list[bool], seed: int) -> None:
    hosts = make_hosts([1] * len(mask), mask)
    lb = LeastRequest(hosts, {}, rng=random.Random(seed))
    n = 6000
    counts = Counter(lb.choose() for _ in range(n))
    healthy = [h for h in hosts if h.healthy]
    assert set(counts) == set(healthy)
    for h in healthy:
        assert within(counts[h], n, 1 / len(healthy)), counts


@pytest.mark.parametrize(
    ("loads", "bias", "want"),
    [
        ((0, 0), 1.0, (1 / 4, 3 / 4)),  # idle: plain weights 1:3
        ((0, 2), 1.0, (1 / 2, 1 / 2)),  # 1/1 vs 3/3
        ((0, 2), 0.0, (1 / 4, 3 / 4)),  # bias 0 ignores load
        ((3, 0), 2.0, (1 / 49, 48 / 49)),  # 1/16 vs 3/1
    ],
)
def test_least_request_weighted(loads: tuple[int, int], bias: float, want: tuple[float, float]) -> None:
    hosts = make_hosts([1, 3])
    for h, load in zip(hosts, loads, strict=True):
        h.active_requests = load
    lb = LeastRequest(hosts, {"active_request_bias": bias}, rng=random.Random(5))
    n = 8000
    counts = Counter(lb.choose() for _ in range(n))
    for h, p in zip(hosts, want, strict=True):
        assert within(counts[h], n, p), counts


@pytest.mark.parametrize(
    "config",
    [{"choice_count": 0}, {"choice_count": "2"}, {"choice_count": True}, {"active_request_bias": -1}],
)
def test_least_request_config_errors(config: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="lb_config"):
        LeastRequest(make_hosts([1]), config)


# -- registry --------------------------------------------------------------------------------


BUILTINS: dict[str, type[LoadBalancer]] = {
    "LB_ROUNDROBIN": RoundRobin,
    "LB_WEIGHTED_ROUNDROBIN": WeightedRoundRobin,
    "LB_RANDOM": Random,
    "LB_LEAST_REQUEST": LeastRequest,
}


def test_registry_identity() -> None:
    assert LOAD_BALANCERS.kind == "load balancer"
    assert LOAD_BALANCERS.group == "mosnpy.load_balancers"


def test_builtins_arrive_through_entry_points() -> None:
    assert entry_points(group="mosnpy.load_balancers"), (
        "install mosnpy (pip install -e .) for its entry points"
    )
    for name, cls in BUILTINS.items():
        assert LOAD_BALANCERS.get(name) is cls
    with pytest.raises(KeyError, match="LB_ROUNDROBIN"):
        LOAD_BALANCERS.get("LB_NOPE")
