"""Configuration shared by every notebook: step dataclasses whose fields can be overridden.

Each pipeline step has a dataclass (``TrainConfig``, ``ScrapeConfig``, ...) defined in its own
module on top of :class:`StepConfig`. One field per line, with a trailing comment saying what it
does. A value is decided in this order, later wins:

1. the dataclass default,
2. the notebook's ``parameters`` cell (UPPER_CASE names, one per field; papermill injects here),
3. the step's smoke preset when ``SMOKE=1`` (a tiny offline run on a CPU),
4. an environment variable with the field's UPPER_CASE name (``MAX_STEPS=20 jupyter ...``).

Environment strings are converted to the field's type: ``1/true/yes/on`` for booleans,
comma-separated or JSON lists for list fields, ``none`` or an empty string for optional fields.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping

TRUE = {"1", "true", "yes", "on", "y", "t"}
FALSE = {"0", "false", "no", "off", "n", "f", ""}


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message says which field and why."""


def smoke() -> bool:
    """True when ``SMOKE=1`` (or true/yes/on) is set: every notebook shrinks to a tiny offline run."""
    return os.environ.get("SMOKE", "0").strip().lower() in TRUE - {""}


def env_flag(name: str, default: bool = False) -> bool:
    """A boolean from the environment, with a clear error for values that are not booleans."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return _coerce(raw, bool, name)


def _strip_optional(tp):
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(raw: Any, tp, name: str):
    """Convert ``raw`` (usually a string from the environment) to type ``tp`` or raise ConfigError."""
    tp, optional = _strip_optional(tp)
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if optional and text.lower() in ("none", "null", ""):
        return None
    origin = typing.get_origin(tp)
    try:
        if tp is bool:
            low = text.lower()
            if low in TRUE:
                return True
            if low in FALSE:
                return False
            raise ValueError("expected one of 1/0, true/false, yes/no, on/off")
        if tp is int:
            return int(float(text)) if re.fullmatch(r"-?\d+(\.0*)?(e\d+)?", text.lower()) else int(text)
        if tp is float:
            return float(text)
        if tp is str:
            return raw
        if origin in (list, tuple) or tp in (list, tuple):
            if text.startswith("["):
                items = json.loads(text)
            else:
                items = [t.strip() for t in text.split(",") if t.strip()]
            args = typing.get_args(tp)
            if args and args[0] is not Ellipsis:
                items = [_coerce(str(i) if not isinstance(i, str) else i, args[0], name) for i in items]
            return tuple(items) if (origin is tuple or tp is tuple) else list(items)
        if origin is dict or tp is dict:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{name}={raw!r}: cannot read it as {getattr(tp, '__name__', tp)} ({exc})") from None
    return raw


def _field_comments(cls) -> dict[str, str]:
    """Trailing ``# comment`` of each field line in the class source (for ``describe``)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for line in src.splitlines():
            m = re.match(r"\s+(\w+)\s*:[^=#]*(?:=[^#]*)?#\s*(.*)$", line)
            if m:
                out[m.group(1)] = m.group(2).strip()
    return out


