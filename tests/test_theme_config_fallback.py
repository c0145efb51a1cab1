"""A bad user theme or a broken config.toml never stops the editor: theme variables are validated like the
rest of a theme, the editor opens on the defaults with a message, and an unknown theme means the default."""

from __future__ import annotations

import pytest

from morph.config import Settings
from morph.editor.app import MorphApp
from morph.editor.themes import DEFAULT_THEME, ThemeError, load_themes, parse_theme
from tests.pilot import wait_for
from tests.test_themes import good_text

pytestmark = pytest.mark.usefixtures("dirs")


def with_variables(lines: str) -> str:
    return good_text() + "[variables]\n" + lines + "\n"


@pytest.mark.parametrize("lines, message", [
    ('"footer-key-foreground" = "notacolour"', "variables.footer-key-foreground is not a colour: 'notacolour'"),
    ('"footer-key-foreground" = "#12"', "variables.footer-key-foreground is not a colour"),
    ('"block-cursor-background" = "red; } Screen { color: blue"', "variables.block-cursor-background"),
    ('"footer-key-foreground" = "$accent"', "variables.footer-key-foreground"),  # Textual stops on this too
    ('"block-cursor-text-style" = "sparkly"', "variables.block-cursor-text-style is not a text style"),
])
def test_bad_variables_are_refused_at_validation(lines, message):
    with pytest.raises(ThemeError, match=message) as caught:
        parse_theme(with_variables(lines), "x.toml")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("lines", [
    '"footer-key-foreground" = "#e0af68"',
    '"text" = "auto 87%"',
    '"link-background" = "initial"',
    '"block-cursor-text-style" = "bold not underline"',
    '"input-selection-background" = "rgba(10, 20, 30, 0.4)"',
])
def test_good_variables_pass(lines):
    parse_theme(with_variables(lines), "x.toml")


def user_theme(dirs, name: str, text: str) -> None:
    folder = dirs / "config" / "themes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(text)


async def test_a_bad_user_theme_named_in_the_config_opens_the_default_with_a_message(dirs):
    user_theme(dirs, "broken", with_variables('"footer-key-foreground" = "notacolour"').replace("mine", "broken"))
    (dirs / "config" / "config.toml").write_text('theme = "broken"\n')
    app = MorphApp(None, "text", Settings(theme="broken"))
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.pause()
        assert app.theme_name == DEFAULT_THEME and app.theme == DEFAULT_THEME
        messages = [str(n.message) for n in app._notifications]
        assert any("broken.toml" in m and "notacolour" in m for m in messages)
        assert any("'broken' not found; using morph-dark" in m for m in messages)
        await pilot.press(*"ok ")
        assert app.view.text == "ok text"
    assert "broken" not in load_themes(dirs / "config" / "themes")[0]
    assert app.return_code in (None, 0)


async def test_an_unknown_theme_falls_back_to_the_default_theme(dirs):
    app = MorphApp(None, "", Settings(theme="no-such-theme"))
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.pause()
        assert app.theme_name == DEFAULT_THEME == "morph-dark"


async def test_a_broken_config_opens_the_editor_on_the_defaults_with_a_message(dirs, monkeypatch):
    """Through the real entry point: `morph FILE` with a config.toml that is not TOML, and one with a bad value."""
    from morph.cli import main

    started: list[MorphApp] = []
    monkeypatch.setattr(MorphApp, "run", lambda self, **kwargs: started.append(self))
    doc = dirs / "doc.md"
    doc.write_text("words\n")
    config = dirs / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    for broken, why in (("theme = = 1\n", "invalid TOML"), ('debounce_ms = "soon"\n', "debounce_ms")):
        config.write_text(broken)
        started.clear()
        assert main(["--no-model", str(doc)]) == 0
        (app,) = started
        assert app.settings == Settings()
        async with app.run_test(size=(100, 24)) as pilot:
            await wait_for(pilot, lambda: any("config.toml" in str(n.message) for n in app._notifications))
            note = next(n for n in app._notifications if "config.toml" in str(n.message))
            assert why in str(note.message) and "defaults" in note.title
            assert app.view.text == "words\n" and app.theme_name == DEFAULT_THEME
        assert config.read_text() == broken  # the writer's file is left for them to mend
