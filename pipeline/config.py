"""Typed config: YAML parsed once into frozen dataclasses, with one-line errors.

Each config section is a frozen dataclass whose fields are declared with :func:`param`, which
carries the default and a one-line help text. ``configs/default.yaml`` is generated from those
declarations (``posecap defaults``), so it always lists every param with its comment.

A session config is a YAML mapping::

    session_dir: session         # where artifacts go, relative to this file
    crop: {...}                  # one section per stage or shared section; every key optional

Unknown keys are errors naming the key and suggesting the closest valid one; wrong types name the
key, the expected type and the value.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.artifacts import load_yaml_file
from pipeline.errors import ArtifactError, ConfigError


def param(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse
    """Declare a config field with its default and a one-line help text.

    Mutable defaults (lists, dicts) are copied per instance.
    """
    meta = {"help": help}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: typing.cast(Any, type(default))(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Config:
    """A parsed config.

    Attributes:
        sections: section name -> dataclass instance (every known section, defaults filled in).
        session_dir: absolute session folder, or None when the config names none.
        source: the config file, or None for pure defaults.
    """

    sections: Mapping[str, Any]
    session_dir: Path | None = None
    source: Path | None = None

    @property
    def config_dir(self) -> Path:
        return self.source.parent if self.source is not None else Path.cwd()

    def __getitem__(self, name: str) -> Any:
        return self.sections[name]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp) if a is not Ellipsis)
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


class _Mismatch(Exception):
    pass


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:
    """Convert a YAML value to ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad() -> ConfigError:
        return ConfigError(
            f"{where}: key '{key}' expects {_type_name(tp)}, got {value!r} ({type(value).__name__})"
        )

    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, where)
            except ConfigError:
                continue
        raise bad()
    if origin is typing.Literal:
        if value in args:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"{where}: key '{key}' expects {_type_name(tp)}, got {value!r}{hint}"
        )
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise bad()
        return from_mapping(tp, value, where, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad()
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise bad()
            return tuple(_convert(v, a, f"{key}[{i}]", where) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_convert(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise bad()
        vt = args[1] if args else Any
        return {str(k): _convert(v, vt, f"{key}.{k}", where) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad()
    if tp is Path:
        if isinstance(value, str):
            return Path(value)
        raise bad()
    raise bad()


def from_mapping(cls: type, data: Mapping[str, Any] | None, where: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and types.

    Args:
        cls: a dataclass type whose fields all have defaults.
        data: the YAML mapping (None means all defaults).
        where: the file name used in error messages.
        prefix: dotted key prefix for messages (``"crop."``).
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: key '{prefix.rstrip('.')}' expects a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"{where}: unknown key '{prefix}{key}'{hint}")
        kwargs[key] = _convert(value, hints[key], f"{prefix}{key}", where)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: section '{prefix.rstrip('.') or cls.__name__}': {exc}") from None
    return obj


def load_config(path: str | Path | None, sections: Mapping[str, type],
                session_dir: str | Path | None = None) -> Config:
    """Parse a session config file into a :class:`Config`.

    Args:
        path: the YAML file, or None for defaults only.
        sections: section name -> dataclass type, for every known section.
        session_dir: overrides the file's ``session_dir`` (used by ``posecap <stage> SESSION_DIR``).
    """
    raw: Mapping[str, Any] = {}
    source = None
    if path is not None:
        source = Path(path).resolve()
        try:
            loaded = load_yaml_file(source)
        except ArtifactError as exc:
            raise ConfigError(str(exc)) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{source}: expected a YAML mapping of sections, got {type(loaded).__name__}")
        raw = loaded
    where = str(source) if source else "<defaults>"
    valid = ["session_dir", *sections]
    parsed: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "session_dir":
            continue
        if key not in sections:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid sections: {', '.join(valid)}"
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")
        parsed[key] = from_mapping(sections[key], value, where, prefix=f"{key}.")
    for name, cls in sections.items():
        parsed.setdefault(name, from_mapping(cls, None, where))
    base = source.parent if source else Path.cwd()
    chosen = session_dir if session_dir is not None else raw.get("session_dir")
    if chosen is not None and not isinstance(chosen, (str, Path)):
        raise ConfigError(f"{where}: key 'session_dir' expects str, got {chosen!r}")
    resolved = (base / chosen).resolve() if chosen is not None else None
    return Config(sections=parsed, session_dir=resolved, source=source)


def _yaml_scalar(value: Any) -> str:
    import yaml

    from pipeline.artifacts import to_plain

    value = to_plain(dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def render_defaults(sections: Mapping[str, type], header: str = "") -> str:
    """Render every section's params with their defaults and help as commented YAML."""
    lines = [header.rstrip(), ""] if header else []
    lines.append("session_dir: null   # where artifacts go, relative to this file (posecap run needs it)")
    for name, cls in sections.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        lines.append("")
        lines.append(f"# {doc}" if doc else f"# {name}")
        lines.append(f"{name}:")
        defaults = cls()
        for f in dataclasses.fields(cls):
            help_text = f.metadata.get("help")
            if not help_text:
                raise ValueError(f"{cls.__name__}.{f.name} has no help text; declare it with param()")
            lines.append(f"  {f.name}: {_yaml_scalar(getattr(defaults, f.name))}   # {help_text}")
    return "\n".join(lines) + "\n"
