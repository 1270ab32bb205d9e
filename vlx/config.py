"""YAML configs loaded into typed dataclasses that validate on load.

A recipe config is a dataclass; ``load_config(path, overrides)`` reads the YAML, applies
``--set a.b=c`` overrides, and converts the nested dicts into the recipe's dataclass,
raising ``ConfigError`` that names the file, the dotted key and what was expected.
Written by hand rather than with dacite/OmegaConf so that every error names the file and
key path in one line, and so the loader stays ~150 lines with no extra dependency.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config problem, in one line: file, dotted key, what was expected."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: key '{key}': expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: key '{key}': expected one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: key '{key}': expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: key '{key}': expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{key}[{i}]", where) for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{key}[{i}]", where) for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: key '{key}': expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _convert(v, vt, f"{key}.{k}", where) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: key '{key}': expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where, prefix=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: key '{key}': expected a string, got {value!r}")
    return value


def _field_default(f: dataclasses.Field, base: Any) -> Any:
    if base is not None:
        return getattr(base, f.name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def from_dict(cls: type[T], data: dict[str, Any], where: str = "<config>", prefix: str = "", base: Any = None) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError.

    Keys that ``data`` leaves out keep the field's own default (or ``base``'s value), also
    inside nested sections: ``--set model.text.preset=small`` changes that key alone."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: key '{prefix or '<root>'}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        dotted = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        close = [f for f in fields if f.startswith(unknown[0][:3])]
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(fields)})"
        raise ConfigError(f"{where}: unknown key '{dotted}'{hint}")
    kwargs = {}
    for name, f in fields.items():
        dotted = f"{prefix}.{name}" if prefix else name
        has_default = (
            base is not None or f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        if name in data:
            value = data[name]
            tp = hints[name]
            default = _field_default(f, base) if has_default else None
            # A section merges onto the default instance, unless tagged !replace (then the keys
            # it leaves out take its type's own defaults).
            merge = not isinstance(value, Replace)
            if merge and isinstance(value, dict) and dataclasses.is_dataclass(tp) and isinstance(default, tp):
                kwargs[name] = from_dict(tp, value, where=where, prefix=dotted, base=default)
            else:
                kwargs[name] = _convert(value, tp, dotted, where)
        elif base is not None:
            kwargs[name] = getattr(base, name)
        elif not has_default:
            raise ConfigError(f"{where}: missing required key '{dotted}'")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ checks
        raise ConfigError(f"{where}: {prefix or cls.__name__}: {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict[str, Any], overrides: list[str], where: str = "<config>") -> dict[str, Any]:
    """Apply ``a.b=c`` overrides (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=1e-4")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p, {}), dict):
                raise ConfigError(f"--set {item!r}: '{p}' in {where} is not a mapping")
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return data


class Replace(dict):
    """A mapping tagged ``!replace`` in YAML: under ``extends:`` it replaces the base's value
    instead of being deep-merged into it."""


class ReplaceList(list):
    """A list tagged ``!replace`` (lists always replace; the tag is accepted for symmetry)."""


class _Loader(yaml.SafeLoader):
    pass


def _construct_replace(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return Replace(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return ReplaceList(loader.construct_sequence(node, deep=True))
    raise yaml.constructor.ConstructorError(
        None, None, "!replace applies to a mapping or a list, not a single value", node.start_mark
    )


_Loader.add_constructor("!replace", _construct_replace)


def _plain(v: Any) -> Any:
    """``v`` with plain lists; ``Replace`` mappings stay marked, so that ``from_dict`` builds
    them from their type's defaults rather than merging them onto the recipe's."""
    if isinstance(v, dict):
        return type(v)({k: _plain(x) for k, x in v.items()})
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # SafeLoader + the !replace tag
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{at} is not valid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        raise ConfigError(f"{path}: config file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: mappings merge key by key, except a mapping tagged ``!replace``,
    which replaces the base's value whole; lists and single values always replace."""
    out = dict(base)
    for k, v in top.items():
        merge = isinstance(v, dict) and not isinstance(v, Replace) and isinstance(out.get(k), dict)
        out[k] = _deep_merge(out[k], v) if merge else v
    return out


def read_yaml_with_extends(path: str | Path, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read ``path``; an ``extends: base.yaml`` key (relative to the file) deep-merges a base
    file under it, so a ``_tiny`` twin lists only what differs. A mapping tagged ``!replace``
    replaces the base's mapping instead, and the keys it leaves out take their type's
    defaults (``text: !replace {name: minilm}`` drops the base's ``text.preset/kwargs``)."""
    return _plain(_read_extends(Path(path), _seen))


def _read_extends(path: Path, _seen: tuple[str, ...]) -> dict[str, Any]:
    data = read_yaml(path)
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: key 'extends': expected a file name, got {base!r}")
    base_path = (path.parent / base).resolve()
    if str(base_path) in _seen:
        raise ConfigError(f"{path}: key 'extends': cycle through {base_path}")
    if not base_path.is_file():
        raise ConfigError(f"{path}: key 'extends': {base_path} not found")
    return _deep_merge(_read_extends(base_path, _seen + (str(base_path),)), data)


def load_yaml_config(cls: type[T], path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Read ``path`` (following ``extends:``) into dataclass ``cls`` with overrides applied."""
    data = apply_overrides(read_yaml_with_extends(path), list(overrides), where=str(path))
    return from_dict(cls, data, where=str(path))
