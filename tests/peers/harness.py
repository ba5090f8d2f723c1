"""Start and drive the third-party RPC peers in tests/peers (see README.md there).

    proc = start_provider("dubbo", 0)          # waits for "READY <port>", 20 s at most
    try:
        summary = run_consumer("dubbo", proc.port, calls=200, concurrency=20)
        assert summary["ok"] == 200, summary
    finally:
        stop(proc)

To act while calls are running, :func:`start_consumer` (``report_first_ok=True``),
:func:`wait_for_first_ok` (a call was answered) and :func:`consumer_summary`.

Provider kinds: ``dubbo`` and ``bolt`` (sofa-rpc-node, Node), ``anthunder`` (Python).
Consumer kinds: ``dubbo`` and ``bolt`` (sofa-rpc-node), ``py-dubbo`` (dubbo-ssl-python,
talks to the ``dubbo`` provider) and ``anthunder`` (talks to the ``anthunder`` provider);
:data:`PROVIDER_FOR` maps a consumer kind to the provider kind it talks to.

Nothing here installs anything: a missing ``node_modules`` or Python package raises
:class:`PeersNotInstalledError` naming the command to run.  Everything listens on and
connects to 127.0.0.1 only, every wait is bounded, and processes are stopped by their
own pid.
"""

from __future__ import annotations

import importlib.util
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PEERS_DIR = Path(__file__).resolve().parent
NPM_HINT = "run `npm ci --no-audit --no-fund` in tests/peers"
PIP_HINT = "run `pip install -r tests/peers/requirements.txt`"

# kind -> (runtime, script)
PROVIDERS: dict[str, tuple[str, str]] = {
    "dubbo": ("node", "dubbo_provider.js"),
    "bolt": ("node", "bolt_provider.js"),
    "anthunder": ("python", "anthunder_provider.py"),
}
CONSUMERS: dict[str, tuple[str, str]] = {
    "dubbo": ("node", "dubbo_consumer.js"),
    "bolt": ("node", "bolt_consumer.js"),
    "py-dubbo": ("python", "py_dubbo_consumer.py"),
    "anthunder": ("python", "anthunder_consumer.py"),
}
PROVIDER_FOR: dict[str, str] = {
    "dubbo": "dubbo",
    "bolt": "bolt",
    "py-dubbo": "dubbo",
    "anthunder": "anthunder",
}

# What each script needs: node packages (under tests/peers/node_modules) or Python modules.
_NODE_PACKAGES = ("sofa-rpc-node", "sofa-bolt-node", "dubbo-remoting")
_PY_MODULES: dict[str, tuple[str, ...]] = {
    "py_dubbo_consumer.py": ("dubbo_ssl",),
    "anthunder_provider.py": ("anthunder", "google.protobuf"),
    "anthunder_consumer.py": ("anthunder", "google.protobuf"),
}

START_TIMEOUT = 20.0
PROVIDER_MAX_SECONDS = 900


class PeerError(RuntimeError):
    """A peer did not start, or a consumer gave no summary."""


class PeersNotInstalledError(PeerError):
    """The peers' packages are missing; the message says what to run."""


class ProviderProcess(subprocess.Popen[bytes]):
    """A running provider; ``port`` is the one it printed in its READY line."""

    port: int = 0
    kind: str = ""
    stderr_path: Path | None = None


def check_installed(kind: str, *, consumer: bool = False, peers_dir: Path = PEERS_DIR) -> None:
    """Raise :class:`PeersNotInstalledError` unless ``kind``'s script can run here."""
    table = CONSUMERS if consumer else PROVIDERS
    if kind not in table:
        raise ValueError(f"unknown {'consumer' if consumer else 'provider'} kind {kind!r}: {sorted(table)}")
    runtime, script = table[kind]
    if runtime == "node":
        if shutil.which("node") is None:
            raise PeersNotInstalledError(f"`node` is not on PATH (Node.js >= 18 needed); then {NPM_HINT}")
        missing = [
            p for p in _NODE_PACKAGES if not (peers_dir / "node_modules" / p / "package.json").is_file()
        ]
        if missing:
            raise PeersNotInstalledError(
                f"{peers_dir / 'node_modules'} lacks {', '.join(missing)}: {NPM_HINT}"
            )
    else:
        missing = [m for m in _PY_MODULES.get(script, ()) if not _has_module(m)]
        if missing:
            raise PeersNotInstalledError(
                f"Python {sys.executable} lacks {', '.join(missing)}: {PIP_HINT} with that interpreter"
            )


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _argv(runtime: str, script: str) -> list[str]:
    path = str(PEERS_DIR / script)
    if runtime == "node":
        node = shutil.which("node")
        if node is None:
            raise PeersNotInstalledError(f"`node` is not on PATH; {NPM_HINT}")
        return [node, path]
    return [sys.executable, path]


