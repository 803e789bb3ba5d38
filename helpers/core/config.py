"""Configuration shared by every notebook: step dataclasses whose fields can be overridden.

Each pipeline step has a dataclass (``TrainConfig``, ``ScrapeConfig``, ...) defined in its own
module on top of :class:`StepConfig`. One field per line, with a trailing comment saying what it
does. Every name in a notebook's ``parameters`` cell is a field of the configs that notebook builds
(the ``notebooks=`` of its class); where a notebook's cell starts from another value than the dataclass
default (notebook 03 pretrains with ``LORA_R = 64``), the config's ``notebook_defaults()`` says so,
and ``tests/test_notebooks.py`` checks every cell against the dataclass and that table. Each
parameter's Colab form description (the ``# @markdown `NAME`: ...`` line above it) is the field's
comment, written there by ``tools/sync_notebooks.py`` (:func:`notebook_comments_for`): the form and
``describe()`` say one thing. A notebook that needs its own sentence for a field declares it in the
config's ``notebook_comments()``, the one place the tooling reads.

``XConfig.from_params(globals(), **in_code)`` decides each value in this order, later wins:

1. the dataclass default,
2. the notebook's ``parameters`` cell (UPPER_CASE names, one per field; papermill injects here),
3. the step's smoke preset when ``SMOKE=1`` (a tiny offline run on a CPU),
4. an environment variable with the field's UPPER_CASE name (``MAX_STEPS=20 jupyter ...``),
5. values the notebook sets in code (``from_params(..., mode="pretrain")``, ``cfg.replace(...)``):
   what the code says is final. Notebooks set in code only what they derive from the settings
   (a run's folder from ``cfg.run_name``), never a parameter's own value, so 2-4 stay in force.

A name that is no setting is an error, with the near miss: an UPPER_CASE name of the parameters
cell (read from the notebook's cell history, or every UPPER_CASE key of a plain mapping) that is
no field of the notebook's configs raises :class:`ConfigError`; an environment variable that is a
near miss of a field (``MAX_STEP=5``) gives a :class:`ConfigWarning` (the environment is shared
with every other program, so a variable that is no setting is not an error by itself).

Strings (environment variables, JSON files, a sweep's GRID) are converted to the field's type by
:func:`coerce_field`: ``1/true/yes/on`` for booleans, comma-separated or JSON lists for list fields,
JSON objects for dict fields, ``none`` or an empty string for optional fields; other values must
already have the field's type (an int is accepted for a float).
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import json
import os
import re
import types
import typing
import warnings
from pathlib import Path
from typing import Any, ClassVar, Mapping

TRUE = {"1", "true", "yes", "on", "y", "t"}
FALSE = {"0", "false", "no", "off", "n", "f", ""}


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message says which field and why."""


class ConfigWarning(UserWarning):
    """An environment variable that looks like a setting but is none (a near miss of a field)."""


# The configs each notebook builds from its parameters cell, in the order they are defined: each
# step's class names its notebooks (``class TrainConfig(StepConfig, notebooks=("03", "04"))``).
# Filled as the step modules are imported; ``helpers.notebooks`` imports them all.
_REGISTRY: dict[str, list[type]] = {}
# UPPER_CASE names the setup cell defines (not parameters), and variables that steer the kit itself.
SETUP_NAMES = frozenset({"KIT"})
CONTROL_VARIABLES = frozenset({"SMOKE"})
PARAMETER_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def smoke() -> bool:
    """True when ``SMOKE=1`` (or true/yes/on) is set: every notebook shrinks to a tiny offline run."""
    return os.environ.get("SMOKE", "0").strip().lower() in TRUE - {""}


def env_flag(name: str, default: bool = False) -> bool:
    """A boolean from the environment, with a clear error for values that are not booleans."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return coerce(raw, bool, name)


def _strip_optional(tp):
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def coerce(raw: Any, tp, name: str):
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
                items = [coerce(str(i) if not isinstance(i, str) else i, args[0], name) for i in items]
            return tuple(items) if (origin is tuple or tp is tuple) else list(items)
        if origin is dict or tp is dict:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{name}={raw!r}: cannot read it as {getattr(tp, '__name__', tp)} ({exc})") from None
    return raw


def field_types(cls) -> dict[str, Any]:
    """Each field's type (resolved annotations) of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _near(name: str, fields: list[str]) -> list[str]:
    """Fields close to ``name`` (difflib), spelt like ``name`` (UPPER_CASE or lower-case)."""
    close = difflib.get_close_matches(name.lower(), fields, n=3, cutoff=0.6)
    return [c.upper() if name.isupper() else c for c in close]


