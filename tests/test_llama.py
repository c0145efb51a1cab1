"""Morph's own Llama (morph.models.llama) against transformers' LlamaForCausalLM on the same weights:
logits, key/value caches, every hook point and steering edits; which folders load with it; and that the
default loads without importing transformers (the point of it: start-up)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from morph.models import llama
from morph.models.hooks import capture, capture_rows, edit_activations, forward_cached, new_cache, packs_rows, resolve_hook
from morph.models.presets import default_available
from morph.models.tiny import build_model

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module", params=["untied", "tied"])
def pair(request, tmp_path_factory):
    """(Morph's model, transformers' model) of one random tiny Llama folder (grouped-query attention)."""
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp(f"llama-{request.param}")
    build_model(folder, "llama", d_model=64, n_layers=3, spread=True,
                tie_word_embeddings=request.param == "tied", rope_theta=5000.0)
    config = llama.LlamaConfig.read(folder)
    assert config is not None and config.num_key_value_heads < config.num_attention_heads
    ours = llama.load(folder, config, "cpu", torch.float32)
    theirs = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return ours, theirs


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(5))


def test_logits_equal_transformers(pair, ids):
    ours, theirs = pair
    with torch.inference_mode():
        torch.testing.assert_close(ours(input_ids=ids).logits, theirs(input_ids=ids, use_cache=False).logits, **TOL)


def test_a_cached_continuation_equals_the_whole_pass(pair, ids):
    ours, _ = pair
    with torch.inference_mode():
        whole = ours(input_ids=ids).logits
        head, cache = forward_cached(ours, ids[:, :25], None)
        tail, cache = forward_cached(ours, ids[:, 25:], cache)
        assert cache.get_seq_length() == ids.shape[1]
        torch.testing.assert_close(torch.cat([head, tail], dim=1), whole, **TOL)
        cache.crop(-10)  # as DynamicCache.crop: a negative count drops from the end
        again, _ = forward_cached(ours, ids[:, 30:], cache)
        torch.testing.assert_close(again, whole[:, 30:], **TOL)


def test_a_prompt_read_for_its_key_values_keeps_the_last_logits_alone(pair, ids):
    """Both models skip the LM head on all but the last position when asked; the cache is the same."""
    with torch.inference_mode():
        for model in pair:
            whole, full_cache = forward_cached(model, ids[:, :25], None)
            last, cache = forward_cached(model, ids[:, :25], None, last_logits_only=True)
            assert last.shape[1] == 1
            torch.testing.assert_close(last[:, 0], whole[:, -1], **TOL)
            after, _ = forward_cached(model, ids[:, 25:], cache)
            expected, _ = forward_cached(model, ids[:, 25:], full_cache)
            torch.testing.assert_close(after, expected, **TOL)


def test_one_row_cache_repeated_for_a_batch_of_candidates(pair, ids):
    ours, theirs = pair
    step = torch.tensor([[7], [8], [9]])
    with torch.inference_mode():
        _, cache = forward_cached(ours, ids[:1, :20], None)
        cache.batch_repeat_interleave(3)
        got, _ = forward_cached(ours, step, cache)
        for k in range(3):
            row = torch.cat([ids[0, :20], step[k]])[None]
            torch.testing.assert_close(got[k, -1], theirs(input_ids=row, use_cache=False).logits[0, -1], **TOL)


@pytest.mark.parametrize("kind", ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"])
def test_every_hook_point_and_a_steering_edit_equal_transformers(pair, ids, kind):
    ours, theirs = pair
    name = f"blocks.1.hook_{kind}"
    hook_ours, hook_theirs = resolve_hook(ours, name), resolve_hook(theirs, name)
    assert hook_ours == hook_theirs
    torch.testing.assert_close(capture(ours, hook_ours, ids), capture(theirs, hook_theirs, ids), **TOL)
    direction = torch.randn(64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        with edit_activations(ours, hook_ours, lambda a: a + 3 * direction):
            steered = ours(input_ids=ids).logits
        with edit_activations(theirs, hook_theirs, lambda a: a + 3 * direction):
            expected = theirs(input_ids=ids, use_cache=False).logits
    torch.testing.assert_close(steered, expected, **TOL)


def test_capture_continues_a_cache_made_by_new_cache(pair, ids):
    ours, _ = pair
    hook = resolve_hook(ours, "blocks.2.hook_resid_pre")
    cache = new_cache(ours)
    assert isinstance(cache, llama.KVCache)
    head = capture(ours, hook, ids[:1, :15], cache=cache)
    tail = capture(ours, hook, ids[:1, 15:], cache=cache)
    torch.testing.assert_close(torch.cat([head, tail], dim=1), capture(ours, hook, ids[:1]), **TOL)


def test_rows_run_packed_equal_each_row_alone_and_transformers_padded(pair, ids):
    """Morph's Llama runs rows of unlike lengths end to end (no padding); transformers' rows are padded: each
    row's activations are those of the row alone, in both."""
    ours, theirs = pair
    assert packs_rows(ours) and not packs_rows(theirs)
    rows = [ids[0, :7].tolist(), ids[1].tolist(), [5], ids[0, 3:30].tolist()]
    for model in pair:
        hook = resolve_hook(model, "blocks.2.hook_resid_pre")
        got = capture_rows(model, hook, rows)
        assert [tuple(a.shape) for a in got] == [(len(row), 64) for row in rows]
        for row, acts in zip(rows, got):
            torch.testing.assert_close(acts, capture(ours, hook, torch.tensor([row]))[0], **TOL)
    with pytest.raises(ValueError, match="packed"):
        ours(input_ids=ids, row_lengths=[40, 40])


