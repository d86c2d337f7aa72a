"""Config files (TOML or YAML) and saved configs (a run's config.json): their keys and types checked
against the config dataclasses, naming the key that is wrong, before anything is built from them."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from pathlib import Path

SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def read(path: str | Path) -> dict[str, object]:
    """The file's table of settings: TOML, or YAML (JSON is YAML too)."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"config file {str(path)!r} is not a config file: expected a name ending in "
                         f"{', '.join(SUFFIXES)}")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10: the same parser, from PyPI
                import tomli as tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - each parser has its own error types; all mean bad syntax
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"config file {str(path)!r} is not valid {path.suffix[1:].upper()}: {first}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} holds a {type(data).__name__}: expected a table of settings, "
                         "e.g. env = \"CartPole-v1\"")
    return data


def checked(cls: type, data: dict[str, object], *, source: str, prefix: str = "") -> dict[str, object]:
    """`data` with every key a field of the dataclass `cls` and every value of the field's type
    (lists made tuples where the field is one, whole numbers made floats where it is a float);
    nested dataclass fields stay dicts, checked against their own class."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    out: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise ValueError(f"{source}: unknown key {name!r}{_suggestion(cls, hints, str(key), prefix)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"{source}: {name} should be a table of settings, not {value!r}")
            out[key] = checked(hint, value, source=source, prefix=f"{name}.")
        else:
            out[key] = _value(name, value, hint, source)
    return out


def take(data: dict[str, object], keys: tuple[str, ...], *, source: str) -> dict[str, str]:
    """The string settings `keys` taken out of `data`: keys a file may hold that are no config field
    but feed one (buffer_ca, buffer_cert and buffer_key go into the buffer's URL)."""
    return {key: _value(key, data.pop(key), str, source) for key in keys if key in data}


def _suggestion(cls: type, hints: dict[str, object], key: str, prefix: str) -> str:
    """'; did you mean …?': the keys of that name in the nested tables (a flag's name at the top,
    such as lr or students, lives in one), else the nearest key of this table."""
    fields = dataclasses.fields(cls)
    nested = [f"{prefix}{f.name}.{key}" for f in fields if dataclasses.is_dataclass(hints[f.name])
              and key in {g.name for g in dataclasses.fields(hints[f.name])}]
    close = nested or [prefix + c for c in difflib.get_close_matches(key, [f.name for f in fields], n=1)]
    return f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""


def _value(name: str, value: object, hint: object, source: str) -> object:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    ok, converted = _convert(value, hint, origin, args)
    if not ok:
        raise ValueError(f"{source}: {name} should be {_kind(hint, origin)}, not {json.dumps(value, default=str)}")
    return converted


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _convert(value: object, hint: object, origin: object, args: tuple) -> tuple[bool, object]:
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        return _number(value), float(value) if _number(value) else value
    if hint is str:
        return isinstance(value, str), value
    if origin is dict:  # dict[str, float]: resources, dynamics changes; dict[str, str]: teachers per task
        item = (lambda v: isinstance(v, str)) if args[1] is str else _number
        ok = isinstance(value, dict) and all(isinstance(k, str) and item(v) for k, v in value.items())
        return ok, value
    if origin is tuple:  # tuple[str, ...]: student specs
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        return ok, tuple(value) if ok else value
    raise TypeError(f"no check for fields of type {hint!r}")  # a new field type: teach _convert


def _kind(hint: object, origin: object) -> str:
    if origin is dict:
        return "a table of names with strings" if typing.get_args(hint)[1] is str else "a table of names with numbers"
    if origin is tuple:
        return "a list of strings"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[hint]


def build(cls: type, data: dict[str, object], *, source: str):
    """An instance of the dataclass `cls` from checked `data`: nested tables become their classes."""
    values = checked(cls, data, source=source)
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if dataclasses.is_dataclass(hints[key]):
            values[key] = hints[key](**value)
    try:
        return cls(**values)
    except TypeError as exc:  # a required field missing
        raise ValueError(f"{source}: {exc}") from None
