"""Log levels by MOSN's names at run time, for the admin API.

mosnpy writes one log, MOSN's "default" error log at ``servers[0].default_log_path``
(``stdout`` unless set; see :mod:`mosnpy.runtime.logs`); ``get_loglevel`` shows it as
``{"stdout": "INFO"}`` and ``update_loglevel`` with that ``log_path`` changes the root
logger's level at once.
"""

from __future__ import annotations

import logging

from mosnpy.config.models import MosnConfig
from mosnpy.runtime.logs import parse_level

__all__ = ["current_levels", "default_log_path", "mosn_level_name", "set_level"]


def mosn_level_name(level: int) -> str:
    """MOSN's name for a :mod:`logging` level."""
    for name, threshold in (
        ("FATAL", logging.CRITICAL),
        ("ERROR", logging.ERROR),
        ("WARN", logging.WARNING),
        ("INFO", logging.INFO),
    ):
        if level >= threshold:
            return name
    return "DEBUG"


def default_log_path(config: MosnConfig) -> str:
    """Where the default log goes: ``servers[0].default_log_path``, or ``stdout``."""
    path = config.servers[0].default_log_path if config.servers else ""
    return path or "stdout"


def current_levels(config: MosnConfig) -> dict[str, str]:
    """``get_loglevel``: log path → MOSN level name."""
    return {default_log_path(config): mosn_level_name(logging.getLogger().level)}


def set_level(config: MosnConfig, log_path: str, level: str) -> bool:
    """Set the level of the log at ``log_path`` (empty: the default log); False when
    mosnpy writes no log there.

    Raises:
        ValueError: ``level`` is not a level name.
    """
    value = parse_level(level)
    if log_path not in ("", default_log_path(config)):
        return False
    logging.getLogger().setLevel(value)
    return True