@pytest.mark.parametrize("hook_name", ["blocks.2.hook_resid_pre", "blocks.0.hook_resid_pre",
                                       "blocks.2.hook_resid_post", "blocks.1.hook_mlp_out"])
def test_rows_with_context_return_the_positions_after_it(pair, ids, hook_name):
    """capture_rows with skips: each row's activations from its skip on, equal to the row run alone. On
    Morph's Llama a hook between layers goes through `residual`, whose last layer skips the context's
    attention output and MLP; the checkpoints between submodules still run."""
    rows = [ids[0, :7].tolist(), ids[1].tolist(), [5], ids[0, 3:30].tolist()]
    skips = [3, 0, 0, 26]
    ours, _ = pair
    for model in pair:
        hook = resolve_hook(model, hook_name)
        calls: list[int] = []
        got = capture_rows(model, hook, rows, skips=skips, between=lambda: calls.append(1))
        assert [tuple(a.shape) for a in got] == [(len(row) - skip, 64) for row, skip in zip(rows, skips)]
        for row, skip, acts in zip(rows, skips, got):
            torch.testing.assert_close(acts, capture(ours, resolve_hook(ours, hook_name), torch.tensor([row]))[0, skip:],
                                       **TOL)
        assert calls or hook_name == "blocks.0.hook_resid_pre"


def test_a_padding_mask_is_refused_not_misread(pair, ids):
    ours, _ = pair
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    with pytest.raises(ValueError, match="padding"):
        ours(input_ids=ids, attention_mask=mask)
    unmasked = ours(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    torch.testing.assert_close(unmasked, ours(input_ids=ids).logits)


def test_the_lens_picks_morphs_llama_and_tokenizer_for_a_plain_llama_folder(tmp_path):
    from morph.models.lens import load_model_and_tokenizer
    from morph.models.tokenizer import FastTokenizer

    build_model(tmp_path / "plain", "llama", d_model=32, n_layers=2)
    model, tokenizer = load_model_and_tokenizer(str(tmp_path / "plain"), "cpu")
    assert isinstance(model, llama.LlamaForCausalLM) and isinstance(tokenizer, FastTokenizer)
    assert not model.training


@pytest.mark.parametrize("change", [
    {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64}},
    {"attention_bias": True},
    {"hidden_act": "gelu"},
])
def test_other_llama_configs_go_to_transformers(tmp_path, change):
    from morph.models.lens import load_model_and_tokenizer

    build_model(tmp_path / "m", "llama", d_model=32, n_layers=2, **change)
    assert llama.LlamaConfig.read(tmp_path / "m") is None
    model, _ = load_model_and_tokenizer(str(tmp_path / "m"), "cpu")
    assert not isinstance(model, llama.LlamaForCausalLM)


def test_weights_that_do_not_fit_the_config_are_one_line(tmp_path):
    from morph.errors import ModelLoadError
    from morph.models.lens import load_model_and_tokenizer

    folder = tmp_path / "m"
    build_model(folder, "llama", d_model=32, n_layers=2)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="cannot load the model") as err:
        load_model_and_tokenizer(str(folder), "cpu")
    assert "\n" not in str(err.value)


@pytest.mark.skipif(not default_available(), reason="the default model is not installed")
def test_the_default_loads_without_importing_transformers():
    """What makes the default ready in seconds: neither transformers nor what it drags in (torch._dynamo,
    torch.distributed.tensor, scipy) is imported by Engine.load, and a first analysis runs; nor by the
    steering pane's first read of a selection, which renders the chat template."""
    code = ("import sys\n"
            "from morph.features.engine import Engine\n"
            "from morph.models.lens import LensSpec\n"
            "engine = Engine.load(LensSpec(device='cpu'))\n"
            "assert engine.analyzer.analyze('The storm broke over the harbour.').n_tokens > 0\n"
            "text = 'It rained. The storm broke over the harbour.'\n"
            "engine.steerer().prepare(text, 11, len(text))\n"
            "print(sorted(m for m in ('transformers', 'torch._dynamo', 'scipy', 'sae_lens') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_bfloat16_copy_keeps_the_tying_and_leaves_the_original(pair, ids):
    ours, _ = pair
    half = llama.in_dtype(ours, torch.bfloat16)
    assert half.dtype == torch.bfloat16 and ours.dtype == torch.float32
    assert (half.lm_head.weight is half.model.embed_tokens.weight) == ours.config.tie_word_embeddings
    with torch.inference_mode():
        full, approx = ours(input_ids=ids).logits, half(input_ids=ids).logits.float()
    assert (full.argmax(-1) == approx.argmax(-1)).float().mean() > 0.9
    _, cache = forward_cached(ours, ids[:, :10], None)
    assert cache.to(torch.bfloat16).keys[0].dtype == torch.bfloat16 and cache.keys[0].dtype == torch.float32


def test_a_sharded_checkpoint_loads_every_shard(tmp_path, ids):
    from transformers import AutoModelForCausalLM

    model, _ = build_model(tmp_path / "one", "llama", d_model=64, n_layers=3, spread=True)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "sharded" / name).write_bytes((tmp_path / "one" / name).read_bytes())
    assert len(llama.weight_files(tmp_path / "sharded")) > 1
    config = llama.LlamaConfig.read(tmp_path / "sharded")
    ours = llama.load(tmp_path / "sharded", config, "cpu", torch.float32)
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "one", dtype=torch.float32).eval()
    with torch.inference_mode():
        torch.testing.assert_close(ours(input_ids=ids).logits, theirs(input_ids=ids, use_cache=False).logits, **TOL)
