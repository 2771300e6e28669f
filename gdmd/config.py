"""Typed, frozen configs loaded from YAML: an unknown key or a wrong type fails with its name.

`load(cls, path, section=None)` reads a YAML file (optionally one top-level section of it)
into the dataclass `cls`, recursing into nested dataclass fields. Errors are `UserError`s
that name the file and the dotted key, e.g.
`config/pretrain.yaml: teacher.lr: expected float, got 'fast'`.

Ranges: a field made with `param(default, ge=..., gt=..., le=..., lt=...)` is checked
against its bounds, every float must be finite (NaN and inf are refused everywhere), and a
dataclass may define `check(self) -> (key, message) | None` for rules between fields
(e.g. tau_min < tau_max). All fail with the dotted key: `train.gen_every: must be >= 1, got 0`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path

import yaml

from .io import UserError


def param(default, *, ge=None, gt=None, le=None, lt=None):
    """A config field with bounds, checked by `from_dict` (see the module docstring)."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    if isinstance(default, (list, dict)):
        raise TypeError("mutable defaults are not allowed in frozen configs")
    return dataclasses.field(default=default, metadata={"bounds": bounds})


_BOUNDS = {"ge": (">=", lambda v, b: v >= b), "gt": (">", lambda v, b: v > b), "le": ("<=", lambda v, b: v <= b),
           "lt": ("<", lambda v, b: v < b)}  # fmt: skip


def _check_bounds(value, bounds: dict, where: str) -> None:
    if value is None:
        return
    for name, bound in bounds.items():
        op, ok = _BOUNDS[name]
        if not ok(value, bound):
            raise UserError(f"{where}: must be {op} {bound}, got {value!r}")


def _type_name(t) -> str:
    return getattr(t, "__name__", str(t))


def _convert(value, tp, where: str):
    origin = typing.get_origin(tp)
    if tp is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise UserError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
    if tp is dict:  # free-form mapping (e.g. a diffusers model config), checked by its consumer
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = typing.get_args(tp)
        return {_convert(k, kt, where): _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise UserError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected float, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected int, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise UserError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp} at {where}")


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass `cls` from `data`; unknown keys and wrong types raise UserError."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(f"{where + ': ' if where else ''}unknown key {unknown[0]!r}; known: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}.{name}" if where else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key)
            _check_bounds(kwargs[name], f.metadata.get("bounds", {}), key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"{key}: required key is missing")
    obj = cls(**kwargs)
    problem = obj.check() if hasattr(obj, "check") else None
    if problem:
        key, message = problem
        raise UserError(f"{where + '.' if where else ''}{key}: {message}")
    return obj


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    return data


def load(cls, path: str | Path, section: str | None = None):
    """Load `cls` from a YAML file, or from one top-level section of it."""
    data = read_yaml(path)
    if section is not None:
        if section not in data:
            raise UserError(f"{path}: missing section {section!r}")
        data = data[section]
    try:
        return from_dict(cls, data, section or "")
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def to_dict(cfg) -> dict:
    """A config dataclass as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))
