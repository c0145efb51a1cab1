"""morph.models.gpt2 (the embedded default's runner) computes what transformers' GPT2LMHeadModel computes:
logits, every hook point, padded batches and cached generation, on the default model and on a random one."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from morph.models import gpt2
from morph.models.hooks import capture, resolve_hook
from morph.models.presets import DEFAULT_DIR, default_available
from tests.builders import build_model

TOL = 2e-4  # float32, different kernels for the same sums


def _pair(folder):
    from transformers import GPT2LMHeadModel

    reference = GPT2LMHeadModel.from_pretrained(str(folder), dtype=torch.float32).eval()
    return reference, gpt2.load(folder)


@pytest.fixture(scope="module")
def random_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    build_model(folder, "gpt2", d_model=64, n_layers=3, seed=5, spread=True)
    return _pair(folder)


@pytest.fixture(scope="module")
def default_pair():
    if not default_available():
        pytest.skip("the embedded default model is not built")
    return _pair(DEFAULT_DIR / "model")


@pytest.mark.parametrize("which", ["random_pair", "default_pair"])
def test_logits_and_every_hook_point_match(which, request, one_torch_thread):
    reference, native = request.getfixturevalue(which)
    vocab = native.config.vocab_size
    ids = torch.randint(0, vocab, (2, 37), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.allclose(native(input_ids=ids).logits, reference(input_ids=ids).logits, atol=TOL)
    for layer in range(native.config.n_layer):
        for kind in ("resid_pre", "resid_mid", "attn_out", "mlp_out", "resid_post"):
            name = f"blocks.{layer}.hook_{kind}"
            got = capture(native, resolve_hook(native, name), ids)
            want = capture(reference, resolve_hook(reference, name), ids)
            assert torch.allclose(got, want, atol=TOL), name


@pytest.mark.parametrize("which", ["random_pair", "default_pair"])
def test_padded_batch_matches(which, request, one_torch_thread):
    reference, native = request.getfixturevalue(which)
    ids = torch.randint(0, native.config.vocab_size, (3, 20), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    mask[2, 5:] = 0
    hook = "blocks.1.hook_resid_post"
    got = capture(native, resolve_hook(native, hook), ids, mask)
    want = capture(reference, resolve_hook(reference, hook), ids, mask)
    for row, n in enumerate((20, 12, 5)):  # real tokens only: padding is never read
        assert torch.allclose(got[row, :n], want[row, :n], atol=TOL)


def test_cached_generation_matches(random_pair, one_torch_thread):
    """The cache operations steering uses: prefix, batch repeat, steps, select, crop, deepcopy."""
    reference, native = random_pair
    ids = torch.randint(0, native.config.vocab_size, (1, 15), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        outs = [m(input_ids=ids, use_cache=True) for m in (reference, native)]
        caches = [o.past_key_values for o in outs]
        copies = [copy.deepcopy(c) for c in caches]
        for cache in caches:
            cache.batch_repeat_interleave(3)
        step = torch.tensor([[5], [6], [7]])
        for _ in range(4):
            logits = [m(input_ids=step, past_key_values=c, use_cache=True).logits for m, c in zip((reference, native), caches)]
            assert torch.allclose(logits[0], logits[1], atol=TOL)
            step = logits[1][:, -1].argmax(-1, keepdim=True)
        for cache in caches:
            cache.batch_select_indices(torch.tensor([0, 2]))
        logits = [m(input_ids=step[:2], past_key_values=c, use_cache=True).logits for m, c in zip((reference, native), caches)]
        assert torch.allclose(logits[0], logits[1], atol=TOL)
        # several new tokens after a cache (how steering scores a candidate), then crop them off again
        more = torch.tensor([[9, 10, 11, 12]])
        scored = [m(input_ids=more, past_key_values=c, use_cache=True).logits for m, c in zip((reference, native), copies)]
        assert torch.allclose(scored[0], scored[1], atol=TOL)
        for cache in copies:
            cache.crop(-4)
        assert copies[1].get_seq_length() == 15
        again = [m(input_ids=more, past_key_values=c, use_cache=True).logits for m, c in zip((reference, native), copies)]
        assert torch.allclose(again[1], scored[1], atol=TOL) and torch.allclose(again[0], again[1], atol=TOL)


def test_unsupported_configurations_are_refused(tmp_path):
    assert gpt2.supports({"model_type": "gpt2", "n_embd": 64})
    assert not gpt2.supports({"model_type": "gpt2", "activation_function": "relu"})
    assert not gpt2.supports({"model_type": "gpt2", "scale_attn_by_inverse_layer_idx": True})
    assert not gpt2.supports({"model_type": "llama"})


def test_the_default_loads_without_transformers_modelling_code():
    if not default_available():
        pytest.skip("the embedded default model is not built")
    code = ("import sys\nfrom morph.features.engine import Engine\nfrom morph.models.lens import LensSpec\n"
            "e = Engine.load(LensSpec(device='cpu'))\nprint(type(e.lens.model).__module__, "
            "'transformers.modeling_utils' in sys.modules, len(e.analyze('A short line of text.').offsets) > 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["morph.models.gpt2", "False", "True"]