def unknown_field(cls, name: str, where: str = "", others: tuple = ()) -> ConfigError:
    """The error for a name that is no field of ``cls`` (nor of ``others``), with the near misses:
    "GRID names 'learning_rat', which is not a TrainConfig field; did you mean 'learning_rate'?"
    (``where="GRID"``), else "LERNING_RATE is not a field of TrainConfig; did you mean ...?"."""
    classes = (cls, *others)
    fields = [n for c in classes for n in c.field_names()]
    owner = " or ".join(c.__name__ for c in classes)
    head = (f"{where} names {name!r}, which is not a {owner} field" if where else
            f"{name} is not a field of {owner}")
    close = _near(name, fields)
    return ConfigError(head + (f"; did you mean {', '.join(map(repr, close))}?" if close else
                               f". Fields: {', '.join(f.upper() if name.isupper() else f for f in fields)}."))


def coerce_field(cls, name: str, value: Any, where: str = "") -> Any:
    """``value`` converted to the type of field ``name`` of config dataclass ``cls``, or a ConfigError.

    A string is read as an environment variable would be (``"2e-4"``, ``"yes"``, ``"a, b"``, JSON for
    lists and dicts); any other value must have the field's type already (an int is taken for a float,
    a whole float for an int). ``where`` is what the value is part of, e.g. ``"GRID"``: messages then
    say ``GRID['lora_r']=16.5``; without it they name the parameter, ``LORA_R=16.5``. An unknown
    ``name`` is an error that suggests the near miss."""
    hints = field_types(cls)
    if name not in hints:
        raise unknown_field(cls, name, where)
    label = f"{where}[{name!r}]" if where else name.upper()
    return _check_type(value, hints[name], label)


def _check_type(value: Any, tp, label: str) -> Any:
    inner, optional = _strip_optional(tp)
    if value is None and optional:
        return None
    if isinstance(value, str) and (inner is not str or optional):
        return coerce(value, tp, label)
    origin = typing.get_origin(inner)
    if inner is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{label}={value!r}: expected true or false.")
        return value
    if inner is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise ConfigError(f"{label}={value!r}: expected a whole number.")
        return int(value)
    if inner is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{label}={value!r}: expected a number.")
        return float(value)
    if inner is str:
        if not isinstance(value, str):
            raise ConfigError(f"{label}={value!r}: expected a string.")
        return value
    if origin in (list, tuple) or inner in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{label}={value!r}: expected a list.")
        args = typing.get_args(inner)
        if args and args[0] is not Ellipsis:
            value = [_check_type(v, args[0], label) for v in value]
        return tuple(value) if (origin is tuple or inner is tuple) else list(value)
    if origin is dict or inner is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{label}={value!r}: expected a JSON object {{...}}.")
        return value
    return value


def registered_configs(notebook: str) -> list[type]:
    """The config classes notebook ``notebook`` ("04", or "04_finetune") builds, among the step
    modules imported so far (``helpers.notebooks.notebook_configs`` imports every step first)."""
    return list(_REGISTRY.get(str(notebook)[:2], []))


def _kit_configs() -> list[type]:
    seen: list[type] = []
    for classes in _REGISTRY.values():
        seen += [c for c in classes if c not in seen]
    return seen


def siblings(cls) -> tuple[type, ...]:
    """The other configs built from the same parameters cell as ``cls`` (notebook 06: chat and export)."""
    out: list[type] = []
    for classes in _REGISTRY.values():
        if cls in classes:
            out += [c for c in classes if c is not cls and c not in out]
    return tuple(out)


def notebook_defaults_for(cls, notebook: str) -> dict[str, Any]:
    """What notebook ``notebook``'s parameters cell starts from for ``cls``: the dataclass defaults,
    with the notebook's own values (``cls.notebook_defaults()``) over them."""
    values = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
              for f in dataclasses.fields(cls)}
    values.update(cls.notebook_defaults().get(str(notebook)[:2], {}))
    return values


