"""The embedded default model shipped in morph/default: it loads, it agrees with SAE-Lens, it is labelled, it is small."""

from __future__ import annotations

import json

import pytest

from morph.models.presets import DEFAULT_DIR, default_available

pytestmark = pytest.mark.skipif(not default_available(), reason="the embedded default model is not in morph/default")

PARAGRAPH = ("The fog lay thick upon the river that morning, and the boatmen, who had known the water all their "
             "lives, moved slowly and spoke in low voices.\n\nMr. President, the nation has 1,789 reasons to hope.")


@pytest.fixture(scope="module")
def lens():
    from morph.models.lens import LensSpec, load_lens

    return load_lens(LensSpec(device="cpu"))


def test_shipped_files_are_there():
    for path in ("model/config.json", "model/model.safetensors", "model/tokenizer.json", "sae/cfg.json",
                 "sae/sae_weights.safetensors", "sae/labels.json", "MODEL_CARD.md"):
        assert (DEFAULT_DIR / path).is_file(), path


def test_total_size_is_at_most_40_mb():
    size = sum(p.stat().st_size for p in DEFAULT_DIR.rglob("*") if p.is_file())
    assert size <= 40 * 1024 * 1024, f"{size / 1e6:.1f} MB"


def test_model_weights_are_fp16_safetensors():
    from safetensors import safe_open

    with safe_open(str(DEFAULT_DIR / "model" / "model.safetensors"), "pt") as fh:
        assert {str(fh.get_tensor(k).dtype) for k in fh.keys()} == {"torch.float16"}


def test_default_loads_as_a_lens(lens):
    assert lens.model.config.model_type == "gpt2"
    assert lens.tokenizer.is_fast
    assert lens.hook.name.startswith("blocks.") and lens.hook.name.endswith(".hook_resid_pre")
    assert lens.hook.centre is False  # trained on Hugging Face activations, not TransformerLens-centred ones
    assert lens.prepend_bos is True
    assert lens.bos_token_id == lens.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert 8 * lens.d_model <= lens.d_sae <= 16 * lens.d_model


def test_sae_loads_through_sae_lens_with_the_metadata_the_engine_needs():
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(DEFAULT_DIR / "sae"), device="cpu")
    meta = sae.cfg.metadata
    assert meta.prepend_bos is True
    assert meta.model_class_name == "AutoModelForCausalLM"
    assert meta.hook_name.endswith("hook_resid_pre") and meta.model_name and meta.context_size
    assert sae.cfg.architecture() in ("topk", "jumprelu")


def test_activations_on_a_paragraph_equal_sae_encode_of_capture(lens):
    """Loaded independently (transformers + SAE-Lens), the features equal the lens's own."""
    import torch
    from sae_lens import SAE
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from morph.models.hooks import capture, resolve_hook

    tokenizer = AutoTokenizer.from_pretrained(str(DEFAULT_DIR / "model"))
    model = AutoModelForCausalLM.from_pretrained(str(DEFAULT_DIR / "model"), dtype=torch.float32).eval()
    sae = SAE.load_from_disk(str(DEFAULT_DIR / "sae"), device="cpu")
    ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(PARAGRAPH)["input_ids"]]])
    expected = sae.encode(capture(model, resolve_hook(model, sae.cfg.metadata.hook_name), ids))

    lens_ids = torch.tensor([[lens.bos_token_id, *lens.tokenizer(PARAGRAPH)["input_ids"]]])
    assert torch.equal(lens_ids, ids)
    with torch.no_grad():
        got = lens.sae.encode(capture(lens.model, lens.hook, lens_ids))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    active = (got[0, 1:] > 0).sum(-1)
    assert (active > 0).all() and (active <= sae.cfg.k).all()  # every token lights some features, at most k
    # and the reconstruction is a fair one on ordinary prose
    acts = capture(lens.model, lens.hook, lens_ids)[0, 1:]
    recon = lens.sae.decode(got[0, 1:])
    fve = 1 - (recon - acts).pow(2).sum() / (acts - acts.mean(0)).pow(2).sum()
    assert fve > 0.5


def test_labels_cover_every_feature():
    from sae_lens import SAE

    d_sae = SAE.load_from_disk(str(DEFAULT_DIR / "sae"), device="cpu").cfg.d_sae
    labels = json.loads((DEFAULT_DIR / "sae" / "labels.json").read_text())
    assert labels["format"] == "morph-labels/1"
    assert labels["n_tokens"] >= 100_000
    assert [f["id"] for f in labels["features"]] == list(range(d_sae))
    for f in labels["features"]:
        assert set(f) == {"id", "label", "density", "mean_act", "max_act", "top_tokens", "promoted"}
        assert f["label"].strip() and f["promoted"]
        assert len(f["top_tokens"]) <= 10 and len(f["promoted"]) <= 10
        if f["density"] == 0:
            assert "(dead)" in f["label"]


def test_model_card_reports_the_measured_figures():
    card = (DEFAULT_DIR / "MODEL_CARD.md").read_text()
    for needle in ("Tokens seen", "Training time", "perplexity", "variance explained", "dead features",
                   "CE loss recovered", "morph train"):
        assert needle in card, needle
