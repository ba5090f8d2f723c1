"""Property tests: junk in, only ConfigError out (never a traceback of another kind)."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosnpy.config import ConfigError, MosnConfig, load_config, parse_config

DATA = Path(__file__).parent / "data"
EXAMPLES = [json.loads((DATA / name).read_text()) for name in ("dubbo_client.json", "http1_proxy.json")]

# Keys the loader knows, so random documents reach deep into the schema.
KEYS = sorted(
    {f.name for cls in (MosnConfig,) for f in attrs.fields(cls)}
    | {"servers", "listeners", "routers", "virtual_hosts", "filter_chains", "filters", "type", "config"}
    | {"address", "name", "match", "route", "prefix", "regex", "cluster_name", "weighted_clusters", "cluster"}
    | {"weight", "timeout", "hosts", "clusters", "header", "key", "value", "socket_address", "port_value"}
    | {"pprof", "downstream_protocol", "router_config_name", "extend_config", "sub_protocol", "network"}
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 0, 1, 65535, 65536, 2**63, -(10**400), 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["X", "2s", "1m30s", "-1s", "0", "(", "127.0.0.1:80", ":70000", "[::1]:1", "unix", "*"]),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=6), st.integers(0, 3))
junk = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=30,
)


def only_config_errors(doc: Any) -> None:
    try:
        result = parse_config(doc)
    except ConfigError as e:
        assert e.errors
        for error in e.errors:
            assert isinstance(error, ConfigError)
            assert error.path and isinstance(error.problem, str)
        assert str(e).count("\n") == len(e.errors) - 1
    else:
        assert isinstance(result, MosnConfig)


@settings(max_examples=300, deadline=None)
@given(junk)
def test_junk_documents_raise_only_config_error(doc: Any) -> None:
    only_config_errors(doc)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += paths(value, (*prefix, i))
    return found


@st.composite
def mutated_examples(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(doc)))
        if not where:
            return draw(junk)
        parent = doc
        for step in where[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[where[-1]]
        else:
            parent[where[-1]] = draw(junk)
    return doc


@settings(max_examples=300, deadline=None)
@given(mutated_examples())
def test_mutated_examples_raise_only_config_error(doc: Any) -> None:
    only_config_errors(doc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(st.text(max_size=200), junk.map(json.dumps), junk.map(lambda d: json.dumps(d)[:-1])),
    st.sampled_from([".json", ".yaml", ".yml", ".conf"]),
)
def test_junk_files_raise_only_config_error(text: str, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / f"config{suffix}"
        file.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_config(file)
        except ConfigError:
            pass
