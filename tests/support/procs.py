"""Ports and subprocesses for end-to-end tests: free ports, waiting, stopping by pid,
the Python backend (:mod:`tests.support.backend`) and mosnpy itself.

Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeAlias

import mosnpy

LOCALHOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Where this test process imports mosnpy from: the checkout, or a compiled build put
#: first on PYTHONPATH and run with ``python -P`` (.ci/run).  Children do the same.
MOSNPY_HOME = Path(mosnpy.__file__).resolve().parents[1]
#: ``-P`` (3.11+): the working directory is not put first on sys.path
SAFE_PATH = bool(getattr(sys.flags, "safe_path", False))


def python_argv() -> list[str]:
    """The interpreter command for a child that imports mosnpy as this process does."""
    return [sys.executable, "-P"] if SAFE_PATH else [sys.executable]


BACKEND_SCRIPT = Path(__file__).resolve().with_name("backend.py")

StrPath: TypeAlias = str | os.PathLike[str]


class ProcessStartError(RuntimeError):
    """A helper process died or never became ready; the message carries its log."""


class MosnpyError(ProcessStartError):
    """mosnpy died before it listened, never listened, or died during the test."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def port_is_open(port: int, *, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port right now."""
    try:
        with socket.create_connection((LOCALHOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    port: int,
    timeout: float = 10.0,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    interval: float = 0.02,
) -> None:
    """Wait until 127.0.0.1:port accepts a connection, at most ``timeout`` seconds.

    Raises :class:`TimeoutError` when time runs out and, if ``proc`` is given,
    :class:`ProcessStartError` as soon as that process has exited.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise ProcessStartError(
                f"process {proc.pid} exited with {proc.returncode} before 127.0.0.1:{port} accepted"
            )
        remaining = deadline - time.monotonic()
        if port_is_open(port, timeout=max(0.05, min(0.5, remaining))):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"127.0.0.1:{port} did not accept a connection within {timeout:g} s")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[Any], *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Stop one process by its pid: ``sig``, wait up to ``timeout`` s, then SIGKILL.

    Returns the exit code (negative for a signal, as :mod:`subprocess` reports it).
    Safe to call on a process that has already exited.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10.0)
    return int(proc.returncode)


def _read_text(path: Path, limit: int = 200_000) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    if len(data) > limit:
        data = b"[... earlier output cut ...]\n" + data[-limit:]
    return data.decode("utf-8", errors="replace")


def _child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    pythonpath = env.get("PYTHONPATH")
    first = [str(MOSNPY_HOME)] if MOSNPY_HOME != REPO_ROOT else []
    env["PYTHONPATH"] = os.pathsep.join([*first, str(REPO_ROOT), *([pythonpath] if pythonpath else [])])
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------- python backend


class PyBackend:
    """A running :mod:`tests.support.backend` subprocess."""

    def __init__(self, name: str, port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.port = port
        self.proc = proc
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{LOCALHOST}:{self.port}"

    def output(self) -> str:
        """The backend's stdout and stderr so far."""
        return _read_text(self.log_path)

    def wait_for_output(self, text: str, *, timeout: float = 10.0) -> None:
        """Wait until ``text`` appears in :meth:`output`, at most ``timeout`` seconds.

        Raises :class:`TimeoutError` (with the output) when time runs out, and
        :class:`ProcessStartError` as soon as the backend has exited.
        """
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None:
                raise ProcessStartError(
                    f"backend {self.name!r} exited with {self.proc.returncode} before printing "
                    f"{text!r}; output:\n{self.output()}"
                )
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"backend {self.name!r} did not print {text!r} within {timeout:g} s; "
                    f"output:\n{self.output()}"
                )
            time.sleep(0.01)

    def stop(self, *, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        """Stop it (by pid) now, e.g. to make an upstream fail mid-test. Idempotent."""
        return stop_process(self.proc, sig=sig, timeout=timeout)

    def __repr__(self) -> str:
        return f"PyBackend(name={self.name!r}, port={self.port}, pid={self.pid})"


@contextlib.contextmanager
def start_py_backend(
    name: str = "default",
    *,
    port: int = 0,
    verbose: bool = False,
    startup_timeout: float = 10.0,
) -> Iterator[PyBackend]:
    """Start the stdlib HTTP/1.1 backend on 127.0.0.1 as a subprocess; stop it on exit.

    ``port=0`` (the default) lets the backend pick a free port itself and report it
    through a port file, so there is no race with other tests picking ports.
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"mosnpy-backend-{name}-"))
    port_file = workdir / "port"
    log_path = workdir / "backend.log"
    argv = [sys.executable, str(BACKEND_SCRIPT), "--name", name, "--port", str(port)]
    argv += ["--port-file", str(port_file)]
    if verbose:
        argv.append("--verbose")
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT
            )
        deadline = time.monotonic() + startup_timeout
        while not port_file.exists():
            if proc.poll() is not None:
                raise ProcessStartError(
                    f"backend {name!r} exited with {proc.returncode} before listening; "
                    f"output:\n{_read_text(log_path)}"
                )
            if time.monotonic() >= deadline:
                raise ProcessStartError(
                    f"backend {name!r} did not listen within {startup_timeout:g} s; "
                    f"output:\n{_read_text(log_path)}"
                )
            time.sleep(0.01)
        bound = int(port_file.read_text(encoding="ascii").strip())
        wait_for_port(bound, timeout=max(1.0, deadline - time.monotonic()), proc=proc)
        yield PyBackend(name, bound, proc, log_path)
    finally:
        if proc is not None:
            stop_process(proc, timeout=5.0)
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------- mosnpy


class MosnpyProcess:
    """A running ``python -m mosnpy -c CONFIG`` subprocess (see :func:`run_mosnpy`)."""

    def __init__(
        self, proc: subprocess.Popen[bytes], log_path: Path, config_path: Path, ready_port: int
    ) -> None:
        self.proc = proc
        self.log_path = log_path
        self.config_path = config_path
        self.ready_port = ready_port
        self.stopped_by_test = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def output(self) -> str:
        """Everything mosnpy wrote to stdout and stderr so far."""
        return _read_text(self.log_path)

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to this process (by pid) without waiting, e.g. SIGHUP."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Stop mosnpy now (``sig``, wait ``timeout`` s, then SIGKILL); return its exit code.

        A test that stops mosnpy itself (to check graceful shutdown, say) is not
        reported as a crash when the ``run_mosnpy`` block ends.
        """
        self.stopped_by_test = True
        return stop_process(self.proc, sig=sig, timeout=timeout)

    def __repr__(self) -> str:
        return f"MosnpyProcess(pid={self.pid}, ready_port={self.ready_port})"


def _write_config(config: Mapping[str, Any] | StrPath, workdir: Path) -> Path:
    if isinstance(config, Mapping):
        path = workdir / "mosnpy.json"
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        return path
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"mosnpy config {path} does not exist")
    return path


