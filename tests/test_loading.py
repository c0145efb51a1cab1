"""Loading a Lens: SAEs in SAE-Lens's format read through `load_lens`/`load_sae` give the same features as
SAE-Lens on Hugging Face hidden states; centring follows the SAE's metadata; bad input is one line, fast."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from morph.errors import InputError, ModelLoadError, MorphError
from morph.models.hooks import capture
from morph.models.lens import LensSpec, _wants_centring, load_lens, load_sae
from morph.models.tiny import build_model, build_sae

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("loading")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for arch in ("gpt2", "neox", "llama"):
            build_model(root / arch, arch, d_model=64, n_layers=3, spread=True)
        saes = {
            "standard": dict(arch="standard", hook_name="blocks.1.hook_resid_post"),
            "topk": dict(arch="topk", hook_name="blocks.2.hook_resid_pre"),
            "jumprelu": dict(arch="jumprelu", hook_name="blocks.0.hook_resid_post"),
            "layer_norm": dict(arch="standard", hook_name="blocks.1.hook_resid_pre",
                               cfg_kwargs={"normalize_activations": "layer_norm"}),
            "constant_norm": dict(arch="topk", hook_name="blocks.1.hook_resid_pre",
                                  cfg_kwargs={"normalize_activations": "constant_norm_rescale"}),
            "tl_centred": dict(arch="topk", hook_name="blocks.1.hook_resid_pre", model_class_name="HookedTransformer",
                               model_from_pretrained_kwargs={"center_writing_weights": True}),
            "hf_hooked": dict(arch="topk", hook_name="blocks.1.hook_resid_pre", hf_hook_name="transformer.h.1.output",
                              model_class_name="HookedTransformer",
                              model_from_pretrained_kwargs={"center_writing_weights": True}),
            "no_bos": dict(arch="topk", hook_name="blocks.1.hook_resid_pre", prepend_bos=False),
            "narrow": dict(arch="topk", hook_name="blocks.1.hook_resid_pre", d_in=32),
            "deep": dict(arch="topk", hook_name="blocks.7.hook_resid_pre"),
            "attn_z": dict(arch="topk", hook_name="blocks.1.attn.hook_z"),
        }
        for name, kwargs in saes.items():
            kwargs = dict(kwargs)
            build_sae(root / "sae" / name, d_in=kwargs.pop("d_in", 64), **kwargs)
    import shutil

    shutil.copytree(root / "gpt2", root / "no_tokenizer")
    for path in (root / "no_tokenizer").glob("tokenizer*"):
        path.unlink()
    (root / "empty").mkdir()
    (root / "a_file").write_text("not an SAE")
    return root


@pytest.fixture(scope="session")
def tokens():
    return torch.randint(1, 300, (2, 12), generator=torch.Generator().manual_seed(11))


def _lens(folders, model="gpt2", sae="topk"):
    return load_lens(LensSpec(model=str(folders / model), sae=str(folders / "sae" / sae), device="cpu"))


def _reference_features(folders, model, sae, ids, centre=False):
    """SAE-Lens on Hugging Face `output_hidden_states`, loaded independently of Morph."""
    from sae_lens import SAE
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_sae = SAE.load_from_disk(str(folders / "sae" / sae), device="cpu")
    hf = AutoModelForCausalLM.from_pretrained(str(folders / model), dtype=torch.float32).eval()
    layer, kind = ref_sae.cfg.metadata.hook_name.split(".")[1:]
    index = int(layer) + (1 if kind == "hook_resid_post" else 0)
    with torch.no_grad():
        hidden = hf(input_ids=ids, output_hidden_states=True).hidden_states[index]
        if centre:
            hidden = hidden - hidden.mean(-1, keepdim=True)
        return ref_sae.encode(hidden)


@pytest.mark.parametrize("sae", ["standard", "topk", "jumprelu", "layer_norm", "constant_norm"])
def test_engine_path_equals_sae_lens_on_hidden_states(folders, tokens, sae):
    lens = _lens(folders, sae=sae)
    assert lens.hook.centre is False and lens.d_model == 64 and lens.d_sae == 512
    ours = lens.sae.encode(capture(lens.model, lens.hook, tokens))
    reference = _reference_features(folders, "gpt2", sae, tokens)
    assert (reference > 0).sum() > 0.01 * reference.numel()  # the features really fire
    assert torch.allclose(ours, reference, atol=1e-5)


def test_input_normalisation_is_applied_by_sae_lens(folders, tokens):
    """layer_norm normalisation happens inside encode: features differ from the same weights unnormalised."""
    lens = _lens(folders, sae="layer_norm")
    acts = capture(lens.model, lens.hook, tokens)
    normalised = lens.sae.encode(acts)
    lens.sae.cfg.normalize_activations = "none"
    lens.sae.run_time_activation_norm_fn_in = lambda x: x
    assert not torch.allclose(normalised, lens.sae.encode(acts), atol=1e-3)


def test_transformer_lens_centred_sae_reads_the_centred_residual(folders, tokens):
    lens = _lens(folders, sae="tl_centred")
    assert lens.hook.centre is True
    acts = capture(lens.model, lens.hook, tokens)
    assert acts.mean(-1).abs().max() < 1e-5
    reference = _reference_features(folders, "gpt2", "tl_centred", tokens, centre=True)
    assert torch.allclose(lens.sae.encode(acts), reference, atol=1e-5)
    # on a NeoX model too; never on an RMSNorm model
    assert _lens(folders, model="neox", sae="tl_centred").hook.centre is True
    assert _lens(folders, model="llama", sae="tl_centred").hook.centre is False


def test_wants_centring_follows_the_metadata(folders):
    from types import SimpleNamespace

    from sae_lens.saes.sae import SAEMetadata

    lens = _lens(folders)
    gpt2 = lens.model

    def sae(**meta):
        return SimpleNamespace(cfg=SimpleNamespace(metadata=SAEMetadata(hook_name="blocks.1.hook_resid_pre", **meta)))

    centred = {"center_writing_weights": True}
    assert _wants_centring(gpt2, sae(model_class_name="HookedTransformer", model_from_pretrained_kwargs=centred))
    assert _wants_centring(gpt2, sae(model_class_name="HookedSAETransformer", model_from_pretrained_kwargs=centred))
    assert _wants_centring(gpt2, sae(model_from_pretrained_kwargs=centred))  # class defaults to HookedTransformer
    # SAE-Lens loads HookedTransformers with from_pretrained_no_processing: no kwargs means not centred
    assert not _wants_centring(gpt2, sae(model_class_name="HookedTransformer"))
    assert not _wants_centring(gpt2, sae(model_class_name="HookedTransformer", model_from_pretrained_kwargs={}))
    assert not _wants_centring(gpt2, sae(model_class_name="HookedTransformer",
                                         model_from_pretrained_kwargs={"fold_ln": True}))
    assert not _wants_centring(gpt2, sae(model_class_name="AutoModelForCausalLM",
                                         model_from_pretrained_kwargs=centred))
    assert not _wants_centring(gpt2, sae(model_from_pretrained_kwargs=centred, hf_hook_name="transformer.h.1"))


def test_hf_hook_name_in_the_metadata_wins(folders, tokens):
    """hf_hook_name says the output of layer 1 (= resid_post); the TransformerLens name says resid_pre."""
    from sae_lens import SAE
    from transformers import AutoModelForCausalLM

    lens = _lens(folders, sae="hf_hooked")
    assert (lens.hook.module_path, lens.hook.read_input, lens.hook.centre) == ("transformer.h.1", False, False)
    hf = AutoModelForCausalLM.from_pretrained(str(folders / "gpt2"), dtype=torch.float32).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hidden = hf(input_ids=tokens, output_hidden_states=True).hidden_states[2]
        reference = SAE.load_from_disk(str(folders / "sae" / "hf_hooked")).encode(hidden)
    assert torch.allclose(lens.sae.encode(capture(lens.model, lens.hook, tokens)), reference, atol=1e-5)


def test_metadata_reaches_the_lens(folders):
    lens = _lens(folders, sae="no_bos")
    assert lens.prepend_bos is False
    lens = _lens(folders, sae="topk")
    assert lens.prepend_bos is True
    assert lens.bos_token_id == lens.tokenizer.bos_token_id
    assert lens.hook.name == "blocks.2.hook_resid_pre" and lens.hook.module_path == "transformer.h.2"
    assert lens.context_size == 512 and lens.sae_dir == folders / "sae" / "topk"
    assert not lens.model.training and not lens.sae.training


# --- bad input ---------------------------------------------------------------------------------------------------

def _bad_specs(folders):
    gpt2, sae = str(folders / "gpt2"), str(folders / "sae" / "topk")
    return [
        (LensSpec(model=str(folders / "missing"), sae=sae), "model folder .* does not exist"),
        (LensSpec(model="no/such/folder", sae=sae), "model folder .* does not exist"),
        (LensSpec(model=str(folders / "empty"), sae=sae), "has no config.json"),
        (LensSpec(model=str(folders / "a_file"), sae=sae), "model path .* not a folder"),
        (LensSpec(model=str(folders / "no_tokenizer"), sae=sae), "no usable tokenizer"),
        (LensSpec(model=gpt2, sae=str(folders / "sae" / "missing")), "does not exist"),
        (LensSpec(model=gpt2, sae=str(folders / "empty")), "no cfg.json"),
        (LensSpec(model=gpt2, sae=str(folders / "a_file")), "not a folder"),
        (LensSpec(model=gpt2, sae=str(folders / "sae" / "narrow")), "width 32.*width 64"),
        (LensSpec(model=gpt2, sae=str(folders / "sae" / "deep")), "layer 7.*only 3 layers"),
        (LensSpec(model=gpt2, sae=str(folders / "sae" / "attn_z")), "unsupported hook point"),
        (LensSpec(model=gpt2, sae="no-such-release:blocks.0.hook_resid_pre"), "unknown SAE release"),
        (LensSpec(model=gpt2, sae="gpt2-small-res-jb:blocks.99.hook_resid_pre"), "not in SAE-Lens release"),
        (LensSpec(model=gpt2, sae="gpt2-small-res-jb"), "add the SAE id"),
        (LensSpec(model=gpt2, sae="nothing-like-an-sae"), "neither a folder nor RELEASE:SAE_ID"),
        (LensSpec(model="someone/not-cached", sae=sae), "not in the local cache, and HF_HUB_OFFLINE"),
        (LensSpec(model=gpt2, sae="gpt2-small-res-jb:blocks.8.hook_resid_pre"), "not in the local cache"),
        (LensSpec(model=gpt2, sae="someone/not-a-repo:some/path"), "not in the local cache"),
        (LensSpec(model=gpt2, sae=sae, device="cuda"), "CUDA"),
        (LensSpec(model=gpt2, sae=sae, device="tpu"), "unknown device"),
        (LensSpec(model=gpt2, sae=None), "needs an SAE"),
        (LensSpec(model=None, sae=sae), "give --model"),
    ]


def test_bad_inputs_fail_fast_in_one_line(folders, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if torch.cuda.is_available():
        pytest.skip("the CUDA case needs a machine without CUDA")
    load_lens(LensSpec(model=str(folders / "gpt2"), sae=str(folders / "sae" / "topk"), device="cpu"))  # warm
    for spec, pattern in _bad_specs(folders):
        start = time.monotonic()
        with pytest.raises(MorphError, match=pattern) as caught:
            load_lens(spec)
        elapsed = time.monotonic() - start
        message = str(caught.value)
        assert isinstance(caught.value, (ModelLoadError, InputError))
        assert "\n" not in message and len(message) < 400, message
        assert caught.value.__cause__ is None, message
        assert elapsed < 10, (spec, elapsed)


def test_a_bad_sae_is_refused_before_the_model_loads(folders, monkeypatch):
    import morph.models.lens as lens_module

    def no_model(*_args, **_kwargs):
        raise AssertionError("the model should not load")

    monkeypatch.setattr(lens_module, "load_model_and_tokenizer", no_model)
    for sae in ("gpt2-small-res-jb:blocks.99.hook_resid_pre", str(folders / "empty"), str(folders / "nope")):
        with pytest.raises(ModelLoadError):
            load_lens(LensSpec(model=str(folders / "gpt2"), sae=sae, device="cpu"))


def test_load_sae_from_a_folder(folders):
    sae, folder = load_sae(str(folders / "sae" / "jumprelu"), "cpu")
    assert folder == folders / "sae" / "jumprelu" and sae.cfg.d_in == 64 and type(sae).__name__ == "JumpReLUSAE"


def test_an_unreachable_hub_turns_huggingface_hub_offline_for_the_load(monkeypatch):
    import huggingface_hub.constants as hub_constants

    import morph.models.lens as lens_module

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(lens_module, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    with lens_module._hub_access() as why:
        assert why and "cannot be reached" in why
        assert hub_constants.HF_HUB_OFFLINE is True
    assert hub_constants.HF_HUB_OFFLINE is False
    monkeypatch.setattr(lens_module, "_hub_reachable", lambda timeout=3.0: True)
    with lens_module._hub_access() as why:
        assert why is None and hub_constants.HF_HUB_OFFLINE is False


def test_hub_names_fail_fast_without_hf_hub_offline(monkeypatch):
    """With HF_HUB_OFFLINE unset and no network, huggingface_hub would retry each file for ~25 s. (With a
    network, the hub answers at once that these repositories do not exist.)"""
    import huggingface_hub.constants as hub_constants

    from morph.models.lens import _sae_directory, load_model_and_tokenizer

    _sae_directory()  # parsed once per process; not what is timed
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)  # as if the variable had never been set
    for call in (lambda: load_model_and_tokenizer("someone-morph-test/not-a-model", "cpu"),
                 lambda: load_sae("someone-morph-test/not-a-repo:some/path", "cpu")):
        start = time.monotonic()
        with pytest.raises(ModelLoadError) as caught:
            call()
        elapsed = time.monotonic() - start
        assert "\n" not in str(caught.value)
        assert elapsed < 8, (elapsed, str(caught.value))  # a 3 s connection probe at most, never the retries
    assert hub_constants.HF_HUB_OFFLINE is False  # put back after the load


def test_presets_name_registry_saes_and_their_models():
    from morph.models.lens import check_sae_spec, resolve_spec, sae_model_name
    from morph.models.presets import PRESETS, TL_TO_HF

    for preset in PRESETS.values():
        assert resolve_spec(LensSpec(model=preset.name)) == (preset.model, preset.sae)
        if preset.name == "default":
            continue
        check_sae_spec(preset.sae)  # the release and id exist in SAE-Lens's registry
        assert sae_model_name(preset.sae) == preset.model
        assert resolve_spec(LensSpec(sae=preset.sae)) == (preset.model, preset.sae)
    assert resolve_spec(LensSpec(model="gpt2-small", sae="x")) == (TL_TO_HF["gpt2-small"], "x")


# --- device, imports -----------------------------------------------------------------------------------------------

def test_resolve_device():
    from morph.models.device import resolve_device

    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto") == resolve_device(None) == resolve_device("") == expected
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        for device in ("cuda", "cuda:0"):
            with pytest.raises(InputError, match="no CUDA GPU"):
                resolve_device(device)
    assert resolve_device(" CPU ") == "cpu"
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(InputError, match="must be a number"):
        resolve_device("cpu:x")
    if torch.cuda.is_available():
        with pytest.raises(InputError, match="only"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_heavy_libraries_are_imported_lazily():
    code = ("import morph.cli, morph.models.lens, morph.models.hooks, morph.models.device, morph.models.presets\n"
            "import sys\n"
            "heavy = [m for m in ('torch', 'transformers', 'sae_lens', 'transformer_lens', 'huggingface_hub')"
            " if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
