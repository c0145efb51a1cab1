"""The hook mapping: TransformerLens hook names onto Hugging Face modules, checked against the models themselves.

Every model is a small random one built here (weights spread so that activations are O(1) and the residual has
a clear mean; nothing downloaded). For each architecture:
- resid_pre / resid_post equal `output_hidden_states` (the last one before the final norm);
- resid_mid = resid_pre + attn_out and resid_post = resid_mid + mlp_out (parallel NeoX: resid_pre + both),
  and mlp_out is recomputed from resid_mid through the layer's own modules, which pins all five hooks;
- for GPT-2 and GPT-NeoX, TransformerLens itself (with and without its weight processing) is the reference.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from morph.errors import ModelLoadError
from morph.models.hooks import capture, decoder_layers_path, edit_activations, forward_cached, resolve_hook
from morph.models.tiny import build_gemma3_multimodal, build_model

ARCHS = ["gpt2", "neox", "neox_seq", "llama", "gemma2", "gemma3", "qwen2", "qwen3", "olmo2"]
KINDS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
N_LAYERS = 3
TOL = dict(atol=1e-4, rtol=1e-5)

# What each hook must map to (relative to layer L): module path and whether it is the module's input.
LAYERS = {"gpt2": "transformer.h", "neox": "gpt_neox.layers", "neox_seq": "gpt_neox.layers"}
EXPECTED = {
    "gpt2": {"attn_out": ("attn", False), "mlp_out": ("mlp", False), "resid_mid": ("ln_2", True)},
    "neox": {"attn_out": ("attention", False), "mlp_out": ("mlp", False)},
    "neox_seq": {"attn_out": ("attention", False), "mlp_out": ("mlp", False),
                 "resid_mid": ("post_attention_layernorm", True)},
    "llama": {"attn_out": ("self_attn", False), "mlp_out": ("mlp", False),
              "resid_mid": ("post_attention_layernorm", True)},
    "gemma2": {"attn_out": ("post_attention_layernorm", False), "mlp_out": ("post_feedforward_layernorm", False),
               "resid_mid": ("pre_feedforward_layernorm", True)},
    "olmo2": {"attn_out": ("post_attention_layernorm", False), "mlp_out": ("post_feedforward_layernorm", False),
              "resid_mid": ("mlp", True)},
}
EXPECTED.update(gemma3=EXPECTED["gemma2"], qwen2=EXPECTED["llama"], qwen3=EXPECTED["llama"])
FINAL_NORM = {"gpt2": "transformer.ln_f", "neox": "gpt_neox.final_layer_norm", "neox_seq": "gpt_neox.final_layer_norm"}


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hook-models")
    built = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for arch in ARCHS:
            base = "neox" if arch == "neox_seq" else arch
            extra = {"use_parallel_residual": False} if arch == "neox_seq" else {}
            model, tok = build_model(root / arch, base, d_model=64, n_layers=N_LAYERS, spread=True, **extra)
            built[arch] = model.eval()
    return built


@pytest.fixture(scope="session")
def ids():
    gen = torch.Generator().manual_seed(7)
    return torch.randint(1, 300, (2, 11), generator=gen)


def _hook(model, layer, kind, centre=False):
    return resolve_hook(model, f"blocks.{layer}.hook_{kind}", centre=centre)


def _all(model, ids, layer, centre=False):
    return {k: capture(model, _hook(model, layer, k, centre), ids)
            for k in KINDS if not (k == "resid_mid" and "resid_mid" not in _expected_for(model))}


def _expected_for(model):
    arch = model.config.model_type
    if arch == "gpt_neox":
        arch = "neox" if model.config.use_parallel_residual else "neox_seq"
    return EXPECTED[{"gemma3_text": "gemma3"}.get(arch, arch)]


@pytest.mark.parametrize("arch", ARCHS)
def test_hook_names_map_onto_the_documented_modules(models, arch):
    model = models[arch]
    layers = LAYERS.get(arch, "model.layers")
    assert decoder_layers_path(model) == layers
    for layer in range(N_LAYERS):
        pre, post = _hook(model, layer, "resid_pre"), _hook(model, layer, "resid_post")
        assert (pre.module_path, pre.read_input) == (f"{layers}.{layer}", True)
        assert (post.module_path, post.read_input) == (f"{layers}.{layer}", False)
        for kind, (sub, is_input) in EXPECTED[arch].items():
            hook = _hook(model, layer, kind)
            assert (hook.module_path, hook.read_input) == (f"{layers}.{layer}.{sub}", is_input), kind
            assert hook.layer == layer and hook.name == f"blocks.{layer}.hook_{kind}"


@pytest.mark.parametrize("arch", ARCHS)
def test_residual_hooks_equal_output_hidden_states(models, ids, arch):
    model = models[arch]
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    assert len(hidden) == N_LAYERS + 1
    for layer in range(N_LAYERS):
        pre = capture(model, _hook(model, layer, "resid_pre"), ids)
        post = capture(model, _hook(model, layer, "resid_post"), ids)
        assert torch.equal(pre, hidden[layer])
        if layer < N_LAYERS - 1:
            assert torch.equal(post, hidden[layer + 1])
    # HF applies the final norm to the last hidden state; the hook reads the residual before it
    final_norm = model.get_submodule(FINAL_NORM.get(arch, "model.norm"))
    with torch.no_grad():
        assert torch.allclose(final_norm(post), hidden[-1], **TOL)
    assert not torch.allclose(post, hidden[-1], atol=1e-2)
    assert post.abs().max() > 1 and post.mean(-1).abs().max() > 0.05  # a meaningful scale for the tolerances


def _mlp_from_resid_mid(arch, block, resid_mid):
    """The MLP output recomputed from resid_mid with the layer's own modules."""
    if arch in ("gpt2",):
        return block.mlp(block.ln_2(resid_mid))
    if arch in ("neox_seq", "llama", "qwen2", "qwen3"):
        return block.mlp(block.post_attention_layernorm(resid_mid))
    if arch in ("gemma2", "gemma3"):
        return block.post_feedforward_layernorm(block.mlp(block.pre_feedforward_layernorm(resid_mid)))
    if arch == "olmo2":
        return block.post_feedforward_layernorm(block.mlp(resid_mid))
    raise AssertionError(arch)


