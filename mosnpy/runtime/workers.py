"""Many cores: N worker processes sharing each listener through SO_REUSEPORT.

Envoy's worker model with processes: the :class:`Supervisor` starts ``N`` copies of
``mosnpy -c CONFIG --worker``, each binding every listener with ``SO_REUSEPORT`` so the
kernel spreads connections across them.  The supervisor serves no traffic; it holds
what there is one of:

* **the admin API** (the config's ``admin`` address).  Each worker serves its own
  admin API on a unix socket in the supervisor's private directory (mode 0700) instead
  (see :mod:`mosnpy.runtime.control`); ``/api/v1/stats`` and ``/metrics`` at the
  supervisor are every answering worker's stats summed, ``update_loglevel`` and
  ``reload`` are passed on to every worker;
* **the config**.  Workers read a copy in the private directory, replaced only by a
  reload the supervisor accepted, so a worker restarted after a broken edit of the file
  still starts with the config that is being served;
* **the workers' lives**.  A worker that dies is restarted (with a growing pause, so
  one that cannot start does not spin) while the others keep the listeners answering.
  On SIGTERM/SIGINT every worker gets SIGTERM — once it is up, so a worker restarted
  during shutdown drains like the others instead of dying half-started — and
  ``graceful_timeout`` plus a margin to drain before it is killed.  The exit status is
  0 only if no worker ever failed (died, or did not exit 0 when asked to stop).

SIGHUP (or ``POST /api/v1/reload``) re-reads the file: checked in full here first (a
broken file is logged and changes nothing), then every worker reloads it.  SIGUSR1 is
passed on to every worker: each reopens its access log files (the workers append to the
same files).  Only processes the supervisor started are signalled, by their pid.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from mosnpy.admin import AdminServer, ReloadRefused
from mosnpy.admin.server import STATE_GRACEFUL_STOPPING, STATE_RELOADING, STATE_RUNNING, STATE_STOPPED
from mosnpy.config.errors import ConfigError
from mosnpy.config.loader import load_config
from mosnpy.config.models import MosnConfig
from mosnpy.net.connection import resolve
from mosnpy.runtime.builder import build
from mosnpy.runtime.control import ControlError, call, call_json, merge_stats
from mosnpy.runtime.logctl import current_levels, set_level
from mosnpy.runtime.server import BindError, _version

__all__ = ["Supervisor", "worker_problem"]

log = logging.getLogger("mosnpy.workers")

#: Extra seconds beyond graceful_timeout before a worker that will not stop is killed.
KILL_MARGIN = 5.0
#: Longest pause between restarts of a worker that keeps dying.
MAX_RESTART_PAUSE = 5.0
#: Longest wait for a worker that was asked to stop while still starting.
STARTUP_WAIT = 20.0
#: How often a starting worker's control socket is tried.
PROBE_INTERVAL = 0.05


def worker_problem(config: MosnConfig) -> str | None:
    """Why ``config`` cannot be served by ``--workers`` (None: it can).

    Raises:
        ConfigError: a name in the config is unknown.
    """
    _, listeners = build(config)
    ephemeral = [lst.name for lst in listeners if lst.requested_address.endswith(":0")]
    if ephemeral:
        return f"--workers needs fixed ports; listeners on port 0: {', '.join(ephemeral)}"
    unix = [lst.name for lst in listeners if resolve(lst.requested_address)[0] == socket.AF_UNIX]
    if unix:
        # SO_REUSEPORT does not share unix sockets: each worker would take the path over.
        return f"--workers needs TCP listeners; unix listeners: {', '.join(unix)}"
    return None


class _Slot:
    """One worker position: the process filling it now and its control socket."""

    def __init__(self, index: int, control: str) -> None:
        self.index = index
        self.control = control
        self.proc: trio.Process | None = None
        #: set once the current process answers on its control socket
        self.ready = trio.Event()
        self.stop_sent = False
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Supervisor:
    """Runs ``workers`` copies of mosnpy on ``config_path`` (already loaded as ``config``).

    ``level``: the workers' ``--log-level`` (a logging level name), kept up to date by
    ``update_loglevel`` for workers started later.
    """

    def __init__(self, config_path: str, config: MosnConfig, workers: int, *, level: str) -> None:
        self.config_path = config_path
        self.config = config
        self.level = level
        self.failures = 0
        self.state = 4
        self.dir = Path()
        self.slots: list[_Slot] = []
        self.workers = workers
        self.stopping = trio.Event()
        self._reload_lock = trio.Lock()
        self.admin: AdminServer | None = None
        if config.admin is not None:
            self.admin = AdminServer(config.admin.address, _SupervisorBackend(self), version=_version())

    @property
    def graceful_timeout(self) -> float:
        return max((s.graceful_timeout for s in self.config.servers), default=30.0)

    @property
    def worker_config(self) -> Path:
        """The copy of the accepted config the workers read."""
        return self.dir / f"config{Path(self.config_path).suffix}"

    async def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; the exit status (0: no worker failed)."""
        self.dir = Path(tempfile.mkdtemp(prefix="mosnpy-"))  # mode 0700: ours alone
        try:
            try:
                _copy(Path(self.config_path), self.worker_config)
            except OSError as exc:
                log.error("cannot copy %s for the workers: %s", self.config_path, exc)
                return 1
            if self.admin is not None:
                try:
                    self.admin.listener.bind()
                except OSError as exc:
                    log.error("%s", BindError("admin", self.admin.listener.requested_address, exc))
                    return 1
            self.slots = [_Slot(i, str(self.dir / f"worker{i}.sock")) for i in range(self.workers)]
            async with trio.open_nursery() as outer:
                if self.admin is not None:
                    await outer.start(self.admin.listener.serve)
                with trio.open_signal_receiver(
                    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1
                ) as signals:
                    async with trio.open_nursery() as nursery:
                        for slot in self.slots:
                            nursery.start_soon(self._run_slot, slot)
                        self.state = STATE_RUNNING
                        async for signum in signals:
                            log.info("received %s", signal.Signals(signum).name)
                            if signum == signal.SIGHUP:
                                nursery.start_soon(self._reload_logged)
                                continue
                            if signum == signal.SIGUSR1:
                                self._signal_workers(signal.SIGUSR1)  # each reopens its access logs
                                continue
                            break
                        self.state = STATE_GRACEFUL_STOPPING
                        log.info("draining %d workers", sum(slot.running for slot in self.slots))
                        self.stopping.set()
                if self.admin is not None:
                    await self.admin.listener.drain(1.0)
        finally:
            self.state = STATE_STOPPED
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.failures:
            log.error("stopped; workers failed %d time(s)", self.failures)
            return 1
        log.info("stopped")
        return 0

    # -- worker lives ------------------------------------------------------------------

    def _argv(self, slot: _Slot) -> list[str]:
        return [
            sys.executable, "-m", "mosnpy", "-c", str(self.worker_config),
            "--worker", "--log-level", self.level, "--control", slot.control,
        ]  # fmt: skip

    async def _run_slot(self, slot: _Slot) -> None:
        failures = 0
        while not self.stopping.is_set():
            proc = await trio.lowlevel.open_process(self._argv(slot))
            slot.proc, slot.ready, slot.stop_sent = proc, trio.Event(), False
            slot.starts += 1
            log.info("worker %d started (pid %d)", slot.index, proc.pid)
            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._probe, slot)
                nursery.start_soon(self._stop_when_asked, slot, proc)
                code = await proc.wait()
                nursery.cancel_scope.cancel()
            if slot.stop_sent or self.stopping.is_set():
                if code == 0:
                    log.info("worker %d (pid %d) exited with 0", slot.index, proc.pid)
                else:
                    self.failures += 1
                    log.error("worker %d (pid %d) exited with %s while stopping", slot.index, proc.pid, code)
                return
            self.failures += 1
            failures = 0 if trio.current_time() - started > 10 else failures + 1
            pause = min(MAX_RESTART_PAUSE, 0.1 * 2**failures)
            log.error(
                "worker %d (pid %d) died with %s; restarting in %.1fs", slot.index, proc.pid, code, pause
            )
            with trio.move_on_after(pause):
                await self.stopping.wait()

    def _signal_workers(self, signum: int) -> None:
        """Send ``signum`` to every worker process running now (by its pid)."""
        for slot in self.slots:
            proc = slot.proc
            if proc is not None and proc.returncode is None:
                proc.send_signal(signum)

    async def _probe(self, slot: _Slot) -> None:
        """Set ``slot.ready`` once the worker answers on its control socket."""
        while True:
            try:
                status, _ = await call(slot.control, "GET", "/api/v1/states", timeout=1.0)
            except ControlError:
                status = 0
            if status == 200:
                slot.ready.set()
                return
            await trio.sleep(PROBE_INTERVAL)

    async def _stop_when_asked(self, slot: _Slot, proc: trio.Process) -> None:
        await self.stopping.wait()
        with trio.move_on_after(STARTUP_WAIT):
            await slot.ready.wait()  # a worker still starting would die, not drain
        slot.stop_sent = True
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(self.graceful_timeout + KILL_MARGIN):
            await proc.wait()
            return
        log.warning("worker %d (pid %d) did not stop in time; killing it", slot.index, proc.pid)
        proc.kill()

    # -- the admin API over every worker -------------------------------------------------

    async def _each_worker(self, method: str, target: str, data: Any = None) -> dict[int, tuple[int, Any]]:
        """Ask every worker that is up; slot → (status, JSON reply), leaving out the
        ones that did not answer."""
        answers: dict[int, tuple[int, Any]] = {}

        async def ask(slot: _Slot) -> None:
            try:
                answers[slot.index] = await call_json(slot.control, method, target, data)
            except ControlError as exc:
                log.warning("worker %d did not answer %s %s: %s", slot.index, method, target, exc)

        async with trio.open_nursery() as nursery:
            for slot in self.slots:
                if slot.running and slot.ready.is_set():
                    nursery.start_soon(ask, slot)
        return answers

    async def stats(self) -> dict[str, Any]:
        answers = await self._each_worker("GET", "/api/v1/stats")
        good = {i: body for i, (status, body) in answers.items() if status == 200 and isinstance(body, dict)}
        merged = merge_stats(good[i] for i in sorted(good)) or {"listeners": {}, "clusters": {}}
        merged["workers"] = {
            "configured": len(self.slots),
            "answered": len(good),
            "missing": [slot.index for slot in self.slots if slot.index not in good],
            "pids": {str(slot.index): slot.proc.pid for slot in self.slots if slot.running and slot.proc},
            "starts": sum(slot.starts for slot in self.slots),
            # each worker's share of the downstream requests
            "request_total": {
                str(i): sum(s.get("request_total", 0) for s in body.get("listeners", {}).values())
                for i, body in sorted(good.items())
            },
            "failures": self.failures,
        }
        return merged

    async def update_log_level(self, log_path: str, level: str) -> bool:
        if not set_level(self.config, log_path, level):
            return False
        self.level = logging.getLevelName(logging.getLogger().level)  # for workers started later
        body = {"log_path": log_path, "log_level": level}
        for index, (status, _) in (await self._each_worker("POST", "/api/v1/update_loglevel", body)).items():
            if status != 200:
                log.warning("worker %d refused the log level change (%d)", index, status)
        return True

    async def reload(self) -> dict[str, Any]:
        async with self._reload_lock:
            self.state = STATE_RELOADING
            try:
                return await self._reload()
            finally:
                self.state = STATE_GRACEFUL_STOPPING if self.stopping.is_set() else STATE_RUNNING

    async def _reload(self) -> dict[str, Any]:
        candidate = self.dir / f"candidate{Path(self.config_path).suffix}"
        try:
            # A copy first: what is checked is what the workers will read.
            _copy(Path(self.config_path), candidate)
            config = load_config(self.config_path, require_listeners=True)
            problem = worker_problem(config)
        except ConfigError as exc:
            raise ReloadRefused(f"bad config {self.config_path}:\n{exc}") from None
        except OSError as exc:
            raise ReloadRefused(f"cannot read {self.config_path}: {exc}") from None
        if problem:
            raise ReloadRefused(problem)
        _check_new_addresses(self.config, config)
        os.replace(candidate, self.worker_config)
        self.config = config
        answers = await self._each_worker("POST", "/api/v1/reload")
        results: dict[str, Any] = {}
        refused: list[str] = []
        for slot in self.slots:
            status, body = answers.get(slot.index, (0, None))
            if status == 200:
                results[str(slot.index)] = body
            else:
                error = body.get("error") if isinstance(body, dict) else "no answer"
                results[str(slot.index)] = {"error": error}
                refused.append(f"worker {slot.index}: {error}")
        if refused:
            log.error("reload: %s", "; ".join(refused))
        done = len(answers) - len(refused)
        log.info("reloaded %s in %d of %d workers", self.config_path, done, len(self.slots))
        return {"workers": results}

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except ReloadRefused as exc:
            log.error("reload refused, the running config is unchanged: %s", exc)


def _copy(source: Path, target: Path) -> None:
    """Copy a (small) config file."""
    target.write_bytes(source.read_bytes())


def _check_new_addresses(old: MosnConfig, new: MosnConfig) -> None:
    """Refuse a reload whose new listener addresses cannot be bound (a port in use)."""
    _, before = build(old)
    _, after = build(new, reuse_port=True)
    known = {lst.requested_address for lst in before}
    for lst in after:
        if lst.requested_address in known:
            continue
        try:
            lst.bind()
        except OSError as exc:
            raise ReloadRefused(str(BindError(lst.name, lst.requested_address, exc))) from None
        finally:
            lst.stop_accepting()


class _SupervisorBackend:
    """The admin API's view of the supervisor: every worker at once."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def config(self) -> MosnConfig:
        return self.supervisor.config

    async def stats(self) -> dict[str, Any]:
        return await self.supervisor.stats()

    def log_levels(self) -> dict[str, str]:
        return current_levels(self.supervisor.config)

    async def update_log_level(self, log_path: str, level: str) -> bool:
        return await self.supervisor.update_log_level(log_path, level)

    async def reload(self) -> dict[str, Any]:
        return await self.supervisor.reload()

    def state(self) -> int:
        return self.supervisor.state
