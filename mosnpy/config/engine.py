"""Structure plain JSON/YAML data into attrs classes, with a path in every error.

This is the generic half of the loader; :mod:`mosnpy.config.mosn` plugs MOSN's quirks
into it.  Why not ``cattrs``?  It was the first choice, but it does not fit three needs
of this loader, and bending it costs more code than the ~250 lines below:

* *Path-aware warnings*: keys MOSN has and mosnpy does not implement are skipped with a
  warning naming their full path.  cattrs hooks get ``(value, type)`` and never the
  path, so this would need a second walk of the document.
* *Strict scalars*: cattrs' default hooks call ``str()``, ``int()`` and ``bool()``, so
  ``"false"`` becomes ``True``, ``1.5`` becomes ``1`` and the string ``"abc"`` becomes
  the tuple ``('a', 'b', 'c')``.  Every primitive hook would have to be replaced.
* *Durations by field*: a ``float`` field is a Go duration ("2s") or a plain number
  depending on which field it is, which cattrs can only express with one override per
  class.

What it does: every key of a mapping must be a field (or, per class, a known-but-
ignored key or an alias), every value must have its field's type (no coercion, except
that an integral float is an int and an int is a float), ``null`` means "use the
default", and all problems are collected and raised together as one
:class:`~mosnpy.config.errors.ConfigError`.

Keys match the way Go's ``encoding/json`` matches them, which is how MOSN reads its
config: an exact match first, else a case-insensitive one, so MOSN's example configs
that write ``"Name"`` for ``name`` load unchanged.  Messages name the key as written.

Supported field types: attrs classes, ``str``, ``int``, ``float``, ``bool``, ``Any``,
``X | None`` and other unions, ``Literal[...]``, ``Enum`` subclasses,
``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``, ``Sequence[X]``, ``dict[str, X]`` and
``Mapping[str, X]``.
"""

from __future__ import annotations

import difflib
import enum
import functools
import logging
import math
import reprlib
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Literal, Union

import attrs

from mosnpy.config.duration import parse_duration
from mosnpy.config.errors import ConfigError, join_path

__all__ = ["DURATION_METADATA", "Check", "Context", "Hook", "Notice", "Structurer", "describe"]

log = logging.getLogger("mosnpy.config")

#: Put ``metadata={DURATION_METADATA: True}`` on an attrs ``float`` field to make it
#: accept Go duration strings ("2s", "500ms") as well as numbers of seconds.
DURATION_METADATA = "mosnpy.config.duration"

#: A replacement for the generic structuring of one class: ``hook(s, data, path, ctx)``.
Hook = Callable[["Structurer", Any, str, "Context"], Any]
#: Extra checks on a freshly built instance: ``check(obj, path)`` yields the problems.
Check = Callable[[Any, str], Iterable[ConfigError]]
#: Warnings about a freshly built instance: ``notice(obj, path)`` yields
#: ``(path, message)`` pairs for values that are accepted but have no effect.
Notice = Callable[[Any, str], Iterable[tuple[str, str]]]

_NoneType = type(None)
_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


@attrs.define
class Context:
    """What one structuring run collects besides its result.

    ``warnings`` gets one ``"path: message"`` line per ignored key (each is also logged
    on the ``mosnpy.config`` logger); ``records`` gets ``(path, object)`` pairs that
    hooks want a later validation pass to see (the parsed proxy configs).
    """

    warnings: list[str] = attrs.Factory(list)
    records: list[tuple[str, object]] = attrs.Factory(list)

    def warn(self, path: str, message: str) -> None:
        text = f"{path}: {message}"
        log.warning("%s", text)
        self.warnings.append(text)


