"""Read MOSN's ``config.json`` (or YAML) into :class:`~mosnpy.config.models.MosnConfig`.

:func:`load_config` reads a file, :func:`parse_config` takes an already-loaded
document.  Both check every key (see :mod:`mosnpy.config.mosn` for MOSN's quirks),
then the references between sections (:mod:`mosnpy.config.validate`), and raise one
:class:`ConfigError` carrying every problem found.  Keys MOSN has and mosnpy does not
implement are logged on the ``mosnpy.config`` logger and appended to ``warnings``.
With ``require_listeners`` (what ``mosnpy -c`` asks for), a config with nothing to
serve (``{}``, or servers without listeners) is an error too.  ``check`` adds checks
that need more than the config layer (``mosnpy -c`` builds the proxy with it, so an
unknown protocol or filter name is reported in the same run as a dangling reference).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import yaml

from mosnpy.config.engine import Context, describe
from mosnpy.config.errors import ConfigError
from mosnpy.config.models import MosnConfig, ProxyConfig
from mosnpy.config.mosn import STRUCTURER, RouterOrigin
from mosnpy.config.validate import validate

__all__ = ["Check", "load_config", "parse_config", "read_document"]

#: An extra check of a loaded config: ``check(config)`` returns its problems.
Check = Callable[[MosnConfig], Iterable[ConfigError]]

JSON_SUFFIXES = (".json",)
YAML_SUFFIXES = (".yaml", ".yml")


def load_config(
    path: str | os.PathLike[str],
    *,
    warnings: list[str] | None = None,
    require_listeners: bool = False,
    check: Check | None = None,
) -> MosnConfig:
    """The config in file ``path`` (``.json``, ``.yaml``/``.yml``; otherwise JSON, then YAML).

    Raises:
        ConfigError: the file cannot be read or parsed (the path is ``file:line:column``
            for syntax errors), or the config is invalid (the path points into it).
    """
    doc = read_document(path)
    if not isinstance(doc, Mapping):
        raise ConfigError(os.fspath(path), f"expected a mapping at the top level, got {describe(doc)}")
    return parse_config(doc, warnings=warnings, require_listeners=require_listeners, check=check)


def parse_config(
    doc: Mapping[str, Any],
    *,
    warnings: list[str] | None = None,
    require_listeners: bool = False,
    check: Check | None = None,
) -> MosnConfig:
    """The config in ``doc``, a document already loaded from JSON or YAML.

    ``require_listeners``: refuse a config without any listener (nothing to serve).
    ``check``: run on the config once every key has been read (even when references
    between sections are wrong); its problems are raised with the others.
    """
    ctx = Context()
    try:
        config = cast(MosnConfig, STRUCTURER.structure(MosnConfig, doc, "", ctx))
        proxies = [(p, r) for p, r in ctx.records if isinstance(r, ProxyConfig)]
        router_paths = {p: r.source for p, r in ctx.records if isinstance(r, RouterOrigin)}
        errors = validate(config, proxies, router_paths)
        if require_listeners:
            errors.extend(_no_listeners(config))
        if check is not None:
            for leaf in [leaf for e in check(config) for leaf in e.errors]:
                if not _reported(leaf, errors):
                    errors.append(leaf)
        if errors:
            raise ConfigError.group(errors)
        return config
    finally:
        if warnings is not None:
            warnings.extend(ctx.warnings)


def _reported(error: ConfigError, errors: Iterable[ConfigError]) -> bool:
    """Whether ``errors`` has ``error`` already, or a finer one under its path (a
    check's ``servers[0].routers: ... defined twice`` after validation's
    ``servers[0].routers[1].router_config_name: duplicate ...``)."""
    return any(
        (error.path == e.path and error.problem == e.problem)
        or e.path.startswith((f"{error.path}.", f"{error.path}["))
        for e in errors
    )


def _no_listeners(config: MosnConfig) -> list[ConfigError]:
    if any(server.listeners for server in config.servers):
        return []
    path = "servers[0].listeners" if config.servers else "servers"
    problem = "no listeners: nothing to serve (a config needs at least one servers[].listeners[] entry)"
    return [ConfigError(path, problem)]


def read_document(path: str | os.PathLike[str]) -> Any:
    """The parsed JSON or YAML of file ``path``, or a ConfigError naming the file."""
    name = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(name, "no such file") from None
    except IsADirectoryError:
        raise ConfigError(name, "is a directory, not a config file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(name, f"not UTF-8 text (bad byte at offset {e.start})") from None
    except OSError as e:
        raise ConfigError(name, f"cannot read: {e.strerror or e}") from None
    suffix = Path(name).suffix.lower()
    if suffix in JSON_SUFFIXES:
        return _parse_json(name, text)
    if suffix in YAML_SUFFIXES:
        return _parse_yaml(name, text)
    try:
        return _parse_json(name, text)
    except ConfigError as json_error:
        try:
            return _parse_yaml(name, text)
        except ConfigError as yaml_error:
            raise (json_error if text.lstrip().startswith(("{", "[")) else yaml_error) from None


def _parse_json(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{name}:{e.lineno}:{e.colno}", f"invalid JSON: {e.msg}") from None
    except RecursionError:
        raise ConfigError(name, "invalid JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise ConfigError(name, f"invalid JSON: {e}") from None


def _parse_yaml(name: str, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
        raise ConfigError(where, f"invalid YAML: {e.problem or e.context or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(name, f"invalid YAML: {e}") from None
    except RecursionError:
        raise ConfigError(name, "invalid YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as e:  # a bad !!timestamp, a huge integer
        raise ConfigError(name, f"invalid YAML: {e}") from None
