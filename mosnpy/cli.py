"""``mosnpy -c config.json``: run a proxy from a MOSN-format config file."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import trio

from mosnpy.config import ConfigError, load_config
from mosnpy.runtime import run

__all__ = ["main"]

_LEVELS = ("DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mosnpy", description="Run a MOSN-style proxy from a config file.")
    p.add_argument("-c", "--config", required=True, help="config file (.json, .yaml or .yml), MOSN v2 layout")
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=_LEVELS,
        default=None,
        help="log level (default: the config's servers[0].default_log_level, else INFO)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mosnpy`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    warnings: list[str] = []
    try:
        config = load_config(args.config, warnings=warnings)
    except ConfigError as exc:
        print(f"mosnpy: bad config {args.config}:\n{exc}", file=sys.stderr)
        return 1
    level = args.log_level or (config.servers[0].default_log_level if config.servers else "INFO")
    level = "WARNING" if level.upper() == "WARN" else level.upper()
    logging.getLogger().setLevel(getattr(logging, level, logging.INFO))
    try:
        trio.run(run, config)
    except ConfigError as exc:
        print(f"mosnpy: bad config {args.config}:\n{exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mosnpy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