@pytest.mark.parametrize("arch", ARCHS)
def test_sublayer_hooks_add_up_to_the_residual(models, ids, arch):
    model = models[arch]
    for layer in range(N_LAYERS):
        acts = _all(model, ids, layer)
        if arch == "neox":  # parallel attention and MLP: no resid_mid, as in TransformerLens
            assert torch.allclose(acts["resid_pre"] + acts["attn_out"] + acts["mlp_out"], acts["resid_post"], **TOL)
            block = model.get_submodule(f"gpt_neox.layers.{layer}")
            with torch.no_grad():
                mlp = block.mlp(block.post_attention_layernorm(acts["resid_pre"]))
            assert torch.allclose(mlp, acts["mlp_out"], **TOL)
            continue
        assert torch.allclose(acts["resid_pre"] + acts["attn_out"], acts["resid_mid"], **TOL)
        assert torch.allclose(acts["resid_mid"] + acts["mlp_out"], acts["resid_post"], **TOL)
        block = model.get_submodule(f"{decoder_layers_path(model)}.{layer}")
        with torch.no_grad():
            mlp = _mlp_from_resid_mid(arch, block, acts["resid_mid"])
        assert torch.allclose(mlp, acts["mlp_out"], **TOL)
        assert acts["attn_out"].abs().max() > 0.1 and acts["mlp_out"].abs().max() > 0.1


def test_unmapped_hooks_are_refused_in_one_line(models):
    with pytest.raises(ModelLoadError, match="has no equivalent"):
        resolve_hook(models["neox"], "blocks.0.hook_resid_mid")  # parallel residual
    with pytest.raises(ModelLoadError, match="only 3 layers"):
        resolve_hook(models["llama"], "blocks.3.hook_resid_pre")
    with pytest.raises(ModelLoadError, match="unsupported hook point"):
        resolve_hook(models["gpt2"], "blocks.0.attn.hook_z")
    with pytest.raises(ModelLoadError, match="not a module"):
        resolve_hook(models["llama"], "blocks.0.hook_resid_post", hf_hook_name="model.layers.0.nope")


def test_hf_hook_name_wins_and_takes_gemma_scope_suffixes(models, ids):
    model = models["gemma2"]
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    # hf_hook_name wins over the TransformerLens name (here they even disagree)
    for hf_name in ("model.layers.1", "model.layers.1.output"):
        hook = resolve_hook(model, "blocks.1.hook_resid_pre", hf_hook_name=hf_name)
        assert (hook.module_path, hook.read_input, hook.layer) == ("model.layers.1", False, 1)
        assert torch.equal(capture(model, hook, ids), hidden[2])
    hook = resolve_hook(model, "", hf_hook_name="model.layers.2.input")
    assert (hook.module_path, hook.read_input, hook.layer) == ("model.layers.2", True, 2)
    assert torch.equal(capture(model, hook, ids), hidden[2])
    hook = resolve_hook(model, "", hf_hook_name="model.layers.1.pre_feedforward_layernorm.output")
    assert hook.module_path == "model.layers.1.pre_feedforward_layernorm" and not hook.read_input


