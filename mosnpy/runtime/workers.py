"""Many cores: N worker processes sharing each listener through SO_REUSEPORT.

Envoy's worker model with processes: the parent (:func:`supervise`) starts ``N``
copies of ``mosnpy -c CONFIG --worker``, each binding every listener with
``SO_REUSEPORT`` so the kernel spreads connections across them.  The parent serves no
traffic.  It restarts a worker that dies (with a growing pause, so a worker that
cannot start does not spin), and on SIGTERM/SIGINT it passes SIGTERM to every worker
— each drains gracefully — and waits ``graceful_timeout`` plus a margin before
killing what is left.  Only processes it started are signalled, by their pid.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence

import trio

__all__ = ["supervise"]

log = logging.getLogger("mosnpy.workers")

#: Extra seconds beyond graceful_timeout before a worker that will not stop is killed.
KILL_MARGIN = 5.0
#: Longest pause between restarts of a worker that keeps dying.
MAX_RESTART_PAUSE = 5.0


async def supervise(worker_argv: Sequence[str], workers: int, graceful_timeout: float) -> int:
    """Run ``workers`` copies of ``worker_argv`` until a signal; return an exit status."""
    procs: dict[int, trio.Process] = {}
    stopping = trio.Event()

    async def keep_running(slot: int) -> None:
        failures = 0
        while not stopping.is_set():
            proc = await trio.lowlevel.open_process([sys.executable, *worker_argv])
            procs[slot] = proc
            log.info("worker %d started (pid %d)", slot, proc.pid)
            started = trio.current_time()
            code = await proc.wait()
            if stopping.is_set():
                log.info("worker %d (pid %d) exited with %s", slot, proc.pid, code)
                return
            failures = 0 if trio.current_time() - started > 10 else failures + 1
            pause = min(MAX_RESTART_PAUSE, 0.1 * 2**failures)
            log.error("worker %d (pid %d) died with %s; restarting in %.1fs", slot, proc.pid, code, pause)
            with trio.move_on_after(pause):
                await stopping.wait()

    async with trio.open_nursery() as nursery:
        for slot in range(workers):
            nursery.start_soon(keep_running, slot)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received %s: draining %d workers", signal.Signals(signum).name, len(procs))
                stopping.set()
                break
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(graceful_timeout + KILL_MARGIN):
            for proc in procs.values():
                await proc.wait()
        for proc in procs.values():
            if proc.returncode is None:
                log.warning("worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
    return 0
