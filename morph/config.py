"""User settings: a flat TOML file, `config.toml` in the user's config folder.

The folder is `$MORPH_CONFIG_DIR` if set, else `platformdirs.user_config_dir("morph")`; user themes live
in its `themes/` subfolder. Every value is validated; a problem is one `InputError` line naming the file
and the key. Example:

    model = "gpt2"
    sae = "gpt2-small-res-jb:blocks.8.hook_resid_pre"
    device = "auto"
    server = "http://127.0.0.1:8765"   # optional: a `morph serve` engine instead of a local model
    debounce_ms = 300
    theme = "morph-paper"
    soft_wrap = true
    labels_fetch = "always"      # fetch Neuronpedia's explanations of a registry SAE on its first load

    [keys]
    save = "ctrl+s"
    find = "ctrl+f"
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from morph.editor.actions import default_keys
from morph.errors import InputError
from morph.textio import read_document, write_document

__all__ = [
    "DEFAULT_KEYS",
    "Settings",
    "config_dir",
    "config_path",
    "load_settings",
    "parse_settings",
    "render_settings",
    "save_settings",
    "set_setting",
    "themes_dir",
    "toml_value",
    "with_updates",
]

DEFAULT_KEYS: dict[str, str] = default_keys()
"""Action name -> Textual key string ('ctrl+s', 'f1', several separated by commas): the remappable actions of the
editor's one action registry (morph.editor.actions, which imports no Textual), with their default keys."""

LABELS_FETCH = ("never", "always")
"""`labels_fetch`: whether the first load of an SAE with a Neuronpedia id may download its explanations."""

