"""No code runs from a model folder or a training checkpoint: `auto_map` and unknown architectures are refused
in one line before anything loads, and nothing ever asks "Do you wish to run the custom code?"."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from morph.errors import ModelLoadError
from morph.models.remote_code import refuse_remote_code

CANARY_CODE = """
from pathlib import Path
Path({canary!r}).write_text("custom code ran")
from transformers import GPT2Config, GPT2LMHeadModel

class CanaryConfig(GPT2Config):
    model_type = "canary-gpt"

class CanaryModel(GPT2LMHeadModel):
    config_class = CanaryConfig
"""


def planted_folder(tiny_model: Path, root: Path, model_type: str = "canary-gpt") -> tuple[Path, Path]:
    """A copy of a working model folder whose config asks for its own Python, which would write a canary file."""
    folder, canary = root / "planted", root / "canary.txt"
    shutil.copytree(tiny_model, folder)
    (folder / "canary.py").write_text(CANARY_CODE.format(canary=str(canary)))
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = model_type
    config["auto_map"] = {"AutoConfig": "canary.CanaryConfig", "AutoModelForCausalLM": "canary.CanaryModel"}
    (folder / "config.json").write_text(json.dumps(config))
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tok_config.pop("tokenizer_class", None)  # so that transformers must consult the config (and its auto_map)
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    return folder, canary


@pytest.mark.parametrize("command", ["analyze", "features"])
def test_auto_map_folder_runs_nothing_even_when_the_user_says_yes(tmp_path, tiny_dirs, command):
    folder, canary = planted_folder(tiny_dirs["model"], tmp_path)
    doc = tmp_path / "doc.txt"
    doc.write_text("The river ran past the old mill.\n")
    args = [str(doc)] if command == "analyze" else ["river"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "morph", command, *args, "--model", str(folder),
                           "--sae", str(tiny_dirs["sae"]), "--device", "cpu"],
                          input="y\ny\ny\n", capture_output=True, text=True, env=env, timeout=120)
    assert not canary.exists()
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "auto_map" in done.stderr and "never runs" in done.stderr
    assert "Do you wish to run" not in done.stdout + done.stderr


def test_a_known_architecture_with_auto_map_is_refused_too(tmp_path, tiny_dirs):
    folder, canary = planted_folder(tiny_dirs["model"], tmp_path, model_type="gpt2")
    with pytest.raises(ModelLoadError, match="auto_map"):
        refuse_remote_code(folder)
    assert not canary.exists()


def test_auto_map_in_the_tokenizer_config_is_refused(tmp_path, tiny_dirs):
    folder = tmp_path / "model"
    shutil.copytree(tiny_dirs["model"], folder)
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tok_config["auto_map"] = {"AutoTokenizer": ["canary.CanaryTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    with pytest.raises(ModelLoadError, match="tokenizer_config.json.*auto_map"):
        refuse_remote_code(folder)


def test_an_unknown_model_type_is_refused_by_name(tmp_path, tiny_dirs):
    folder = tmp_path / "model"
    shutil.copytree(tiny_dirs["model"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "nonesuch"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="unknown model_type 'nonesuch'"):
        refuse_remote_code(folder)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_an_unreadable_config_is_one_line(tmp_path, tiny_dirs, content):
    folder = tmp_path / "model"
    shutil.copytree(tiny_dirs["model"], folder)
    (folder / "config.json").write_text(content)
    with pytest.raises(ModelLoadError, match="config.json") as caught:
        refuse_remote_code(folder)
    assert "\n" not in str(caught.value)


def test_a_plain_folder_passes(tiny_dirs):
    refuse_remote_code(tiny_dirs["model"])


def test_every_load_says_trust_remote_code_false(tiny_dirs, tmp_path, monkeypatch):
    """The tokenizer and the model are both loaded with trust_remote_code=False, so transformers never asks.
    (A tokenizer of another class than transformers' generic fast one goes through AutoTokenizer; the
    generic one is read by Morph itself, which never runs code.)"""
    import transformers

    from morph.models.lens import load_model_and_tokenizer

    folder = tmp_path / "model"
    shutil.copytree(tiny_dirs["model"], folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "GPT2TokenizerFast"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))

    seen: list[tuple[str, object]] = []
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, _name=cls.__name__, **kwargs):
            seen.append((_name, kwargs.get("trust_remote_code", "missing")))
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    load_model_and_tokenizer(str(folder), "cpu")
    assert sorted(seen) == [("AutoModelForCausalLM", False), ("AutoTokenizer", False)]


def test_no_pickle_loads_in_the_package():
    root = Path(__file__).resolve().parents[1] / "morph"
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "weights_only=False" not in text and "pickle" not in text, path


async def test_the_editor_shows_the_refusal_and_keeps_editing(tmp_path, tiny_dirs, monkeypatch):
    from morph.config import Settings
    from morph.editor.app import MorphApp
    from morph.editor.document import DocumentView
    from morph.features.engine import Engine
    from morph.models.lens import LensSpec
    from tests.pilot import wait_for

    monkeypatch.setenv("MORPH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MORPH_STATE_DIR", str(tmp_path / "state"))
    folder, canary = planted_folder(tiny_dirs["model"], tmp_path)
    spec = LensSpec(model=str(folder), sae=str(tiny_dirs["sae"]), device="cpu")
    app = MorphApp(None, "Hello", Settings(debounce_ms=30), lambda _progress: Engine.load(spec))
    async with app.run_test(size=(100, 20)) as pilot:
        await wait_for(pilot, lambda: app.status.state.state == "no model")
        await pilot.press("end", *"yy")
        assert app.query_one(DocumentView).text == "Helloyy"
        assert any("auto_map" in str(n.message) for n in app._notifications)
    assert not canary.exists()