def _tail(path: Path | None, limit: int = 4000) -> str:
    if path is None:
        return ""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def start_provider(kind: str, port: int, *, timeout: float = START_TIMEOUT) -> ProviderProcess:
    """Start provider ``kind`` on 127.0.0.1:``port`` (0: any free port) and wait for READY.

    Raises :class:`PeerError` with the provider's output when it exits or stays silent
    for ``timeout`` seconds (then it is stopped).  The provider also exits when its
    stdin closes (:func:`stop` closes it) and after PROVIDER_MAX_SECONDS.
    """
    check_installed(kind)
    runtime, script = PROVIDERS[kind]
    argv = [
        *_argv(runtime, script),
        "--port",
        str(port),
        "--exit-on-stdin-eof",
        "--max-seconds",
        str(PROVIDER_MAX_SECONDS),
    ]
    fd, name = tempfile.mkstemp(prefix=f"mosnpy-peer-{kind}-", suffix=".stderr")
    stderr_path = Path(name)
    with os.fdopen(fd, "wb") as err_file:
        proc = ProviderProcess(
            argv,
            cwd=PEERS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err_file,
        )
    proc.kind = kind
    proc.stderr_path = stderr_path
    try:
        line = _read_ready(proc, timeout)
    except BaseException:
        stop(proc)
        raise
    proc.port = int(line.split()[1])
    return proc