def describe(value: Any) -> str:
    """A short description of a config value for messages: ``the string 'abc'``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) >= 10**30:  # no repr: may exceed 4300 digits
        return f"a number of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    if isinstance(value, int | float):
        return f"the number {_short.repr(value)}"
    if isinstance(value, str):
        return f"the string {_short.repr(value)}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a value of type {type(value).__name__}"


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _allows_none(tp: Any) -> bool:
    return tp is Any or tp is _NoneType or _NoneType in typing.get_args(tp)


def _type_name(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if tp in names:
        return names[tp]
    if attrs.has(tp):
        return "a mapping"
    origin = typing.get_origin(tp)
    if origin in (tuple, list, Sequence):
        return "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


@attrs.frozen
class Structurer:
    """Builds attrs instances from data; the tables customise it per class.

    Args:
        hooks: classes structured by a function instead of field by field.
        checks: per-class checks run on each instance after it is built.
        ignored: per-class keys that are accepted, warned about, and dropped.
        durations: per-class names of ``float`` fields that take Go durations.
        aliases: per-class ``{other spelling: field key}``.
        hints: per-class ``{unknown key: advice}`` appended to "unknown key" errors.
        ignored_hints: per-class ``{ignored key: advice}`` appended to its warning.
        notices: per-class functions warning about accepted values without effect.
    """

    hooks: Mapping[type, Hook] = attrs.field(factory=dict)
    checks: Mapping[type, Check] = attrs.field(factory=dict)
    ignored: Mapping[type, Collection[str]] = attrs.field(factory=dict)
    durations: Mapping[type, Collection[str]] = attrs.field(factory=dict)
    aliases: Mapping[type, Mapping[str, str]] = attrs.field(factory=dict)
    hints: Mapping[type, Mapping[str, str]] = attrs.field(factory=dict)
    ignored_hints: Mapping[type, Mapping[str, str]] = attrs.field(factory=dict)
    notices: Mapping[type, Notice] = attrs.field(factory=dict)
    ignored_message: str = "not supported by mosnpy yet; ignored"

    def structure(self, tp: Any, data: Any, path: str, ctx: Context, *, duration: bool = False) -> Any:
        """``data`` as a value of type ``tp``; raises ConfigError naming ``path``."""
        if isinstance(tp, type) and tp in self.hooks:
            return self.hooks[tp](self, data, path, ctx)
        if attrs.has(tp):
            return self.structure_attrs(tp, data, path, ctx)
        if tp is Any or tp is object:
            return data
        if tp is _NoneType:
            if data is not None:
                raise ConfigError(path, f"expected null, got {describe(data)}")
            return None
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is Union or origin is types.UnionType:
            return self._union(args, data, path, ctx, duration)
        if origin is Literal:
            for allowed in args:
                if type(data) is type(allowed) and data == allowed:
                    return data
            raise ConfigError(path, f"expected {_type_name(tp)}, got {describe(data)}")
        if origin in (tuple, list, Sequence):
            return self._sequence(origin, args, data, path, ctx)
        if origin in (dict, Mapping):
            return self._mapping(args, data, path, ctx)
        if tp is str:
            if not isinstance(data, str):
                raise ConfigError(path, f"expected a string, got {describe(data)}")
            return data
        if tp is bool:
            if not isinstance(data, bool):
                raise ConfigError(path, f"expected true or false, got {describe(data)}")
            return data
        if tp is int:
            return _int(data, path)
        if tp is float:
            return _float(data, path, duration)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            for member in tp:
                if type(member.value) is type(data) and member.value == data:
                    return member
            allowed = ", ".join(repr(m.value) for m in tp)
            raise ConfigError(path, f"expected one of {allowed}, got {describe(data)}")
        raise TypeError(f"mosnpy.config cannot structure type {tp!r} (at {path or '<root>'})")

    def structure_attrs(self, cls: type, data: Any, path: str, ctx: Context) -> Any:
        """Field-by-field structuring of attrs class ``cls`` (no hook), then its check."""
        if not isinstance(data, Mapping):
            raise ConfigError(path, f"expected a mapping, got {describe(data)}")
        fields = {f.alias: f for f in attrs.fields(cls) if f.init}
        types_ = _field_types(cls)
        ignored = self.ignored.get(cls, ())
        aliases = self.aliases.get(cls, {})
        durations = self.durations.get(cls, ())
        known = self._known_keys(cls)
        errors: list[ConfigError] = []
        kwargs: dict[str, Any] = {}
        seen: dict[str, tuple[str, str]] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                errors.append(ConfigError(path, f"keys must be strings, got {describe(key)}"))
                continue
            key_path = join_path(path, key)
            spelling = _match_key(key, known)
            name = aliases.get(spelling, spelling)
            field = fields.get(name)
            if field is None:
                if spelling in ignored:
                    self._warn_ignored(cls, spelling, key_path, ctx)
                else:
                    errors.append(ConfigError(key_path, self._unknown(cls, key, fields, ignored)))
                continue
            if name in seen:
                first, first_spelling = seen[name]
                why = "keys match case-insensitively" if first_spelling == spelling else "an alias"
                errors.append(ConfigError(key_path, f"same setting as {first!r} ({why}); give only one"))
                continue
            seen[name] = (key, spelling)
            tp = types_[field.name]
            if value is None and not _allows_none(tp) and field.default is not attrs.NOTHING:
                continue  # Go semantics: null leaves the default
            is_duration = field.name in durations or bool(field.metadata.get(DURATION_METADATA))
            try:
                kwargs[name] = self.structure(tp, value, key_path, ctx, duration=is_duration)
            except ConfigError as e:
                errors.append(e)
        for name, field in fields.items():
            if name not in seen and field.default is attrs.NOTHING:
                errors.append(ConfigError(path, f"missing required key {name!r}"))
        if errors:
            raise ConfigError.group(errors)
        try:
            obj = cls(**kwargs)
        except (TypeError, ValueError) as e:  # a plugin class's own validators
            raise ConfigError(path, str(e) or type(e).__name__) from None
        check = self.checks.get(cls)
        if check is not None:
            problems = list(check(obj, path))
            if problems:
                raise ConfigError.group(problems)
        notice = self.notices.get(cls)
        if notice is not None:
            for notice_path, message in notice(obj, path):
                ctx.warn(notice_path, message)
        return obj

    def normalize(self, cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` with each key spelled as attrs class ``cls`` spells it and the keys
        :attr:`ignored` for ``cls`` left out (unknown keys stay as they are).

        For a mapping that is structured once at load time and again later by its
        consumer: the second pass then sees the canonical keys and warns about nothing
        the first pass has already warned about.
        """
        known = self._known_keys(cls)
        ignored = self.ignored.get(cls, ())
        out: dict[str, Any] = {}
        for key, value in data.items():
            spelling = _match_key(key, known) if isinstance(key, str) else key
            if spelling not in ignored:
                out[spelling] = value
        return out

    def _known_keys(self, cls: type) -> Mapping[str, str]:
        """Every key ``cls`` accepts (fields, aliases, ignored keys), by its folded form."""
        keys = [
            *(f.alias for f in attrs.fields(cls) if f.init),
            *self.aliases.get(cls, {}),
            *self.ignored.get(cls, ()),
        ]
        folded: dict[str, str] = {}
        for key in keys:
            folded.setdefault(_fold(key), key)
        return folded

    def _warn_ignored(self, cls: type, key: str, path: str, ctx: Context) -> None:
        hint = self.ignored_hints.get(cls, {}).get(key)
        ctx.warn(path, f"{self.ignored_message} ({hint})" if hint else self.ignored_message)

    def _unknown(self, cls: type, key: str, fields: Mapping[str, Any], ignored: Collection[str]) -> str:
        message = f"unknown key {_short.repr(key)}"
        hint = self.hints.get(cls, {}).get(key)
        if hint:
            return f"{message} ({hint})"
        known = [*fields, *ignored]
        squashed = _fold(key).replace("_", "").replace("-", "")
        close = [k for k in known if k.replace("_", "") == squashed]  # "LbType" for lb_type
        close = close or difflib.get_close_matches(_fold(key), known, n=1, cutoff=0.7)
        if close:
            return f"{message} (did you mean {close[0]!r}?)"
        return f"{message} (known: {', '.join(sorted(fields)) or 'none'})"

    def _union(self, args: tuple[Any, ...], data: Any, path: str, ctx: Context, duration: bool) -> Any:
        if data is None and _NoneType in args:
            return None
        members = [a for a in args if a is not _NoneType]
        if len(members) == 1:
            return self.structure(members[0], data, path, ctx, duration=duration)
        failures: list[ConfigError] = []
        for member in members:
            try:
                return self.structure(member, data, path, ctx, duration=duration)
            except ConfigError as e:
                failures.append(e)
        # Report the member whose outer shape fitted (its error is the precise one).
        for failure in failures:
            if not failure.problem.startswith("expected ") or failure.path != (path or "<root>"):
                raise failure
        wanted = " or ".join(_type_name(m) for m in members)
        raise ConfigError(path, f"expected {wanted}, got {describe(data)}")

    def _sequence(self, origin: Any, args: tuple[Any, ...], data: Any, path: str, ctx: Context) -> Any:
        if not isinstance(data, list | tuple):
            raise ConfigError(path, f"expected a list, got {describe(data)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(data) != len(args):
                raise ConfigError(path, f"expected a list of {len(args)} items, got {len(data)}")
            item_types = list(args)
        else:
            item_types = [args[0] if args else Any] * len(data)
        items: list[Any] = []
        errors: list[ConfigError] = []
        for i, (item_type, item) in enumerate(zip(item_types, data, strict=True)):
            try:
                items.append(self.structure(item_type, item, join_path(path, i), ctx))
            except ConfigError as e:
                errors.append(e)
        if errors:
            raise ConfigError.group(errors)
        return items if origin is list else tuple(items)

    def _mapping(self, args: tuple[Any, ...], data: Any, path: str, ctx: Context) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise ConfigError(path, f"expected a mapping, got {describe(data)}")
        value_type = args[1] if len(args) == 2 else Any
        out: dict[str, Any] = {}
        errors: list[ConfigError] = []
        for key, value in data.items():
            if not isinstance(key, str):
                errors.append(ConfigError(path, f"keys must be strings, got {describe(key)}"))
                continue
            try:
                out[key] = self.structure(value_type, value, join_path(path, key), ctx)
            except ConfigError as e:
                errors.append(e)
        if errors:
            raise ConfigError.group(errors)
        return out


def _fold(key: str) -> str:
    """The form two keys share when Go's ``encoding/json`` takes them for one."""
    return key.lower()


def _match_key(key: str, known: Mapping[str, str]) -> str:
    """The known spelling of ``key``: itself when known, else a case-insensitive match
    (as Go's ``encoding/json`` does), else ``key`` unchanged (an unknown key)."""
    if key in known.values():
        return key
    return known.get(_fold(key), key)


_INT_RANGE = range(-(2**63), 2**64)  # what Go's int64 and uint64 config fields hold


def _int(data: Any, path: str) -> int:
    if isinstance(data, float) and math.isfinite(data) and data.is_integer():
        data = int(data)
    if isinstance(data, int) and not isinstance(data, bool):
        if data not in _INT_RANGE:
            raise ConfigError(path, f"integer out of range (64 bits at most), got {describe(data)}")
        return data
    raise ConfigError(path, f"expected an integer, got {describe(data)}")


def _float(data: Any, path: str, duration: bool) -> float:
    if duration:
        if not isinstance(data, str | int | float) or isinstance(data, bool):
            raise ConfigError(
                path, f"expected a duration like '2s' or a number of seconds, got {describe(data)}"
            )
        try:
            return parse_duration(data)
        except ValueError as e:
            raise ConfigError(path, str(e)) from None
    if isinstance(data, int | float) and not isinstance(data, bool):
        try:
            value = float(data)
        except OverflowError:
            raise ConfigError(path, f"number out of range: {describe(data)}") from None
        if math.isfinite(value):
            return value
    raise ConfigError(path, f"expected a number, got {describe(data)}")
