"""CLI and config polish: ``--version``, ``--list``, plugin hints, empty configs, bind
failures, the example's SIGTERM, README and LICENSE (issue 13, item 7)."""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

import httpx
import pytest

import mosnpy
import mosnpy.protocol.registry as protocol_registry
from mosnpy import cli
from mosnpy.cli import _EXTENSION_POINTS
from mosnpy.config import ConfigError, load_config, parse_config
from mosnpy.protocol.registry import lookup, plugin_hint
from mosnpy.registry import Registry, UnknownNameError
from mosnpy.runtime import MosnServer
from tests.support import LOCALHOST, REPO_ROOT, stop_process

MOSNPY = Path(sys.executable).parent / "mosnpy"  # the console script next to this python
TIMEOUT = 30.0


def mosnpy_cmd(*args: str, console_script: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [str(MOSNPY)] if console_script else [sys.executable, "-m", "mosnpy"]
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO_ROOT, check=False
    )


def listener_config(port: int, *, protocol: str = "Http1") -> dict[str, Any]:
    return {
        "servers": [
            {
                "routers": [
                    {
                        "router_config_name": "r",
                        "virtual_hosts": [
                            {
                                "name": "all",
                                "domains": ["*"],
                                "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}],
                            }
                        ],
                    }
                ],
                "listeners": [
                    {
                        "name": "http",
                        "address": f"{LOCALHOST}:{port}",
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "type": "proxy",
                                        "config": {
                                            "downstream_protocol": protocol,
                                            "router_config_name": "r",
                                        },
                                    }
                                ]
                            }
                        ],
                    }
                ],
            }
        ],
        "cluster_manager": {
            "clusters": [
                {
                    "name": "c",
                    "type": "SIMPLE",
                    "lb_type": "LB_ROUNDROBIN",
                    "hosts": [{"address": "127.0.0.1:1"}],
                }
            ]
        },
    }


# --version, --list -----------------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    done = mosnpy_cmd("--version")
    assert done.returncode == 0, done.stderr
    # (a mypyc build adds how many modules run compiled: " (N modules compiled)")
    assert done.stdout.split(" (")[0].rstrip("\n") == f"mosnpy {version('mosnpy')}"
    assert version("mosnpy") == mosnpy.__version__


def test_list_shows_every_entry_point_with_its_distribution() -> None:
    done = mosnpy_cmd("--list", console_script=False)
    assert done.returncode == 0, done.stderr
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in done.stdout.splitlines():
        heading = re.fullmatch(r"[a-z ]+ \((mosnpy\.\w+)\):", line)
        if heading:
            current = sections.setdefault(heading.group(1), {})
        elif line.strip() != "(none)":
            name, dist = line.split()
            current[name] = dist
    groups = [
        "mosnpy.protocols",
        "mosnpy.xprotocols",
        "mosnpy.network_filters",
        "mosnpy.stream_filters",
        "mosnpy.load_balancers",
        "mosnpy.cluster_types",
        "mosnpy.health_checkers",
    ]
    assert set(groups) <= set(sections)
    for group in sections:
        expected = {ep.name: ep.dist.name for ep in entry_points(group=group) if ep.dist is not None}
        assert sections[group] == expected, group
    # built-ins come from mosnpy itself, plugins from their own distributions
    assert sections["mosnpy.protocols"]["Http1"] == "mosnpy"
    assert sections["mosnpy.network_filters"]["proxy"] == "mosnpy"
    assert sections["mosnpy.load_balancers"]["LB_ROUNDROBIN"] == "mosnpy"
    assert sections["mosnpy.cluster_types"]["SIMPLE"] == "mosnpy"
    assert sections["mosnpy.health_checkers"]["tcp"] == "mosnpy"
    assert sections["mosnpy.stream_filters"]["fault"] == "mosnpy"
    assert sections["mosnpy.xprotocols"]["dubbo"] == "mosnpy-dubbo"
    assert sections["mosnpy.xprotocols"]["boltv2"] == "mosnpy-bolt"


def test_config_is_still_required_to_run() -> None:
    done = mosnpy_cmd()
    assert done.returncode == 2
    assert "the following arguments are required: -c/--config" in done.stderr


def test_registry_origin_names_the_distribution_or_code() -> None:
    registry: Registry[object] = Registry("load balancer", "mosnpy.load_balancers")
    assert registry.origin("LB_RANDOM") == "mosnpy"
    registry.register("mine", object())
    assert registry.origin("mine") is None
    with pytest.raises(UnknownNameError):
        registry.origin("nosuch")
    assert [heading for heading, _ in _EXTENSION_POINTS][:2] == ["protocols", "xprotocol codecs"]


# the plugin hint ---------------------------------------------------------------------


def test_plugin_hint_names_the_distribution() -> None:
    assert plugin_hint("dubbo") == "install the mosnpy-dubbo plugin (pip install -e plugins/mosnpy-dubbo)"
    assert plugin_hint("bolt") == "install the mosnpy-bolt plugin (pip install -e plugins/mosnpy-bolt)"
    assert plugin_hint("boltv2") == plugin_hint("bolt")
    assert plugin_hint("Htp1") == ""