def _read_ready(proc: ProviderProcess, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerError(
                    f"{proc.kind} provider printed no READY line within {timeout:.0f} s; "
                    f"stdout={buf!r} stderr:\n{_tail(proc.stderr_path)}"
                )
            if not sel.select(min(left, 0.5)):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
    line = buf.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    parts = line.split()
    if len(parts) != 2 or parts[0] != "READY" or not parts[1].isdigit():
        proc.wait(timeout=5)
        raise PeerError(
            f"{proc.kind} provider did not start (exit code {proc.returncode}); "
            f"stdout={buf!r} stderr:\n{_tail(proc.stderr_path)}"
        )
    return line


def stop(proc: subprocess.Popen[Any], *, timeout: float = 5.0) -> int | None:
    """Stop a provider by its own pid: close stdin, SIGTERM, then SIGKILL; reap it."""
    for stream in (proc.stdin,):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    if proc.stdout is not None:
        proc.stdout.close()
    path = getattr(proc, "stderr_path", None)
    if isinstance(path, Path):
        try:
            path.unlink()
        except OSError:
            pass
    return proc.returncode


def provider_stderr(proc: ProviderProcess) -> str:
    """The provider's stderr so far (the end of it)."""
    return _tail(proc.stderr_path)


#: What a consumer started with ``report_first_ok=True`` prints once a call got its
#: expected outcome (common.js and _pypeer.py print the same line).
FIRST_OK_LINE = "FIRST-OK"


class ConsumerProcess(subprocess.Popen[bytes]):
    """A running consumer (:func:`start_consumer`); read its summary with :func:`consumer_summary`."""

    kind: str = ""
    stderr_path: Path | None = None
    deadline_ms: int = 60000
    stdout_so_far: bytes = b""


def start_consumer(
    kind: str,
    port: int,
    *,
    calls: int = 1,
    concurrency: int = 1,
    payload_bytes: int = 0,
    method: str = "echo",
    heartbeat: bool = False,
    heartbeat_wait_ms: int = 10000,
    timeout_ms: int = 10000,
    deadline_ms: int = 60000,
    report_first_ok: bool = False,
    extra_args: tuple[str, ...] = (),
) -> ConsumerProcess:
    """Start consumer ``kind`` against 127.0.0.1:``port`` and return at once.

    With ``report_first_ok`` it prints :data:`FIRST_OK_LINE` as soon as one call got its
    expected outcome: wait for it with :func:`wait_for_first_ok`.  Collect the summary
    with :func:`consumer_summary`; :func:`stop` stops it (by its pid) if it still runs.
    """
    check_installed(kind, consumer=True)
    runtime, script = CONSUMERS[kind]
    argv = [
        *_argv(runtime, script),
        "--port",
        str(port),
        "--calls",
        str(calls),
        "--concurrency",
        str(concurrency),
        "--payload-bytes",
        str(payload_bytes),
        "--method",
        method,
        "--timeout-ms",
        str(timeout_ms),
        "--deadline-ms",
        str(deadline_ms),
        *(["--heartbeat", "--heartbeat-wait-ms", str(heartbeat_wait_ms)] if heartbeat else []),
        *(["--report-first-ok"] if report_first_ok else []),
        *extra_args,
    ]
    # stderr goes to a file: a consumer logging many errors never blocks on a full pipe.
    fd, name = tempfile.mkstemp(prefix=f"mosnpy-consumer-{kind}-", suffix=".stderr")
    with os.fdopen(fd, "wb") as err_file:
        proc = ConsumerProcess(
            argv, cwd=PEERS_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err_file
        )
    proc.kind = kind
    proc.stderr_path = Path(name)
    proc.deadline_ms = deadline_ms
    return proc


def wait_for_first_ok(proc: ConsumerProcess, *, timeout: float = 20.0) -> None:
    """Wait until ``proc`` (started with ``report_first_ok=True``) reports an answered call.

    Reads its stdout line by line; raises :class:`PeerError` with its output when it
    exits, or reports nothing within ``timeout`` seconds, first.
    """
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            lines = proc.stdout_so_far.split(b"\n")
            if any(line.strip() == FIRST_OK_LINE.encode() for line in lines[:-1]):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerError(
                    f"{proc.kind} consumer reported no answered call ({FIRST_OK_LINE}) within "
                    f"{timeout:g} s; stdout={proc.stdout_so_far[-4000:]!r} stderr:\n{_tail(proc.stderr_path)}"
                )
            if not sel.select(min(left, 0.5)):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                proc.wait(timeout=5)
                raise PeerError(
                    f"{proc.kind} consumer exited (code {proc.returncode}) before any call was answered; "
                    f"stdout={proc.stdout_so_far[-4000:]!r} stderr:\n{_tail(proc.stderr_path)}"
                )
            proc.stdout_so_far += chunk


def consumer_summary(proc: ConsumerProcess, *, timeout: float | None = None) -> dict[str, Any]:
    """Wait for ``proc`` to exit and return its JSON summary (see :func:`run_consumer`).

    Waits ``timeout`` seconds (default: the consumer's own deadline plus 15 s); then it
    is stopped and :class:`PeerError` raised.
    """
    if timeout is None:
        timeout = proc.deadline_ms / 1000 + 15
    try:
        rest, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        err = _tail(proc.stderr_path)
        stop(proc)
        raise PeerError(f"{proc.kind} consumer did not finish: {exc}; stderr:\n{err}") from exc
    out = (proc.stdout_so_far + (rest or b"")).decode("utf-8", "replace")
    err = _tail(proc.stderr_path)
    for line in reversed(out.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                summary: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                continue
            summary["returncode"] = proc.returncode
            summary["stderr"] = err
            return summary
    raise PeerError(
        f"{proc.kind} consumer printed no summary (exit code {proc.returncode}); stdout:\n{out[-4000:]}\n"
        f"stderr:\n{err}"
    )


def run_consumer(
    kind: str,
    port: int,
    *,
    calls: int = 1,
    concurrency: int = 1,
    payload_bytes: int = 0,
    method: str = "echo",
    heartbeat: bool = False,
    heartbeat_wait_ms: int = 10000,
    timeout_ms: int = 10000,
    deadline_ms: int = 60000,
    extra_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run consumer ``kind`` against 127.0.0.1:``port`` and return its JSON summary.

    The summary (see README.md) gets two more keys: ``returncode`` (0 only when every
    call had the expected outcome) and ``stderr`` (the end of the consumer's stderr).
    The consumer stops itself after ``deadline_ms``; this waits that long plus 15 s.
    Raises :class:`PeerError` when it prints no summary.
    """
    proc = start_consumer(
        kind,
        port,
        calls=calls,
        concurrency=concurrency,
        payload_bytes=payload_bytes,
        method=method,
        heartbeat=heartbeat,
        heartbeat_wait_ms=heartbeat_wait_ms,
        timeout_ms=timeout_ms,
        deadline_ms=deadline_ms,
        extra_args=extra_args,
    )
    try:
        return consumer_summary(proc)
    finally:
        stop(proc)
