from __future__ import annotations

import itertools
import math
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.color import Color
from textual.widgets import Static

from morph.editor.markdown import STYLE_KEYS
from morph.editor.themes import (
    BUILTIN_THEME_NAMES,
    DEFAULT_THEME,
    MIN_HIGHLIGHTS,
    MorphTheme,
    ThemeError,
    builtin_themes_dir,
    load_themes,
    parse_theme,
)

REPO = Path(__file__).resolve().parents[1]


def _lum(c: str) -> float:
    r, g, b = (x / 255 for x in Color.parse(c).rgb)
    f = lambda v: v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4  # noqa: E731
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b)


def wcag(a: str, b: str) -> float:
    la, lb = sorted((_lum(a), _lum(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def lab(c: str) -> tuple[float, float, float]:
    r, g, b = (x / 255 for x in Color.parse(c).rgb)
    f = lambda v: v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4  # noqa: E731
    r, g, b = f(r), f(g), f(b)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883
    h = lambda t: t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116  # noqa: E731
    return (116 * h(y) - 16, 500 * (h(x) - h(y)), 200 * (h(y) - h(z)))


@pytest.fixture(scope="module")
def builtin() -> dict[str, MorphTheme]:
    themes, errors = load_themes(None)
    assert errors == []
    return themes


def test_four_builtin_themes(builtin: dict[str, MorphTheme]) -> None:
    assert set(BUILTIN_THEME_NAMES) <= set(builtin)
    assert DEFAULT_THEME in builtin
    assert not builtin["morph-light"].dark and not builtin["morph-paper"].dark
    assert builtin["morph-dark"].dark and builtin["morph-contrast"].dark
    assert builtin_themes_dir() == REPO / "themes" or builtin_themes_dir().name == "morph_themes"


@pytest.mark.parametrize("name", BUILTIN_THEME_NAMES)
def test_builtin_theme_is_complete_and_readable(builtin: dict[str, MorphTheme], name: str) -> None:
    theme = builtin[name]
    tt = theme.textual_theme
    for key in ("primary", "secondary", "accent", "foreground", "background", "surface", "panel",
                "success", "warning", "error"):
        assert getattr(tt, key), key
    raw = tomllib.loads((REPO / "themes" / f"{name}.toml").read_text())
    assert set(raw["markdown"]) == set(STYLE_KEYS)  # built-ins define every style themselves
    bg, fg = tt.background, tt.foreground
    assert bg is not None and fg is not None
    need = 7.0 if name == "morph-contrast" else 4.5
    assert wcag(fg, bg) >= 7.0
    assert len(set(theme.highlights)) >= MIN_HIGHLIGHTS
    for colour in theme.highlights:
        assert wcag(colour, bg) >= need, (colour, wcag(colour, bg))
    closest = min(math.dist(lab(a), lab(b)) for a, b in itertools.combinations(theme.highlights, 2))
    assert closest >= 20, closest  # neighbours are told apart
    assert theme.highlight(0) == theme.highlight(len(theme.highlights))


async def test_textual_applies_every_theme(builtin: dict[str, MorphTheme]) -> None:
    class ThemeApp(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("hello")

    app = ThemeApp()
    async with app.run_test() as pilot:
        for theme in builtin.values():
            app.register_theme(theme.textual_theme)
            app.theme = theme.name
            await pilot.pause()
            assert app.theme == theme.name
            assert app.current_theme.background == theme.textual_theme.background


def test_markdown_style_lookup(builtin: dict[str, MorphTheme]) -> None:
    theme = builtin["morph-dark"]
    assert theme.markdown_style("bold").bold
    assert theme.markdown_style("heading").color is not None
    assert not theme.markdown_style("no-such-key")


GOOD = """
name = "{name}"
dark = false
highlights = [{colours}]
[colors]
primary = "#336699"
background = "#ffffff"
[markdown]
heading = "bold red"
"""


def good_text(name: str = "mine", n: int = 12) -> str:
    colours = ", ".join(f'"#{i * 17:02x}2040"' for i in range(n))
    return GOOD.format(name=name, colours=colours)


def test_parse_minimal_theme_fills_defaults() -> None:
    theme = parse_theme(good_text(), "/u/mine.toml")
    assert theme.name == "mine" and not theme.dark
    assert theme.markdown["heading"] == "bold red"
    assert set(theme.markdown) == set(STYLE_KEYS)
    assert theme.source == "/u/mine.toml"


def test_name_defaults_to_file_stem() -> None:
    text = good_text().replace('name = "mine"\n', "")
    assert parse_theme(text, "/u/sunset.toml").name == "sunset"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t + "\nbroken = = 1", "invalid TOML"),
        (lambda t: t.replace('primary = "#336699"', 'primary = "not-a-colour"'), "colors.primary is not a colour"),
        (lambda t: t.replace('primary = "#336699"\n', ""), "colors.primary is required"),
        (lambda t: t.replace("[colors]", "[colors]\nshade = \"#000000\""), "colors.shade is not a theme colour"),
        (lambda t: t.replace('heading = "bold red"', 'heading = "bold nonsense-colour"'), "markdown.heading"),
        (lambda t: t.replace('heading = "bold red"', 'titles = "bold"'), "markdown.titles is not a Markdown style"),
        (lambda t: "extra = 1\n" + t, "unknown key 'extra'"),
        (lambda t: t.replace("dark = false", 'dark = "no"'), "dark must be true or false"),
    ],
)
def test_bad_themes(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ThemeError, match=message) as info:
        parse_theme(edit(good_text()), "x.toml")
    assert "\n" not in str(info.value)


def test_too_few_highlights() -> None:
    with pytest.raises(ThemeError, match="at least 12 distinct colours, has 5"):
        parse_theme(good_text(n=5))
    dup = GOOD.format(name="d", colours=", ".join(['"#112233"'] * 12))
    with pytest.raises(ThemeError, match="has 1"):
        parse_theme(dup)


def test_user_themes_loaded_and_bad_ones_reported(tmp_path: Path) -> None:
    user = tmp_path / "themes"
    user.mkdir()
    (user / "mine.toml").write_text(good_text("mine"))
    (user / "morph-light.toml").write_text(good_text("morph-light"))  # replaces the built-in
    (user / "broken.toml").write_text("name = ")
    (user / "few.toml").write_text(good_text("few", n=3))
    (user / "notes.txt").write_text("ignored")
    (user / "latin1.toml").write_bytes(b"name = \"caf\xe9\"")
    themes, errors = load_themes(user)
    assert "mine" in themes and set(BUILTIN_THEME_NAMES) <= set(themes)
    assert themes["morph-light"].source == str(user / "morph-light.toml")
    assert "few" not in themes and "broken" not in themes
    assert len(errors) == 3
    assert any(e.startswith(str(user / "broken.toml") + ": invalid TOML") for e in errors)
    assert any(e.startswith(str(user / "few.toml") + ": highlights needs") for e in errors)
    assert any(e.startswith(str(user / "latin1.toml") + ": cannot read") for e in errors)
    assert all("\n" not in e for e in errors)


def test_missing_user_dir_is_fine(tmp_path: Path) -> None:
    themes, errors = load_themes(tmp_path / "nope")
    assert errors == [] and len(themes) >= 4
    (tmp_path / "file").write_text("x")
    _, errors = load_themes(tmp_path / "file")
    assert len(errors) == 1 and "not a folder" in errors[0]


def test_missing_builtins_still_give_a_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("morph.editor.themes.builtin_themes_dir", lambda: tmp_path)
    themes, errors = load_themes(None)
    assert list(themes) == [DEFAULT_THEME]
    assert errors and "missing" in errors[0]


def test_pyproject_packages_every_folder() -> None:
    """Packages are listed by hand (for morph_themes): every folder of morph/ with files in it must be listed
    (setuptools warns at length about an installed folder that is not), and a folder of data only needs its
    files in package-data."""
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    files = [p for p in (REPO / "morph").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in files}
    assert folders <= listed, f"add to [tool.setuptools] packages: {sorted(folders - listed)}"
    code = {".".join(p.parent.relative_to(REPO).parts) for p in files if p.suffix == ".py"}
    data_only = folders - code
    missing = {f for f in data_only if f not in cfg["package-data"]}
    assert not missing, f"add to [tool.setuptools.package-data]: {sorted(missing)}"
    assert cfg["package-dir"]["morph_themes"] == "themes"
    assert "*.toml" in cfg["package-data"]["morph_themes"]


@pytest.mark.slow
def test_wheel_contains_themes(tmp_path: Path) -> None:
    if shutil.which("pip", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("no pip next to this interpreter")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    (src / "README.md").write_text("x")
    shutil.copytree(REPO / "morph", src / "morph", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "themes", src / "themes")
    out = tmp_path / "wheel"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-v", "-w", str(out)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    assert "absent from" not in built.stdout + built.stderr  # setuptools' long warning about unlisted folders
    (wheel,) = out.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"morph/default/sae/cfg.json", "morph/default/sae/sae_weights.safetensors", "morph/default/sae/labels.json",
            "morph/default/MODEL_CARD.md"} <= names
    for name in BUILTIN_THEME_NAMES:
        assert f"morph_themes/{name}.toml" in names
    assert "morph/editor/themes.py" in names
