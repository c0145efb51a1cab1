from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from morph.config import (
    DEFAULT_KEYS,
    Settings,
    config_dir,
    config_path,
    load_settings,
    parse_settings,
    render_settings,
    save_settings,
    set_setting,
    themes_dir,
    toml_value,
    with_updates,
)
from morph.errors import InputError


@pytest.fixture(autouse=True)
def cfg_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cfg"
    monkeypatch.setenv("MORPH_CONFIG_DIR", str(d))
    return d


def test_paths_follow_env(cfg_dir: Path) -> None:
    assert config_dir() == cfg_dir
    assert config_path() == cfg_dir / "config.toml"
    assert themes_dir() == cfg_dir / "themes"


def test_defaults_when_missing(cfg_dir: Path) -> None:
    s = load_settings()
    assert s == Settings()
    assert s.debounce_ms == 300 and s.theme == "morph-dark" and s.soft_wrap is True
    assert s.keys == DEFAULT_KEYS
    assert s.max_file_bytes == 50 * 1024 * 1024
    assert s.source == cfg_dir / "config.toml"


def test_load_values(cfg_dir: Path) -> None:
    cfg_dir.mkdir()
    (cfg_dir / "config.toml").write_text(
        'model = "gpt2"\nsae = "./my-sae"\ndevice = "cuda:1"\ndebounce_ms = 150\n'
        'theme = "morph-paper"\nsoft_wrap = false\nautosave_seconds = 2\n'
        '[keys]\nsave = "ctrl+w"\nhelp = "f1,question_mark"\n'
    )
    s = load_settings()
    assert (s.model, s.sae, s.device, s.debounce_ms) == ("gpt2", "./my-sae", "cuda:1", 150)
    assert s.theme == "morph-paper" and s.soft_wrap is False
    assert s.autosave_seconds == 2.0 and isinstance(s.autosave_seconds, float)
    assert s.keys["save"] == "ctrl+w" and s.keys["help"] == "f1,question_mark"
    assert s.keys["find"] == DEFAULT_KEYS["find"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("debounce_ms = 'fast'", r"cfg\.toml: debounce_ms must be an integer from 0 to 10_000, not 'fast' \(a string\)"),
        ("debounce_ms = 99999", r"debounce_ms must be from 0 to 10_000, not 99999"),
        ("debounce_ms = true", r"debounce_ms must be an integer"),
        ("soft_wrap = 1", r"soft_wrap must be true or false, not 1 \(an integer\)"),
        ("colour = 'red'", r"cfg\.toml: unknown setting 'colour' \(known: model, sae"),
        ("device = 'gpu'", r"device must be auto, cpu, mps, cuda or cuda:N"),
        ("theme = 'my theme!'", r"theme must be a theme name"),
        ("autosave_seconds = 0.0", r"autosave_seconds must be from 0\.5 to 3600, not 0\.0"),
        ("autosave_seconds = nan", r"autosave_seconds must be a number"),
        ("model = 3", r"model must be a string, not 3"),
        ("keys = 'ctrl+s'", r"keys must be a table"),
        ("[keys]\nfly = 'ctrl+k'", r"keys\.fly is not an action \(known: "),
        ("[keys]\nsave = 'ctrl s'", r"keys\.save must be a key like"),
        ("[keys]\nsave = 'ctrl+f'", r'key "ctrl\+f" is bound to both save and find'),
        ("debounce_ms = \nx = 1", r"cfg\.toml: invalid TOML: .*line 1"),
    ],
)
def test_validation_errors(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_settings(text, "/x/cfg.toml")
    assert "\n" not in str(info.value)


def test_load_error_names_file(cfg_dir: Path) -> None:
    cfg_dir.mkdir()
    (cfg_dir / "config.toml").write_text("debounce_ms = -1\n")
    with pytest.raises(InputError, match=str(cfg_dir / "config.toml") + ": debounce_ms"):
        load_settings()


def test_empty_model_means_unset() -> None:
    assert parse_settings('model = ""').model is None


@pytest.mark.parametrize(
    "value", ["plain", 'q"uote', "back\\slash", "tab\there", "new\nline", "bell\x07", "del\x7f", "é ✍", 3, -2, 0.25, True, False]
)
def test_toml_value_roundtrip(value: object) -> None:
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


def test_save_and_reload(cfg_dir: Path) -> None:
    s = with_updates(Settings(), theme="morph-light", debounce_ms=500, model="gpt2")
    s = Settings(**{**s.__dict__, "keys": {**DEFAULT_KEYS, "save": "f2", "toggle_panel": "f4"}})
    path = save_settings(s)
    assert path == cfg_dir / "config.toml"
    again = load_settings()
    assert again == s
    text = path.read_text()
    assert "soft_wrap" not in text  # defaults are not written
    assert "[keys]" in text and 'save = "f2"' in text


def test_render_defaults_is_valid_and_empty() -> None:
    text = render_settings(Settings())
    assert tomllib.loads(text) == {}


def test_with_updates_validates() -> None:
    with pytest.raises(InputError, match="debounce_ms"):
        with_updates(Settings(), debounce_ms="x")
    with pytest.raises(InputError, match="unknown setting"):
        with_updates(Settings(), nope=1)


def test_set_setting_keeps_comments_and_crlf(cfg_dir: Path) -> None:
    cfg_dir.mkdir()
    path = cfg_dir / "config.toml"
    path.write_bytes(
        b"# my settings\r\nmodel = \"gpt2\"  # small\r\ntheme = \"morph-dark\"\r\n\r\n[keys]\r\nsave = \"ctrl+w\"\r\n"
    )
    s = set_setting("theme", "morph-paper")
    assert s.theme == "morph-paper" and s.model == "gpt2" and s.keys["save"] == "ctrl+w"
    assert path.read_bytes() == (
        b"# my settings\r\nmodel = \"gpt2\"  # small\r\ntheme = \"morph-paper\"\r\n\r\n[keys]\r\nsave = \"ctrl+w\"\r\n"
    )
    s = set_setting("debounce_ms", 120)
    assert s.debounce_ms == 120
    text = path.read_text()
    assert text.index("debounce_ms = 120") < text.index("[keys]")
    assert load_settings().debounce_ms == 120
    s = set_setting("model", None)
    assert s.model is None and "model" not in path.read_text()


def test_set_setting_creates_file(cfg_dir: Path) -> None:
    s = set_setting("theme", "morph-light")
    assert s.theme == "morph-light"
    assert (cfg_dir / "config.toml").read_text() == 'theme = "morph-light"\n'


def test_set_setting_refuses_bad_value_and_broken_file(cfg_dir: Path) -> None:
    with pytest.raises(InputError, match="theme must be"):
        set_setting("theme", 5)
    assert not (cfg_dir / "config.toml").exists()
    cfg_dir.mkdir()
    (cfg_dir / "config.toml").write_text("theme = \n")
    with pytest.raises(InputError, match="invalid TOML"):
        set_setting("theme", "morph-light")
    assert (cfg_dir / "config.toml").read_text() == "theme = \n"