def notebook_comments_for(cls, notebook: str) -> dict[str, str]:
    """Each field's description in notebook ``notebook``'s parameters cell (its ``# @markdown`` line):
    the field's trailing comment, or the notebook's own sentence from ``cls.notebook_comments()``."""
    comments = field_comments(cls)
    comments.update(cls.notebook_comments().get(str(notebook)[:2], {}))
    return comments


def parameters_cell_names(source: str) -> list[str]:
    """UPPER_CASE names a parameters cell assigns, in order."""
    names: list[str] = []
    for node in ast.parse(source).body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        for t in targets:
            for n in ([t] if isinstance(t, ast.Name) else t.elts if isinstance(t, (ast.Tuple, ast.List)) else []):
                if isinstance(n, ast.Name) and PARAMETER_NAME.fullmatch(n.id) and n.id not in names:
                    names.append(n.id)
    return names


def parameter_names(params: Mapping[str, Any]) -> list[str]:
    """The parameters in ``params``: a notebook's ``globals()`` or a plain mapping.

    In a notebook (an IPython namespace with its cell history ``In``), the names the parameters
    cell assigns: the last cell run with ``# @param`` fields, and papermill's injected ``# Parameters``
    cell after it; other UPPER_CASE globals (constants of later cells) are no parameters. Elsewhere,
    every UPPER_CASE key whose value is plain data, but the setup cell's ``KIT``."""
    history = params.get("In")
    if isinstance(history, list) and history and all(isinstance(c, str) for c in history):
        marked = [i for i, c in enumerate(history) if "# @param" in c]
        start = marked[-1] if marked else 0
        cells = ([history[start]] if marked else []) + [
            c for c in history[start + 1 if marked else 0:] if c.lstrip().startswith("# Parameters")]
        if cells:
            try:
                return [n for c in cells for n in parameters_cell_names(c)]
            except SyntaxError:
                pass
    plain = (str, int, float, bool, list, tuple, dict, type(None))
    return [k for k, v in params.items()
            if isinstance(k, str) and PARAMETER_NAME.fullmatch(k) and k not in SETUP_NAMES and isinstance(v, plain)]


def _check_environment(cls, environ: Mapping[str, str]) -> None:
    """Warn about environment variables that are near misses of a field of ``cls`` (``MAX_STEP``)."""
    known = {n for c in (cls, *_kit_configs()) for n in c.field_names()}
    fields = cls.field_names()
    for key in environ:
        if not PARAMETER_NAME.fullmatch(key) or key.lower() in known or key in CONTROL_VARIABLES:
            continue
        close = difflib.get_close_matches(key.lower(), fields, n=1, cutoff=0.8)
        if close:
            warnings.warn(f"The environment variable {key}={environ[key]!r} is not a setting of {cls.__name__} and "
                          f"is ignored; did you mean {close[0].upper()}?", ConfigWarning, stacklevel=3)