def test_gemma3_multimodal_layout():
    model = build_gemma3_multimodal(d_model=64, n_layers=N_LAYERS)
    assert decoder_layers_path(model) == "model.language_model.layers"
    ids = torch.randint(1, 300, (1, 9))
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    for layer in range(N_LAYERS - 1):
        assert torch.equal(capture(model, _hook(model, layer, "resid_post"), ids), hidden[layer + 1])
    hook = _hook(model, 1, "mlp_out")
    assert hook.module_path == "model.language_model.layers.1.post_feedforward_layernorm"
    # Gemma Scope 2 writes hf_hook_point_in for the text-only layout; it must find the same layer here
    hook = resolve_hook(model, "blocks.1.hook_resid_post", hf_hook_name="model.layers.1.output")
    assert hook.module_path == "model.language_model.layers.1"
    assert torch.equal(capture(model, hook, ids), hidden[2])


def test_capture_with_padding_matches_unpadded_rows(models):
    for arch in ("gpt2", "llama"):
        model = models[arch]
        hook = _hook(model, 1, "resid_post")
        a, b = torch.randint(1, 300, (1, 9)), torch.randint(1, 300, (1, 5))
        batch = torch.zeros(2, 9, dtype=torch.long)
        mask = torch.zeros(2, 9, dtype=torch.long)
        batch[0], mask[0] = a[0], 1
        batch[1, :5], mask[1, :5] = b[0], 1
        acts = capture(model, hook, batch, mask)
        assert torch.allclose(acts[0], capture(model, hook, a)[0], **TOL)
        assert torch.allclose(acts[1, :5], capture(model, hook, b)[0], **TOL)


# --- edits ---------------------------------------------------------------------------------------------------

def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama", "gemma2", "olmo2"])
def test_identity_edit_changes_nothing(models, ids, arch):
    model = models[arch]
    clean = _logits(model, ids)
    for kind in KINDS:
        if kind == "resid_mid" and "resid_mid" not in EXPECTED[arch]:
            continue
        for centre in (False, True):
            with edit_activations(model, _hook(model, 1, kind, centre), lambda a: a):
                assert torch.allclose(_logits(model, ids), clean, atol=1e-4), (kind, centre)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma2", "olmo2", "neox_seq"])
@pytest.mark.parametrize("kind", KINDS)
def test_edit_reaches_the_residual_stream(models, ids, arch, kind):
    """An edit at any hook point is what the rest of the model sees: captured again under the edit, the
    hook reads the edited value, and the residual identities still hold downstream."""
    model = models[arch]
    layer = 1
    delta = torch.linspace(-1, 1, 64)
    before = _all(model, ids, layer)
    with edit_activations(model, _hook(model, layer, kind), lambda a: a + delta):
        after = _all(model, ids, layer)
        next_pre = capture(model, _hook(model, layer + 1, "resid_pre"), ids)
    assert torch.allclose(after[kind], before[kind] + delta, **TOL)
    assert torch.allclose(after["resid_pre"] + after["attn_out"], after["resid_mid"], **TOL)
    post_edit = delta if kind == "resid_post" else 0  # resid_post is itself the edited value
    assert torch.allclose(after["resid_mid"] + after["mlp_out"] + post_edit, after["resid_post"], **TOL)
    assert torch.allclose(next_pre, after["resid_post"], **TOL)
    assert not torch.allclose(next_pre, before["resid_post"], atol=1e-2)


@pytest.mark.parametrize("kind", KINDS)
def test_centred_edit_sees_centred_acts_and_adds_the_mean_back(models, ids, kind):
    model = models["gpt2"]
    raw = capture(model, _hook(model, 1, kind), ids)
    seen = []
    delta = torch.linspace(-1, 1, 64)

    def edit(acts):
        seen.append(acts.clone())
        return acts + delta

    with edit_activations(model, _hook(model, 1, kind, centre=True), edit):
        edited_raw = capture(model, _hook(model, 1, kind), ids)  # what the model itself now carries
    assert seen[0].mean(-1).abs().max() < 1e-5
    assert torch.allclose(seen[0], raw - raw.mean(-1, keepdim=True), **TOL)
    assert torch.allclose(edited_raw, raw + delta, **TOL)