@dataclasses.dataclass
class StepConfig:
    """Base of every step's configuration. Subclasses add fields and a ``smoke_preset``."""

    @classmethod
    def smoke_preset(cls) -> dict[str, Any]:
        """Field values for a tiny offline CPU run (``SMOKE=1``). Subclasses override."""
        return {}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
                    **overrides):
        """Build the config from a notebook's parameters (``globals()``), smoke preset and environment.

        ``params`` holds UPPER_CASE names (a notebook's globals); names that are not fields are
        ignored. ``overrides`` are lower-case field values given in code (after the parameters cell).
        """
        environ = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name in cls.field_names():
            if params is not None and name.upper() in params:
                values[name] = _coerce(params[name.upper()], hints[name], name.upper())
                sources[name] = "parameters"
        for name, value in overrides.items():
            if name not in hints:
                raise ConfigError(f"{cls.__name__} has no field {name!r}; fields: {', '.join(cls.field_names())}")
            values[name] = value
            sources[name] = "code"
        is_smoke = environ.get("SMOKE", "0").strip().lower() in TRUE - {""}
        if is_smoke:
            for name, value in cls.smoke_preset().items():
                values[name] = value
                sources[name] = "SMOKE preset"
        for name in cls.field_names():
            if name.upper() in environ:
                values[name] = _coerce(environ[name.upper()], hints[name], name.upper())
                sources[name] = "environment"
        cfg = cls(**values)
        cfg._sources = sources  # type: ignore[attr-defined]
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ConfigError for values that cannot work. Subclasses extend."""

    def replace(self, **changes):
        new = dataclasses.replace(self, **changes)
        new._sources = dict(getattr(self, "_sources", {}), **{k: "code" for k in changes})  # type: ignore[attr-defined]
        new.validate()
        return new

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike):
        data = json.loads(Path(path).read_text())
        known = {k: v for k, v in data.items() if k in cls.field_names()}
        return cls(**known)

    def defaults(self) -> dict[str, Any]:
        """Each field's dataclass default."""
        out = {}
        for f in dataclasses.fields(self):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                out[f.name] = f.default_factory()  # type: ignore[misc]
        return out

    def changed(self) -> dict[str, tuple[Any, str]]:
        """Fields whose value differs from the dataclass default: {name: (value, where it came from)}."""
        defaults, sources = self.defaults(), getattr(self, "_sources", {})
        return {f.name: (getattr(self, f.name), SOURCE_LABELS.get(sources.get(f.name, "code"), sources.get(f.name, "code")))
                for f in dataclasses.fields(self)
                if f.name not in defaults or getattr(self, f.name) != defaults[f.name]}

    def describe(self, full: bool = False) -> str:
        """What this run changes: the fields that differ from the defaults, each with its value,
        where it came from (the parameters cell, the SMOKE preset, an environment variable, or code
        in the notebook) and what it does. ``full=True``: every field, defaults included."""
        comments = _field_comments(type(self))
        sources = getattr(self, "_sources", {})
        fields = dataclasses.fields(self)
        changed = self.changed()
        if full:
            rows = [(f.name, getattr(self, f.name), SOURCE_LABELS.get(sources.get(f.name, "default"),
                                                                      sources.get(f.name, "default")))
                    for f in fields]
            head = f"{type(self).__name__}, all {len(fields)} settings:"
        else:
            rows = [(name, value, src) for name, (value, src) in changed.items()]
            if not rows:
                return (f"{type(self).__name__}: every setting at its default "
                        f"(cfg.describe(full=True) lists all {len(fields)}).")
            head = (f"{type(self).__name__}: {len(rows)} of {len(fields)} settings differ from the defaults "
                    f"(print(cfg.describe(full=True)) lists all):")
        smoke_rows = [] if full else [r for r in rows if r[2] == "SMOKE preset"]
        rows = [r for r in rows if r not in smoke_rows]
        rows = [(name, _short(repr(value), 60 if not full else 40), src, comments.get(name, "")) for name, value, src in rows]
        lines = [head]
        if rows:
            w0 = max(len(r[0]) for r in rows)
            w1 = max(len(r[1]) for r in rows)
            w2 = max(len(r[2]) for r in rows)
            for name, value, src, comment in rows:
                lines.append(f"  {name:<{w0}}  {value:<{w1}}  {src:<{w2}}  {comment}".rstrip())
        if smoke_rows:  # the same for every SMOKE run: one paragraph
            import textwrap
            text = ", ".join(f"{name}={_short(repr(value), 40)}" for name, value, _ in smoke_rows)
            lines += textwrap.wrap(f"from the SMOKE preset (a tiny offline CPU run): {text}", 110,
                                   initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False)
        return "\n".join(lines)


SOURCE_LABELS = {"parameters": "parameters cell", "environment": "environment", "SMOKE preset": "SMOKE preset",
                 "code": "set in code", "default": "default"}


def _short(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters in the middle (a path keeps its start and its end)."""
    if len(text) <= width:
        return text
    keep = width - 3
    return text[: keep // 2] + "..." + text[len(text) - (keep - keep // 2):]