_KEY_RE = re.compile(r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*(,[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*)*$")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_THEME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _meta(kind: str, help: str, lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"kind": kind, "help": help, "lo": lo, "hi": hi}


@dataclass(frozen=True)
class Settings:
    """All user settings with their defaults."""

    model: str | None = field(default=None, metadata=_meta("opt_str", "model name or folder"))
    sae: str | None = field(default=None, metadata=_meta("opt_str", "SAE release:id or folder"))
    device: str = field(default="auto", metadata=_meta("device", "auto, cpu, mps, cuda or cuda:N"))
    server: str | None = field(default=None, metadata=_meta(
        "opt_str", "URL of a `morph serve` engine to use instead of a local model (key: $MORPH_SECRET_KEY)"))
    debounce_ms: int = field(default=300, metadata=_meta("int", "pause before analysis", 0, 10_000))
    theme: str = field(default="morph-dark", metadata=_meta("theme", "theme name"))
    soft_wrap: bool = field(default=True, metadata=_meta("bool", "wrap long lines"))
    markdown: bool = field(default=True, metadata=_meta("bool", "style Markdown as you write"))
    line_numbers: bool = field(default=False, metadata=_meta("bool", "show line numbers"))
    autosave_seconds: float = field(
        default=2.0, metadata=_meta("float", "most seconds unsaved edits wait for the recovery file", 0.5, 3600)
    )
    analysis_max_chars: int = field(
        default=200_000,
        metadata=_meta("int", "documents longer than this are not analysed live", 1_000, 100_000_000),
    )
    max_file_mb: float = field(
        default=50.0, metadata=_meta("float", "largest file Morph opens, in MB", 0.001, 4096)
    )
    labels_fetch: str = field(
        default="never",
        metadata=_meta("labels_fetch", "never, or always: fetch Neuronpedia's explanations on an SAE's first load"),
    )
    neuronpedia_url: str | None = field(
        default=None, metadata=_meta("opt_str", "Neuronpedia's export bucket (or a mirror); $MORPH_NEURONPEDIA_URL wins")
    )
    keys: dict[str, str] = field(
        default_factory=lambda: dict(DEFAULT_KEYS), metadata=_meta("keys", "action -> key")
    )
    source: Path | None = field(default=None, compare=False, metadata=_meta("internal", ""))
    """The file these settings were read from (not a setting)."""

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)


_FIELDS = {f.name: f for f in fields(Settings) if f.metadata["kind"] != "internal"}


def config_dir() -> Path:
    """`$MORPH_CONFIG_DIR`, or the platform's user config folder for morph."""
    return Path(os.environ.get("MORPH_CONFIG_DIR") or platformdirs.user_config_dir("morph"))


def config_path() -> Path:
    return config_dir() / "config.toml"


def themes_dir() -> Path:
    """Where user themes (`*.toml`) are looked for."""
    return config_dir() / "themes"


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _range_text(lo: float | None, hi: float | None) -> str:
    def num(x: float) -> str:
        return f"{x:g}" if isinstance(x, float) else f"{x:,}".replace(",", "_")

    return f" from {num(lo)} to {num(hi)}" if lo is not None and hi is not None else ""


def _check(name: str, value: Any, where: str) -> Any:
    meta = _FIELDS[name].metadata
    kind, lo, hi = meta["kind"], meta["lo"], meta["hi"]

    def bad(expected: str) -> InputError:
        return InputError(f"{where}: {name} must be {expected}, not {value!r} ({_type_name(value)})")

    if kind == "opt_str":
        if value is None:
            return None
        if not isinstance(value, str):
            raise bad("a string")
        return value.strip() or None
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(f"an integer{_range_text(lo, hi)}")
        if not lo <= value <= hi:
            raise InputError(f"{where}: {name} must be{_range_text(lo, hi)}, not {value}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad(f"a number{_range_text(float(lo), float(hi))}")
        if not lo <= value <= hi:
            raise InputError(f"{where}: {name} must be{_range_text(float(lo), float(hi))}, not {value}")
        return float(value)
    if kind == "device":
        if not isinstance(value, str) or not _DEVICE_RE.match(value):
            raise bad("auto, cpu, mps, cuda or cuda:N")
        return value
    if kind == "theme":
        if not isinstance(value, str) or not _THEME_RE.match(value):
            raise bad("a theme name (letters, digits, '-', '_', '.')")
        return value
    if kind == "labels_fetch":
        if value not in LABELS_FETCH:
            raise bad(" or ".join(f'"{v}"' for v in LABELS_FETCH))
        return value
    if kind == "keys":
        return _check_keys(value, where)
    raise AssertionError(kind)  # pragma: no cover


def _check_keys(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InputError(f"{where}: keys must be a table of action = \"key\", not {_type_name(value)}")
    keys = dict(DEFAULT_KEYS)
    for action, key in value.items():
        if action not in DEFAULT_KEYS:
            known = ", ".join(sorted(DEFAULT_KEYS))
            raise InputError(f"{where}: keys.{action} is not an action (known: {known})")
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise InputError(
                f"{where}: keys.{action} must be a key like \"ctrl+s\" or \"f5\", not {key!r}"
            )
        keys[action] = key
    owner: dict[str, str] = {}
    for action, spec in keys.items():
        for key in spec.split(","):
            if key in owner:
                raise InputError(
                    f"{where}: key \"{key}\" is bound to both {owner[key]} and {action} (in [keys])"
                )
            owner[key] = action
    return keys


def parse_settings(text: str, source: Path | str = "config.toml") -> Settings:
    """Validate TOML text into `Settings`; `source` names the file in error messages."""
    where = str(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: invalid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in _FIELDS:
            known = ", ".join(_FIELDS)
            raise InputError(f"{where}: unknown setting {name!r} (known: {known})")
        values[name] = _check(name, value, where)
    return Settings(**values, source=Path(source))


def load_settings(path: Path | None = None) -> Settings:
    """Read and validate the config file (default `config_path()`); defaults if it does not exist."""
    path = path or config_path()
    if not path.exists():
        return Settings(source=path)
    loaded = read_document(path, max_bytes=1024 * 1024)
    return parse_settings(loaded.text, path)


def toml_value(value: Any) -> str:
    """A TOML literal for a str, bool, int or float."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("TOML here takes finite numbers only")
        return repr(value)
    if isinstance(value, str):
        out = []
        for ch in value:
            if ch == '"':
                out.append('\\"')
            elif ch == "\\":
                out.append("\\\\")
            elif ch in "\b\t\n\f\r":
                out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{ord(ch):04X}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")


def _bare_or_quoted(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


def render_settings(settings: Settings) -> str:
    """TOML text holding the settings that differ from the defaults."""
    defaults = Settings()
    lines = ["# Morph settings. Unset values take their defaults.", ""]
    for name, f in _FIELDS.items():
        value = getattr(settings, name)
        if name == "keys" or value == getattr(defaults, name) or value is None:
            continue
        lines.append(f"{name} = {toml_value(value)}  # {f.metadata['help']}")
    changed = {a: k for a, k in settings.keys.items() if DEFAULT_KEYS.get(a) != k}
    if changed:
        lines += ["", "[keys]"]
        lines += [f"{_bare_or_quoted(a)} = {toml_value(k)}" for a, k in changed.items()]
    return "\n".join(lines) + "\n"


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write the whole config file (non-default values only) atomically; returns its path.

    This rewrites the file: use `set_setting` to change one value and keep the user's comments.
    """
    path = path or settings.source or config_path()
    text = render_settings(settings)
    parse_settings(text, path)  # never write a file we could not read back
    _write(path, text)
    return path


def set_setting(name: str, value: Any, path: Path | None = None) -> Settings:
    """Change one top-level setting in the config file, keeping everything else (comments too).

    The value is validated first; the file is created if needed and written atomically.
    Returns the settings now in the file.
    """
    path = path or config_path()
    if name not in _FIELDS or name == "keys":
        raise InputError(f"{path}: {name!r} is not a setting that can be set on its own")
    value = _check(name, value, str(path))
    if path.exists():
        loaded = read_document(path, max_bytes=1024 * 1024)
        text = loaded.text
        parse_settings(text, path)  # refuse to edit a file that is already broken
    else:
        loaded, text = None, ""
    lines = text.split("\n") if text else []
    top_end = next((i for i, line in enumerate(lines) if re.match(r"\s*\[", line)), len(lines))
    key_re = re.compile(rf"\s*(?:{re.escape(name)}|\"{re.escape(name)}\"|'{re.escape(name)}')\s*=")
    new_line = None if value is None else f"{name} = {toml_value(value)}"
    for i in range(top_end):
        if key_re.match(lines[i]):
            if new_line is None:
                del lines[i]
            else:
                lines[i] = new_line
            break
    else:
        if new_line is not None:
            insert_at = top_end
            while insert_at > 0 and not lines[insert_at - 1].strip():
                insert_at -= 1
            lines.insert(insert_at, new_line)
            if insert_at + 1 < len(lines) and lines[insert_at + 1].strip():
                lines.insert(insert_at + 1, "")
    new_text = "\n".join(lines)
    if new_text and not new_text.endswith("\n"):
        new_text += "\n"
    settings = parse_settings(new_text, path)
    _write(path, new_text, loaded)
    return settings


def _write(path: Path, text: str, like: Any = None) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    write_document(path, text, like)


def with_updates(settings: Settings, **changes: Any) -> Settings:
    """A copy of `settings` with validated changes (keyword names are setting names)."""
    where = str(settings.source or "settings")
    checked = {}
    for name, value in changes.items():
        if name not in _FIELDS:
            raise InputError(f"{where}: unknown setting {name!r}")
        checked[name] = _check(name, value, where)
    return replace(settings, **checked)