@contextlib.contextmanager
def run_mosnpy(
    config: Mapping[str, Any] | StrPath,
    *,
    ready_port: int,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 10.0,
    stop_timeout: float = 10.0,
    workdir: StrPath | None = None,
    argv: Sequence[str] | None = None,
) -> Iterator[MosnpyProcess]:
    """Run mosnpy as a subprocess for the duration of the ``with`` block.

    ``config`` is a dict (written as JSON to a temp file) or the path of a config file.
    The command is ``[sys.executable, "-m", "mosnpy", "-c", CONFIG, *args]`` (with ``-P``
    and the compiled build first when the tests run that way), run from the repository
    root with the repository on PYTHONPATH and stdout+stderr going to a log
    file (read it with ``.output()``).  Waits up to ``startup_timeout`` s until
    127.0.0.1:``ready_port`` accepts; raises :class:`MosnpyError` with the log if mosnpy
    exits or never listens.  At the end: SIGTERM to its pid, up to ``stop_timeout`` s,
    then SIGKILL.  If mosnpy died during the block (and the test neither stopped it with
    ``.stop()`` nor raised), :class:`MosnpyError` is raised with the log.

    ``workdir``: where the config and log go (default: a temp dir removed afterwards).
    ``argv``: replaces the whole command (used by the helper's own tests).
    """
    own_dir = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="mosnpy-run-")) if workdir is None else Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    handle: MosnpyProcess | None = None
    log: IO[bytes] | None = None
    try:
        config_path = _write_config(config, wd)
        log_path = wd / "mosnpy.log"
        command = (
            list(argv)
            if argv is not None
            else [*python_argv(), "-m", "mosnpy", "-c", str(config_path), *args]
        )
        log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=_child_env(env),
        )
        handle = MosnpyProcess(proc, log_path, config_path, ready_port)
        try:
            wait_for_port(ready_port, timeout=startup_timeout, proc=proc)
        except (ProcessStartError, TimeoutError) as exc:
            rc = stop_process(proc, timeout=stop_timeout)
            raise MosnpyError(
                f"mosnpy did not come up on 127.0.0.1:{ready_port} ({exc}; exit code {rc}); "
                f"command: {command}\n--- mosnpy output ---\n{handle.output()}"
            ) from None
        try:
            yield handle
        except BaseException:
            stop_process(proc, timeout=stop_timeout)
            raise
        crashed_rc = proc.poll()
        if crashed_rc is not None and not handle.stopped_by_test:
            raise MosnpyError(
                f"mosnpy (pid {proc.pid}) exited with {crashed_rc} during the test\n"
                f"--- mosnpy output ---\n{handle.output()}"
            )
        stop_process(proc, timeout=stop_timeout)
    finally:
        if handle is not None:
            stop_process(handle.proc, timeout=stop_timeout)
        if log is not None:
            log.close()
        if own_dir:
            shutil.rmtree(wd, ignore_errors=True)
