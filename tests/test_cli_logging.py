"""``servers[0].default_log_path`` and ``default_log_level`` take effect in ``mosnpy -c``.

Real runs on 127.0.0.1: the log goes to the file (or stream) the config names, from
the first line after the config is loaded; config warnings stay on stdout, the
start-up log.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mosnpy.runtime.logs import log_handler, parse_level
from tests.support import REPO_ROOT, free_port, run_mosnpy, stop_process, wait_for_port


def config(port: int, **server: Any) -> dict[str, Any]:
    return {
        "servers": [
            {
                "graceful_timeout": "1s",
                "routers": [
                    {
                        "router_config_name": "r",
                        "virtual_hosts": [
                            {
                                "name": "h",
                                "routers": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}],
                            }
                        ],
                    }
                ],
                "listeners": [
                    {
                        "name": "web",
                        "address": f"127.0.0.1:{port}",
                        "filter_chains": [
                            {"filters": [{"type": "proxy", "config": {"router_config_name": "r"}}]}
                        ],
                    }
                ],
                **server,
            }
        ],
        "pprof": {"debug": True},  # a key mosnpy names as not supported: on stdout
    }


def wait_for_text(path: Path, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in {path} within {timeout} s:\n{content}")
        time.sleep(0.02)


def test_default_log_path_file_gets_the_log(tmp_path: Path) -> None:
    port = free_port()
    log_file = tmp_path / "logs" / "mosn" / "default.log"  # directories made, as MOSN does
    with run_mosnpy(config(port, default_log_path=str(log_file)), ready_port=port) as proc:
        content = wait_for_text(log_file, f"listener web serving on 127.0.0.1:{port}")
        out = proc.output()
        assert f"logging to {log_file}" in out
        assert "pprof: not supported by mosnpy yet; ignored" in out  # the start-up log
        assert "serving on" not in out
        assert "pprof" not in content
        # logrotate moves the file away: the next line goes to a new file at the path
        log_file.rename(log_file.with_suffix(".log.1"))
        assert proc.stop() == 0
    assert "received SIGTERM" in log_file.read_text()
    assert "stopped" in log_file.read_text()
    assert "received SIGTERM" not in log_file.with_suffix(".log.1").read_text()


@pytest.mark.parametrize(("where", "other"), [("stderr", "stdout"), ("stdout", "stderr")])
def test_default_log_path_stdout_and_stderr(tmp_path: Path, where: str, other: str) -> None:
    port = free_port()
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config(port, default_log_path=where)))
    files = {name: (tmp_path / name).open("wb") for name in ("stdout", "stderr")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mosnpy", "-c", str(cfg)],
        stdout=files["stdout"],
        stderr=files["stderr"],
        stdin=subprocess.DEVNULL,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        wait_for_port(port, timeout=10, proc=proc)
        wait_for_text(tmp_path / where, "serving on")
    finally:
        rc = stop_process(proc, sig=signal.SIGTERM)
        for f in files.values():
            f.close()
    assert rc == 0
    assert "stopped" in (tmp_path / where).read_text()
    assert "serving on" not in (tmp_path / other).read_text()


def test_default_log_level_takes_effect(tmp_path: Path) -> None:
    port = free_port()
    log_file = tmp_path / "mosnpy.log"
    cfg = config(port, default_log_path=str(log_file), default_log_level="WARN")
    with run_mosnpy(cfg, ready_port=port) as proc:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
            assert reply.status == 200
        assert proc.stop() == 0
    assert log_file.exists()
    assert "serving on" not in log_file.read_text()  # INFO lines are below WARN


def test_unopenable_log_path_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config(free_port(), default_log_path=str(tmp_path))))  # a directory
    done = subprocess.run(
        [sys.executable, "-m", "mosnpy", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"mosnpy: bad config {cfg}:\nservers[0].default_log_path: cannot open {str(tmp_path)!r}: "
    )


def test_mosn_level_names() -> None:
    assert [parse_level(n) for n in ("FATAL", "ERROR", "WARN", "info", "DEBUG", "TRACE")] == [
        logging.CRITICAL,
        logging.ERROR,
        logging.WARNING,
        logging.INFO,
        logging.DEBUG,
        logging.DEBUG,
    ]
    with pytest.raises(ValueError, match="unknown log level 'LOUD'"):
        parse_level("LOUD")


def test_log_handler_streams() -> None:
    for path, stream in (("", sys.stdout), ("stdout", sys.stdout), ("stderr", sys.stderr)):
        handler = log_handler(path)
        assert isinstance(handler, logging.StreamHandler) and handler.stream is stream