def field_comments(cls) -> dict[str, str]:
    """Trailing ``# comment`` of each field line in the class source (``describe()``, the notebooks'
    forms). A long comment goes on below the field in comment lines whose text starts in the same
    column as the first line's, so that every line stays within the line length."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        name, column = None, -1
        for line in src.splitlines():
            m = re.match(r"\s+(\w+)\s*:[^=#]*(?:=[^#]*)?#\s*(.*)$", line)
            more = re.match(r"\s*#\s*(\S.*)$", line)
            if m:
                name, column = m.group(1), m.start(2)
                out[name] = m.group(2).strip()
            elif name and more and more.start(1) == column:
                out[name] += " " + more.group(1).strip()
            else:
                name = None
    return out


@dataclasses.dataclass
class StepConfig:
    """Base of every step's configuration. Subclasses add fields and a ``smoke_preset``, and name
    the notebooks whose parameters cell they read: ``class XConfig(StepConfig, notebooks=("03",))``."""

    # Fields that describe() shows whole, never cut in the middle (a sweep's GRID: the values searched).
    describe_whole: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, notebooks: tuple[str, ...] = (), **kwargs):
        super().__init_subclass__(**kwargs)
        for nb in notebooks:
            _REGISTRY.setdefault(nb, []).append(cls)

    @classmethod
    def smoke_preset(cls) -> dict[str, Any]:
        """Field values for a tiny offline CPU run (``SMOKE=1``). Subclasses override."""
        return {}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def notebook_defaults(cls) -> dict[str, dict[str, Any]]:
        """Per notebook ("03"), the values its parameters cell starts from where they are not the
        dataclass defaults (checked by tests/test_notebooks.py). Subclasses override."""
        return {}

    @classmethod
    def notebook_comments(cls) -> dict[str, dict[str, str]]:
        """Per notebook ("03"), {field: description} where its parameters cell must describe a field
        otherwise than the field's trailing comment (which the other notebooks and ``describe()``
        show). tools/sync_notebooks.py writes them; tests/test_notebooks.py checks them. Subclasses override."""
        return {}

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
                    **overrides):
        """Build the config from a notebook's parameters (``globals()``), smoke preset, environment
        and values set in code, in the order of the module docstring (code last).

        ``params`` holds UPPER_CASE names (a notebook's globals, or a plain mapping); a parameter
        that is no field of this config (or of the configs built beside it from the same cell,
        :func:`siblings`) raises ConfigError with the near miss. ``overrides`` are lower-case field
        values set in code: they win over everything else."""
        environ = os.environ if environ is None else environ
        hints = field_types(cls)
        fields = cls.field_names()
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        if params is not None:
            others = siblings(cls)
            other_fields = {n for c in others for n in c.field_names()}
            for key in parameter_names(params):
                if key.lower() not in hints and key.lower() not in other_fields:
                    raise unknown_field(cls, key, "The parameters cell", others)
            for name in fields:
                if name.upper() in params:
                    values[name] = coerce_field(cls, name, params[name.upper()])
                    sources[name] = "parameters"
        for name in overrides:
            if name not in hints:
                close = _near(name, fields)
                raise ConfigError(f"{cls.__name__} has no field {name!r}"
                                  + (f"; did you mean {', '.join(map(repr, close))}?" if close else
                                     f"; fields: {', '.join(fields)}"))
        if environ.get("SMOKE", "0").strip().lower() in TRUE - {""}:
            for name, value in cls.smoke_preset().items():
                values[name] = value
                sources[name] = "SMOKE preset"
        _check_environment(cls, environ)
        for name in fields:
            if name.upper() in environ:
                values[name] = coerce_field(cls, name, environ[name.upper()])
                sources[name] = "environment"
        for name, value in overrides.items():
            values[name] = value
            sources[name] = "code"
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
        return {
            f.name: (getattr(self, f.name), SOURCE_LABELS.get(sources.get(f.name, "code"), sources.get(f.name, "code")))
            for f in dataclasses.fields(self)
            if f.name not in defaults or getattr(self, f.name) != defaults[f.name]
        }

    def describe(self, full: bool = False) -> str:
        """What this run changes: the fields that differ from the defaults, each with its value,
        where it came from (the parameters cell, the SMOKE preset, an environment variable, or code
        in the notebook) and what it does. ``full=True``: every field, defaults included."""
        comments = field_comments(type(self))
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
        whole = type(self).describe_whole
        rows = [
            (name, repr(value) if name in whole else _short(repr(value), 60 if not full else 40), src,
             comments.get(name, ""))
            for name, value, src in rows
        ]
        lines = [head]
        if rows:
            w0 = max(len(r[0]) for r in rows)
            w1 = max((len(r[1]) for r in rows if r[0] not in whole), default=0)
            w2 = max(len(r[2]) for r in rows)
            for name, value, src, comment in rows:
                if len(value) > w1:  # a whole value wider than the column: on its own line, the rest below it
                    lines.append(f"  {name:<{w0}}  {value}")
                    name, value = "", ""
                lines.append(f"  {name:<{w0}}  {value:<{w1}}  {src:<{w2}}  {comment}".rstrip())
        if smoke_rows:  # the same for every SMOKE run: one paragraph
            import textwrap
            text = ", ".join(f"{name}={repr(value) if name in whole else _short(repr(value), 40)}"
                             for name, value, _ in smoke_rows)
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
