"""The one exception type of the config layer.

Every problem the loader finds, from a missing file to a cluster name that no cluster
has, is a :class:`ConfigError` that names *where* (a path into the document, such as
``servers[0].listeners[1].filter_chains[0].filters[0].config.downstream_protocol``, or
``config.json:3:7`` for a syntax error) and *what*.  The loader keeps going after the
first problem where it can, so one error may carry several: ``errors`` lists them all
and ``str()`` prints one ``path: problem`` line each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["ConfigError", "join_path"]

# Keys written bare after a dot; any other key is quoted: ``tags['x y']``.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


class ConfigError(Exception):
    """A config problem at ``path``; possibly the first of several (see ``errors``).

    ``str(e)`` is ``f"{path}: {problem}"`` for a single error, and one such line per
    error when several were collected.
    """

    path: str
    problem: str
    errors: tuple[ConfigError, ...]

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path or "<root>"
        self.problem = problem
        self.errors = (self,)

    @classmethod
    def group(cls, errors: Iterable[ConfigError]) -> ConfigError:
        """One error standing for all of ``errors`` (flattened, in order, at least one)."""
        flat = [leaf for e in errors for leaf in e.errors]
        if not flat:
            raise ValueError("ConfigError.group needs at least one error")
        if len(flat) == 1:
            return flat[0]
        first = flat[0]
        grouped = cls(first.path, first.problem)
        grouped.errors = tuple(flat)
        return grouped

    def __str__(self) -> str:
        return "\n".join(f"{e.path}: {e.problem}" for e in self.errors)

    def __repr__(self) -> str:
        more = f" (+{len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        return f"ConfigError({self.path!r}, {self.problem!r}){more}"


def join_path(path: str, *keys: str | int) -> str:
    """The path of ``keys`` (mapping keys or list indices, outermost first) in ``path``.

    ``join_path("servers", 0, "listeners")`` is ``"servers[0].listeners"``; a key that
    is not a plain word is quoted, as in ``"tags['a b']"``.
    """
    for key in keys:
        if isinstance(key, int):
            path = f"{path}[{key}]"
        elif not _PLAIN_KEY.fullmatch(key):
            path = f"{path}[{key!r}]"
        elif path:
            path = f"{path}.{key}"
        else:
            path = key
    return path