@pytest.fixture
def without_xprotocols(monkeypatch: pytest.MonkeyPatch) -> None:
    """The protocol registry as if no xprotocol plugin were installed."""
    monkeypatch.setattr(protocol_registry, "XPROTOCOLS", Registry("xprotocol", "mosnpy.tests.no_such_group"))


@pytest.mark.usefixtures("without_xprotocols")
def test_missing_plugin_protocol_gets_the_hint() -> None:
    with pytest.raises(UnknownNameError) as info:
        lookup("dubbo")
    text = str(info.value)
    assert re.fullmatch(
        r"unknown protocol 'dubbo' \(known: [^)]*\); "
        r"install the mosnpy-dubbo plugin \(pip install -e plugins/mosnpy-dubbo\)",
        text,
    ), text
    assert "dubbo" not in info.value.known
    with pytest.raises(UnknownNameError) as plain:
        lookup("Htp1")
    assert str(plain.value).endswith(")")  # no hint for a name no known plugin has


@pytest.mark.usefixtures("without_xprotocols")
def test_missing_plugin_protocol_hint_reaches_the_config_error() -> None:
    config = parse_config(listener_config(0, protocol="boltv2"))
    with pytest.raises(ConfigError) as info:
        MosnServer(config)
    [error] = info.value.errors
    assert error.path == "servers[0].listeners[0].filter_chains[0].filters[0].config.downstream_protocol"
    assert error.problem.startswith("unknown protocol 'boltv2' (known: ")
    assert error.problem.endswith("; install the mosnpy-bolt plugin (pip install -e plugins/mosnpy-bolt)")


# configs with nothing to serve ---------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({}, "servers"),
        ({"servers": [{"default_log_level": "INFO"}]}, "servers[0].listeners"),
        ({"servers": [{"listeners": []}], "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}}, "servers[0].listeners"),
    ],
)  # fmt: skip
def test_config_without_listeners_is_refused(tmp_path: Path, doc: dict[str, Any], path: str) -> None:
    file = tmp_path / "config.json"
    file.write_text(json.dumps(doc))
    load_config(file)  # a library user may still load it
    with pytest.raises(ConfigError) as info:
        load_config(file, require_listeners=True)
    assert info.value.path == path
    done = mosnpy_cmd("-c", str(file))  # bounded: without the check it would serve forever
    assert done.returncode == 1
    assert done.stderr == (
        f"mosnpy: bad config {file}:\n{path}: no listeners: nothing to serve "
        "(a config needs at least one servers[].listeners[] entry)\n"
    )


# bind failures ----------------------------------------------------------------------------


def test_bind_failure_names_the_listener_and_address(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOCALHOST, 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        file = tmp_path / "config.json"
        file.write_text(json.dumps(listener_config(port)))
        done = mosnpy_cmd("-c", str(file))
    assert done.returncode == 1
    reason = f"[Errno {errno.EADDRINUSE}] {os.strerror(errno.EADDRINUSE)}"
    assert done.stderr == f"mosnpy: listener 'http' cannot bind {LOCALHOST}:{port}: {reason}\n"


# the example's SIGTERM ------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            out.update(int(c) for c in (task / "children").read_text().split())
    return out


def test_sigterm_to_the_example_stops_its_mosnpy_child(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    child = 0
    with log.open("wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-u", str(REPO_ROOT / "examples/http_proxy/run.py"), "--any-port"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    try:
        deadline = time.monotonic() + TIMEOUT
        serving = None
        while serving is None:
            serving = re.search(
                r"mosnpy \(pid (\d+)\) is serving on (http://127\.0\.0\.1:\d+)", log.read_text()
            )
            assert run.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        child, url = int(serving.group(1)), serving.group(2)
        assert child in _children(run.pid)
        with httpx.Client(trust_env=False, timeout=5) as client:
            assert client.get(url + "/").text.startswith("hello from stable-")
        run.send_signal(signal.SIGTERM)
        status = run.wait(timeout=20)
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), f"mosnpy child {child} outlived run.py\n{log.read_text()}"
        assert status == 0, log.read_text()
        assert "SIGTERM: stopping" in log.read_text()
    finally:
        stop_process(run)
        if child and _alive(child) and b"mosnpy" in Path(f"/proc/{child}/cmdline").read_bytes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


# README and LICENSE --------------------------------------------------------------------------


def test_readme_commands_name_the_venv_script() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert ".venv/bin/mosnpy -c examples/http_proxy/config.json --log-level info" in readme
    assert not re.search(r"^mosnpy ", readme, re.MULTILINE)  # not on PATH after the setup line


def test_license_is_apache_2() -> None:
    text = (REPO_ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "APPENDIX: How to apply the Apache License to your work." in text
    assert "license = Apache-2.0" in (REPO_ROOT / "setup.cfg").read_text()


def test_tune_gc_freezes_what_is_loaded_and_collects_the_young_less_often() -> None:
    before = gc.get_threshold()
    try:
        cli.tune_gc()
        assert gc.get_threshold() == (cli.GC_YOUNG_THRESHOLD, *before[1:])
        assert before[0] < cli.GC_YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0  # the modules loaded so far
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
