"""Where mosnpy's log goes and at which level: MOSN's ``default_log_path`` and
``default_log_level`` (``servers[0]``'s; one process has one log).

``default_log_path`` is ``"stdout"`` (the default), ``"stderr"``, or a file path (its
directory is created, as MOSN does; the file is appended to and reopened when
logrotate moves it away).  ``default_log_level`` is one of MOSN's levels: FATAL,
ERROR, WARN, INFO, DEBUG, TRACE (Python's logging has no TRACE: it logs as DEBUG).
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

__all__ = ["MOSN_LEVELS", "configure_logging", "log_handler", "parse_level"]

#: MOSN's level names (and Python's spellings) → logging levels.
MOSN_LEVELS: dict[str, int] = {
    "FATAL": logging.CRITICAL,
    "CRITICAL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
    "TRACE": logging.DEBUG,
}

STDOUT = "stdout"
STDERR = "stderr"


def parse_level(name: str) -> int:
    """The logging level of MOSN level ``name`` (any case); ValueError if unknown."""
    try:
        return MOSN_LEVELS[name.upper()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r} (known: {', '.join(MOSN_LEVELS)})") from None


def log_handler(path: str) -> logging.Handler:
    """A handler writing to ``path``: ``"stdout"`` or ``""``, ``"stderr"``, or a file.

    Raises:
        OSError: the file (or its directory) cannot be created or opened.
    """
    if path in ("", STDOUT):
        return logging.StreamHandler(sys.stdout)
    if path == STDERR:
        return logging.StreamHandler(sys.stderr)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return logging.handlers.WatchedFileHandler(path, encoding="utf-8")


def configure_logging(
    path: str, level: int, fmt: str, *, replace: logging.Handler | None = None
) -> logging.Handler:
    """Send the root logger's records to ``path`` (see :func:`log_handler`) at ``level``,
    in place of handler ``replace`` (the startup handler, say); returns the new handler.

    Raises:
        OSError: the log file cannot be opened; logging is left as it was.
    """
    handler = log_handler(path)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.addHandler(handler)
    if replace is not None:
        root.removeHandler(replace)
        if isinstance(replace, logging.FileHandler):
            replace.close()
    root.setLevel(level)
    return handler
