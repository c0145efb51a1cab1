"""Feature labels: the labels file, Neuronpedia exports, promoted tokens, search."""

from __future__ import annotations

import dataclasses
import json

import pytest

from morph.errors import InputError
from morph.features.labels import load_labels, read_neuronpedia_export


def test_every_feature_has_a_label_from_promoted_tokens(tiny_lens):
    labels = load_labels(tiny_lens)
    assert labels.source.startswith("decoder")
    texts = labels.all_labels()
    assert len(texts) == tiny_lens.d_sae and all(t.strip() for t in texts)
    info = labels.info(3)
    assert info.promoted and info.label == " · ".join(info.promoted[:4])
    with pytest.raises(InputError):
        labels.label(tiny_lens.d_sae)


def test_labels_file_and_neuronpedia_export_win(tiny_lens, tmp_path, monkeypatch):
    d = tiny_lens.d_sae
    features = [{"id": i, "label": f"feature word{i}", "density": 0.0 if i == 7 else 0.01, "mean_act": 1.0,
                 "max_act": 2.0 + i, "top_tokens": [["sea", 3]], "promoted": ["wave"]} for i in range(d)]
    (tmp_path / "labels.json").write_text(json.dumps({"format": "morph-labels/1", "n_tokens": 10, "features": features}))
    (tmp_path / "explanations.json").write_text(json.dumps([{"index": 5, "description": "nautical terms"}]))
    tiny_lens = dataclasses.replace(tiny_lens, sae_dir=tmp_path)  # a Lens is frozen
    labels = load_labels(tiny_lens)
    assert "labels.json" in labels.source and "Neuronpedia" in labels.source
    assert labels.label(5) == "nautical terms"
    assert labels.label(6) == "feature word6"
    assert labels.typical_max(6) == 8.0 and labels.norms().typical[6] == 8.0
    assert labels.info(6).top_tokens == (("sea", 3),)
    assert labels.search("nautical") == [5]
    assert labels.search("word6")[0] == 6 and 7 in labels.search("word7", limit=20)
    # a dead feature ranks after live ones that match as well
    ranked = labels.search("feature", limit=d)
    assert ranked.index(7) == len(ranked) - 1
    assert labels.search("wrd12", limit=3)  # fuzzy
    assert labels.search("12") == [12]  # an id


def test_neuronpedia_jsonl(tmp_path):
    path = tmp_path / "neuronpedia.jsonl"
    path.write_text('{"index": 1, "description": "a"}\n{"index": "2", "description": "b"}\n')
    assert read_neuronpedia_export(path) == {1: "a", 2: "b"}


def test_search_prefers_whole_words_in_what_a_feature_fires_on(tiny_lens, tmp_path, monkeypatch):
    features = [{"id": i, "label": f"x{i}", "density": 0.01, "max_act": 1.0, "top_tokens": [], "promoted": []}
                for i in range(tiny_lens.d_sae)]
    features[3].update(label="Se, B → bed")  # no "sea" anywhere: not found
    features[4].update(label="great, wave → ocean", top_tokens=[["wave", 9], ["sea", 5]])
    features[5].update(label="seaside → salt")
    features[6].update(label="river → water", promoted=["sea"])
    (tmp_path / "labels.json").write_text(json.dumps({"format": "morph-labels/1", "n_tokens": 1, "features": features}))
    tiny_lens = dataclasses.replace(tiny_lens, sae_dir=tmp_path)  # a Lens is frozen
    assert load_labels(tiny_lens).search("sea", limit=3) == [4, 6, 5]
    # whole words only: "seaside" holds "sea" but is not it, and no fuzzy neighbour ("se") is offered
    assert load_labels(tiny_lens).search("sea", limit=3, whole_words=True) == [4, 6]
    assert load_labels(tiny_lens).search("seas", limit=3, whole_words=True) == []
    # a word's other forms count as the word: "seas" with its form "sea" finds what "sea" finds
    assert load_labels(tiny_lens).search("seas", limit=3, whole_words=True, forms=("sea",)) == [4, 6]


def test_what_a_feature_says_steered_is_the_words_its_direction_raises_most(tiny_lens):
    """said_token_ids: the whole words whose next-token log-probability rises most (mean over SAID_PROMPT's
    positions after BOS) when the decoder direction, scaled to the residual's norm, is added at the hook;
    checked against a forward of the test's own, one feature at a time."""
    import re

    import torch

    from morph.models.hooks import edit_activations
    from morph.models.unembed import SAID_PROMPT, said_token_ids

    lens = tiny_lens
    features = [3, 11, 40]
    said = said_token_ids(lens, lens.sae.W_dec[features], 5)
    bos = [lens.bos_token_id] if lens.bos_token_id is not None else []
    ids = torch.tensor([(bos + lens.tokenizer(SAID_PROMPT, add_special_tokens=False)["input_ids"])[:lens.context_size]])
    vocab = lens.model.get_output_embeddings().weight.shape[0]
    words = torch.tensor([re.fullmatch(r" [A-Za-z]{3,}", lens.tokenizer.decode([i])) is not None
                          for i in range(vocab)])
    with torch.inference_mode():
        plain = torch.log_softmax(lens.model(input_ids=ids).logits.float(), -1)
        for row, feature in zip(said, features):
            unit = lens.sae.W_dec[feature].float() / lens.sae.W_dec[feature].float().norm()

            def add(acts):
                out = acts + acts.norm(dim=-1, keepdim=True) * unit
                out[:, :len(bos)] = acts[:, :len(bos)]
                return out

            with edit_activations(lens.model, lens.hook, add):
                steered = torch.log_softmax(lens.model(input_ids=ids).logits.float(), -1)
            gain = (steered - plain)[0, len(bos):].mean(0)
            gain[~words] = -float("inf")
            best = gain.topk(5).indices
            assert len(row) == 5 and all(words[i] for i in row)
            torch.testing.assert_close(gain[row], gain[best], atol=1e-4, rtol=1e-4)


def test_a_context_shows_on_one_line_with_the_spaces_at_the_token_kept():
    from morph.features.labels import Context

    assert Context(" from Clara Barton's 1899,", " The", " Red Cross\n(Washington", 1.0).shown() == (
        " from Clara Barton's 1899,", " The", " Red Cross (Washington")
    assert Context("a  line\n\n", "\n", "  next ", 1.0).shown() == ("a line ", "⏎", " next ")
    assert Context("", "x", "", 1.0).shown() == ("", "x", "")