def test_edit_applies_with_a_kv_cache(models):
    """Generation runs the edit on every step, with a key/value cache; the cached and uncached runs agree."""
    model = models["llama"]
    ids = torch.randint(1, 300, (1, 8))
    delta = torch.linspace(-0.5, 0.5, 64)
    for kind in ("resid_pre", "resid_mid", "mlp_out"):
        hook = _hook(model, 1, kind)
        with edit_activations(model, hook, lambda a: a + delta), torch.no_grad():
            full = model(input_ids=ids, use_cache=False).logits[:, -1]
            _, cache = forward_cached(model, ids[:, :-1], None)
            step = forward_cached(model, ids[:, -1:], cache)[0][:, -1]
        assert torch.allclose(full, step, atol=1e-4), kind
        assert not torch.allclose(full, _logits(model, ids)[:, -1], atol=1e-3)


# --- TransformerLens itself ------------------------------------------------------------------------------------

def _tl_config(hf):
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.utilities.hf_utils import get_rotary_pct_from_config

    cfg = hf.config
    if cfg.model_type == "gpt2":
        # TransformerLens's own GPT-2 config conversion reads `n_ctx`, which transformers 5 dropped
        return HookedTransformerConfig(
            d_model=cfg.n_embd, n_layers=cfg.n_layer, n_heads=cfg.n_head, d_head=cfg.n_embd // cfg.n_head,
            d_mlp=4 * cfg.n_embd, n_ctx=cfg.n_positions, d_vocab=cfg.vocab_size, act_fn=cfg.activation_function,
            normalization_type="LN", eps=cfg.layer_norm_epsilon, original_architecture="GPT2LMHeadModel",
            positional_embedding_type="standard",
        )
    d_head = cfg.hidden_size // cfg.num_attention_heads
    return HookedTransformerConfig(
        d_model=cfg.hidden_size, d_head=d_head,
        n_heads=cfg.num_attention_heads, d_mlp=cfg.intermediate_size, n_layers=cfg.num_hidden_layers,
        n_ctx=cfg.max_position_embeddings, eps=cfg.layer_norm_eps, d_vocab=cfg.vocab_size, act_fn=cfg.hidden_act,
        parallel_attn_mlp=cfg.use_parallel_residual, positional_embedding_type="rotary",
        rotary_adjacent_pairs=False, rotary_dim=round(get_rotary_pct_from_config(cfg) * d_head),
        normalization_type="LN", original_architecture="GPTNeoXForCausalLM",
    )


# (fold_ln, center_writing_weights, fold_value_biases): none = from_pretrained_no_processing; centre-only =
# SAE-Lens loading gpt2-small-res-jb (registry override center_writing_weights: true); full = from_pretrained.
PROCESSING = {"none": (False, False, False), "centre-only": (False, True, False), "full": (True, True, True)}


def _hooked_transformer(hf, processing):
    from transformer_lens import HookedTransformer
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights
    from transformer_lens.pretrained.weight_conversions.neox import convert_neox_weights

    fold_ln, centre, fold_biases = PROCESSING[processing]
    cfg = _tl_config(hf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tl = HookedTransformer(cfg)
    convert = convert_gpt2_weights if hf.config.model_type == "gpt2" else convert_neox_weights
    state = {k: v.detach().clone() for k, v in convert(hf, cfg).items()}
    tl.load_and_process_state_dict(state, fold_ln=fold_ln, center_writing_weights=centre, center_unembed=centre,
                                   fold_value_biases=fold_biases)
    return tl.eval()


@pytest.mark.parametrize("arch", ["gpt2", "neox"])
@pytest.mark.parametrize("processing", list(PROCESSING))
def test_activations_equal_transformer_lens(models, ids, arch, processing):
    hf = models[arch]
    tl = _hooked_transformer(hf, processing)
    centre = PROCESSING[processing][1]
    with torch.no_grad():
        tl_logits, cache = tl.run_with_cache(ids)
        hf_logits = hf(input_ids=ids).logits
    assert torch.allclose(tl_logits.log_softmax(-1), hf_logits.log_softmax(-1), atol=1e-4)
    compared = 0
    for layer in range(N_LAYERS):
        for kind in KINDS:
            name = f"blocks.{layer}.hook_{kind}"
            if name not in cache.cache_dict:
                assert kind == "resid_mid" and arch == "neox"
                continue
            ours = capture(hf, resolve_hook(hf, name, centre=centre), ids)
            assert torch.allclose(ours, cache[name], atol=1e-4, rtol=0), (name, (ours - cache[name]).abs().max())
            if centre and kind.startswith("resid"):  # centring is not a no-op on these models
                assert not torch.allclose(capture(hf, resolve_hook(hf, name), ids), cache[name], atol=1e-2)
            compared += 1
    assert compared == N_LAYERS * (4 if arch == "neox" else 5)
