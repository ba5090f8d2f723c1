"""``mosnpy -c config.json``: run a proxy from a MOSN-format config file.

``mosnpy --version`` prints the version; ``mosnpy --list`` lists every protocol,
xprotocol codec, filter, load balancer, cluster type and health checker installed, with
the distribution each comes from.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from importlib.machinery import EXTENSION_SUFFIXES
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import trio

from mosnpy.config import ConfigError, MosnConfig, ServerConfig, load_config
from mosnpy.net.connection import resolve
from mosnpy.net.registry import LISTENER_FILTERS, NETWORK_FILTERS
from mosnpy.protocol.registry import PROTOCOLS
from mosnpy.protocol.xprotocol.registry import XPROTOCOLS
from mosnpy.registry import Registry
from mosnpy.runtime import MosnServer, run
from mosnpy.runtime.logs import MOSN_LEVELS, configure_logging, parse_level
from mosnpy.runtime.workers import Supervisor
from mosnpy.stream.registry import STREAM_FILTERS
from mosnpy.upstream.health import HEALTH_CHECKERS
from mosnpy.upstream.registry import CLUSTER_TYPES, LOAD_BALANCERS

__all__ = ["main"]

_LEVELS = tuple(MOSN_LEVELS)

#: Containers allocated and not yet freed between young collections while serving
#: (CPython's default: 700).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Set the cyclic GC up for serving, once the config is loaded.

    What is loaded by now (modules, the config) lives as long as the process, so it is
    frozen: full collections need not walk it again.  A young collection runs each time
    700 more containers were allocated than freed, and re-walks the connections' live
    state.  HTTP/1 requests leave no cyclic garbage of their own (their objects go by
    reference counting), so under load what reaches the threshold is mostly state that
    lives on; at 50,000 the collections drop out of the profile (callgrind under wrk:
    about 0.7k instructions per request at 7,000, not one collection in 15 s at 50,000),
    and the rare cyclic garbage (exceptions, cancelled tasks) still cannot pile up.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


#: what ``--list`` shows, in order: a heading and the registry.
_EXTENSION_POINTS: tuple[tuple[str, Registry[Any]], ...] = (
    ("protocols", PROTOCOLS),
    ("xprotocol codecs", XPROTOCOLS),
    ("network filters", NETWORK_FILTERS),
    ("listener filters", LISTENER_FILTERS),
    ("stream filters", STREAM_FILTERS),
    ("load balancers", LOAD_BALANCERS),
    ("cluster types", CLUSTER_TYPES),
    ("health checkers", HEALTH_CHECKERS),
)


def mosnpy_version() -> str:
    """The installed distribution's version (the package's own when run from a tree)."""
    try:
        return version("mosnpy")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        from mosnpy import __version__

        return __version__


def compiled_modules(package: Path | None = None) -> list[str]:
    """The mosnpy modules present as C extensions (a ``MOSNPY_MYPYC=1`` build, see
    ``setup.py``): imported in preference to their ``.py`` files.  ``package``: the
    ``mosnpy`` directory to look in (default: this one)."""
    if package is None:
        package = Path(__file__).resolve().parent
    found = []
    for path in package.rglob("*.*"):
        # the first suffix that fits is the whole one (".cpython-311-....so" before ".so")
        suffix = next((s for s in EXTENSION_SUFFIXES if path.name.endswith(s)), None)
        if suffix is not None:
            name = ".".join(path.relative_to(package.parent).parts)[: -len(suffix)]
            if not name.endswith("__mypyc"):  # (mypyc's shared runtime for a one-module build)
                found.append(name)
    return sorted(found)


def version_line() -> str:
    """``mosnpy X.Y.Z``, and how many of its modules are compiled, if any."""
    compiled = compiled_modules()
    return f"mosnpy {mosnpy_version()}" + (f" ({len(compiled)} modules compiled)" if compiled else "")


def installed() -> str:
    """Every extension point's names with the distribution each comes from (``--list``)."""
    lines: list[str] = []
    for heading, registry in _EXTENSION_POINTS:
        lines.append(f"{heading} ({registry.group}):")
        names = registry.names()
        width = max((len(n) for n in names), default=0)
        for name in names:
            lines.append(f"  {name:<{width}}  {registry.origin(name) or '(registered in code)'}")
        if not names:
            lines.append("  (none)")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mosnpy", description="Run a MOSN-style proxy from a config file.")
    p.add_argument("-c", "--config", help="config file (.json, .yaml or .yml), MOSN v2 layout")
    p.add_argument("--version", action="version", version=version_line())
    p.add_argument(
        "--list",
        action="store_true",
        help="list the installed protocols, filters, load balancers, cluster types and health "
        "checkers with the distribution each comes from, then exit",
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=_LEVELS,
        default=None,
        help="log level (default: the config's servers[0].default_log_level, else INFO)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing every listener through SO_REUSEPORT (default 1: no supervisor)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # a supervised worker
    p.add_argument("--control", help=argparse.SUPPRESS)  # a worker's admin socket (the supervisor's)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mosnpy`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        print(installed())
        return 0
    if args.config is None:
        parser.error("the following arguments are required: -c/--config")
    if args.workers < 1:
        print("mosnpy: --workers must be at least 1", file=sys.stderr)
        return 2
    pid = " [%(process)d]" if args.workers > 1 or args.worker else ""
    log_format = f"%(asctime)s %(levelname)s{pid} %(name)s: %(message)s"
    # The startup log (config warnings) goes to stdout, as MOSN's start logger does.
    startup = logging.StreamHandler(sys.stdout)
    startup.setFormatter(logging.Formatter(log_format))
    logging.getLogger().addHandler(startup)
    logging.getLogger().setLevel(logging.INFO)
    # SIGHUP means "reload" and SIGUSR1 "reopen the access logs" once serving; until
    # then neither may end the process.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    warnings: list[str] = []
    try:
        # Building the proxy in the check reports unknown names (protocols, filters,
        # balancers) in the same run as every other problem of the file.
        config = load_config(
            args.config, warnings=warnings, require_listeners=True, check=_names_checker(args.worker)
        )
    except ConfigError as exc:
        print(f"mosnpy: bad config {args.config}:\n{exc}", file=sys.stderr)
        return 1
    server_cfg = config.servers[0] if config.servers else ServerConfig()
    level_no = parse_level(args.log_level or server_cfg.default_log_level)
    level = logging.getLevelName(level_no)  # for the workers' --log-level
    try:
        if server_cfg.default_log_path not in ("", "stdout"):
            logging.getLogger("mosnpy").info("logging to %s", server_cfg.default_log_path)
        configure_logging(server_cfg.default_log_path, level_no, log_format, replace=startup)
    except OSError as exc:
        print(
            f"mosnpy: bad config {args.config}:\nservers[0].default_log_path: cannot open "
            f"{server_cfg.default_log_path!r}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    try:
        if args.workers > 1:
            return _supervise(args, config, level)
        tune_gc()
        trio.run(
            functools.partial(
                run, config, reuse_port=args.worker, config_path=args.config, control=args.control
            )
        )
    except ConfigError as exc:
        print(f"mosnpy: bad config {args.config}:\n{exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mosnpy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _names_checker(reuse_port: bool) -> Callable[[MosnConfig], list[ConfigError]]:
    """A ``load_config`` check that builds the proxy (unbound) to look every name up."""

    def check(config: MosnConfig) -> list[ConfigError]:
        try:
            MosnServer(config, reuse_port=reuse_port)
        except ConfigError as exc:
            return [exc]
        return []

    return check


def _supervise(args: argparse.Namespace, config: MosnConfig, level: str) -> int:
    """Check the config once here, then run ``--workers`` supervised copies."""
    server = MosnServer(config)  # raises ConfigError for unknown names, before any fork
    ephemeral = [lst.name for lst in server.listeners if lst.requested_address.endswith(":0")]
    if ephemeral:
        print(
            f"mosnpy: --workers needs fixed ports; listeners on port 0: {', '.join(ephemeral)}",
            file=sys.stderr,
        )
        return 1
    unix = [lst.name for lst in server.listeners if resolve(lst.requested_address)[0] == socket.AF_UNIX]
    if unix:
        # SO_REUSEPORT does not share unix sockets: each worker would take the path over.
        print(f"mosnpy: --workers needs TCP listeners; unix listeners: {', '.join(unix)}", file=sys.stderr)
        return 1
    return trio.run(Supervisor(args.config, config, args.workers, level=level).run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
