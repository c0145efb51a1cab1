"""The native SAE (morph.models.saes) loads SAE-Lens folders without SAE-Lens and computes what SAE-Lens does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from morph.models.presets import DEFAULT_DIR, default_available
from morph.models.saes import NativeSAE, load_native_sae
from morph.models.tiny import build_sae

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "standard": ("standard", {}),
    "topk": ("topk", {}),
    "jumprelu": ("jumprelu", {}),
    "standard-layer_norm": ("standard", {"normalize_activations": "layer_norm"}),
    "topk-layer_norm": ("topk", {"normalize_activations": "layer_norm"}),
    "jumprelu-constant_norm": ("jumprelu", {"normalize_activations": "constant_norm_rescale"}),
    "topk-constant_norm": ("topk", {"normalize_activations": "constant_norm_rescale"}),
    "standard-no_b_dec_in": ("standard", {"apply_b_dec_to_input": False}),
    "topk-no_b_dec_in": ("topk", {"apply_b_dec_to_input": False}),
    "jumprelu-no_b_dec_in-layer_norm": ("jumprelu", {"apply_b_dec_to_input": False,
                                                     "normalize_activations": "layer_norm"}),
    "topk-rescaled": ("topk", {"rescale_acts_by_decoder_norm": True}),
}


def _reference(folder: Path):
    from sae_lens import SAE

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SAE.load_from_disk(str(folder), device="cpu")


@pytest.mark.parametrize("case", list(CASES))
def test_native_equals_sae_lens(tmp_path, case):
    arch, cfg_kwargs = CASES[case]
    folder = tmp_path / case
    build_sae(folder, d_in=32, hook_name="blocks.1.hook_resid_post", arch=arch, cfg_kwargs=cfg_kwargs)
    ours, ref = load_native_sae(folder, "cpu"), _reference(folder)
    assert isinstance(ours, NativeSAE) and type(ours).__name__ == type(ref).__name__
    assert ours.cfg.architecture() == ref.cfg.architecture() == arch
    assert (ours.cfg.d_in, ours.cfg.d_sae, ours.dtype) == (ref.cfg.d_in, ref.cfg.d_sae, ref.dtype)
    assert ours.cfg.apply_b_dec_to_input == ref.cfg.apply_b_dec_to_input
    assert ours.cfg.normalize_activations == ref.cfg.normalize_activations
    torch.manual_seed(0)
    x = torch.randn(3, 7, 32) * 4 + 1
    with torch.no_grad():
        f_ours, f_ref = ours.encode(x), ref.encode(x)
        assert (f_ref > 0).any()
        assert torch.allclose(f_ours, f_ref, atol=1e-5)
        # decode after encode: the run-time normalisation keeps state between the two
        assert torch.allclose(ours.decode(f_ours), ref.decode(f_ref), atol=1e-5)
        assert torch.allclose(ours(x), ref(x), atol=1e-5)
        if cfg_kwargs.get("normalize_activations", "none") == "none":
            f = torch.rand(5, ours.cfg.d_sae)
            assert torch.allclose(ours.decode(f), ref.decode(f), atol=1e-5)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec") + (("threshold",) if arch == "jumprelu" else ()):
        assert torch.equal(getattr(ours, name), getattr(ref, name)), name
    meta = ours.cfg.metadata
    assert meta.get("hook_name") == meta.hook_name == meta["hook_name"] == "blocks.1.hook_resid_post"
    assert "hook_name" in meta and "hf_hook_name" not in meta and meta.hf_hook_name is None
    assert meta.get("hf_hook_name", 7) == 7


def test_unsupported_folders_go_to_sae_lens(tmp_path):
    import json

    folder = tmp_path / "sae"
    build_sae(folder, d_in=16, hook_name="blocks.0.hook_resid_pre", arch="topk")
    cfg = json.loads((folder / "cfg.json").read_text())
    for change in ({"architecture": "gated"}, {"reshape_activations": "hook_z"},
                   {"normalize_activations": "covariance_whitening"}, {"d_in": 17}):
        (folder / "cfg.json").write_text(json.dumps({**cfg, **change}))
        assert load_native_sae(folder, "cpu") is None, change
    old = dict(cfg, metadata={k: v for k, v in cfg["metadata"].items() if "version" not in k})
    (folder / "cfg.json").write_text(json.dumps(old))  # pre-6.0: SAE-Lens renames and defaults fields
    assert load_native_sae(folder, "cpu") is None
    assert load_native_sae(tmp_path / "missing", "cpu") is None


def test_load_sae_goes_native_for_a_local_folder(tmp_path):
    from morph.models.lens import load_sae

    build_sae(tmp_path / "sae", d_in=16, hook_name="blocks.0.hook_resid_pre", arch="jumprelu")
    sae, folder = load_sae(str(tmp_path / "sae"), "cpu")
    assert isinstance(sae, NativeSAE) and folder == tmp_path / "sae"
    assert sae.to("cpu") is sae and sae.eval() is sae and sae.W_dec.dtype == torch.float32
    assert str(sae.device) == "cpu" and sae.cfg.device == "cpu"


needs_default = pytest.mark.skipif(not default_available(), reason="the embedded default model is missing")


@needs_default
def test_default_sae_is_native_and_equals_sae_lens():
    from morph.models.hooks import capture
    from morph.models.lens import LensSpec, load_lens

    lens = load_lens(LensSpec(device="cpu"))
    assert isinstance(lens.sae, NativeSAE) and lens.sae.cfg.architecture() == "topk"
    ref = _reference(DEFAULT_DIR / "sae")
    text = ("The fog lay thick upon the river that morning, and the boatmen, who had known the water all their "
            "lives, moved slowly and spoke in low voices.")
    ids = lens.tokenizer(text, return_tensors="pt").input_ids
    ids = torch.cat([torch.tensor([[lens.bos_token_id]]), ids], dim=1)
    with torch.no_grad():
        acts = capture(lens.model, lens.hook, ids)
        ours, theirs = lens.sae.encode(acts), ref.encode(acts)
        assert (theirs > 0).sum() >= ids.shape[1] * 8
        assert torch.allclose(ours, theirs, atol=1e-5)
        assert torch.allclose(lens.sae.decode(ours), ref.decode(theirs), atol=1e-5)


_LOAD = ("import sys, time; t = time.perf_counter(); "
         "from morph.features.engine import Engine; from morph.models.lens import LensSpec; "
         "Engine.load(LensSpec(device='cpu')); "
         "print(round(time.perf_counter() - t, 2), 'sae_lens' in sys.modules, 'transformer_lens' in sys.modules)")


def _run(code: str) -> str:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@needs_default
def test_engine_load_imports_neither_sae_lens_nor_transformer_lens():
    seconds, sae_lens, transformer_lens = _run(_LOAD).split()
    assert sae_lens == "False" and transformer_lens == "False"
    # what it cost before: the same load with SAE-Lens imported (as load_sae used to) -- printed, not asserted
    before = _run("import time; t = time.perf_counter(); import sae_lens; " + _LOAD.replace(
        "import sys, time; t = time.perf_counter(); ", "import sys; "))
    print(f"\nEngine.load in a fresh process: {seconds} s native, {before.split()[0]} s with sae_lens imported")


@pytest.mark.parametrize("case", ["topk", "topk-rescaled", "topk-layer_norm", "standard"])
def test_decoding_rows_of_few_active_features_sums_their_decoder_rows_as_sae_lens_decodes(tmp_path, case,
                                                                                           monkeypatch):
    """decode of [tokens, d_sae] rows with few active features goes through the active decoder rows only
    (embedding_bag), and gives SAE-Lens's dense reconstruction; a row with no active feature decodes to b_dec."""
    arch, cfg_kwargs = CASES[case]
    folder = tmp_path / case
    build_sae(folder, d_in=32, hook_name="blocks.1.hook_resid_post", arch=arch, d_sae=512, cfg_kwargs=cfg_kwargs)
    ours, ref = load_native_sae(folder, "cpu"), _reference(folder)
    sparse_calls = []
    bag = torch.nn.functional.embedding_bag
    monkeypatch.setattr(torch.nn.functional, "embedding_bag", lambda *a, **k: sparse_calls.append(1) or bag(*a, **k))
    torch.manual_seed(0)
    x = torch.randn(9, 32) * 4 + 1
    with torch.no_grad():
        f_ours, f_ref = ours.encode(x), ref.encode(x)
        if arch == "standard":  # a standard SAE's random weights: keep 8 of 512 per row, as a sparse one would
            keep = f_ours.topk(8, dim=-1).indices
            f_ours = torch.zeros_like(f_ours).scatter(-1, keep, f_ours.gather(-1, keep))
            f_ref = f_ours.clone()
        f_ours[4] = 0
        f_ref[4] = 0
        torch.testing.assert_close(ours.decode(f_ours), ref.decode(f_ref), atol=1e-5, rtol=1e-5)
    assert sparse_calls


@pytest.mark.parametrize("case", list(CASES))
def test_sparse_encoding_and_decoding_equal_the_dense_ones(tmp_path, case):
    """encode_sparse / decode_sparse (the analyzer's path: a TopK SAE never builds its dense [n, d_sae] matrix)
    give what encode / decode give, natively and through SAE-Lens's own classes."""
    from morph.models.saes import SparseActs, decode_sparse, encode_sparse

    arch, cfg_kwargs = CASES[case]
    folder = tmp_path / case
    build_sae(folder, d_in=32, hook_name="blocks.1.hook_resid_post", arch=arch, cfg_kwargs=cfg_kwargs)
    torch.manual_seed(1)
    x = torch.randn(9, 32) * 4 + 1
    for sae in (load_native_sae(folder, "cpu"), _reference(folder)):
        with torch.no_grad():
            acts = encode_sparse(sae, x)
            decoded = decode_sparse(sae, acts)
            dense = sae.encode(x)
            expected = sae.decode(dense)
        assert isinstance(acts, SparseActs) and len(acts.indptr) == len(x) + 1 and (acts.values != 0).all()
        rows = torch.repeat_interleave(torch.arange(len(x)), acts.indptr.diff())
        again = torch.zeros_like(dense)
        again[rows, acts.indices] = acts.values
        # the same features, their values up to rounding (the sparse path folds b_dec and the norms into W_enc)
        assert torch.equal(again != 0, dense != 0)
        torch.testing.assert_close(again, dense, atol=1e-5, rtol=1e-5)
        assert all(bool((acts.indices[a:b].diff() > 0).all()) for a, b in zip(acts.indptr[:-1], acts.indptr[1:]))
        torch.testing.assert_close(decoded, expected, atol=1e-5, rtol=1e-5)
        part = acts.rows(3, 7)
        assert torch.equal(part.indptr, acts.indptr[3:8] - acts.indptr[3])
        assert torch.equal(part.indices, acts.indices[int(acts.indptr[3]):int(acts.indptr[7])])


def test_the_folded_encoder_follows_the_parameters(tmp_path):
    """A TopK SAE's sparse encode folds b_dec and the decoder norms into its encoder once, and folds again
    when training changes a parameter in place (or it is replaced)."""
    from morph.models.saes import SparseActs, encode_sparse

    arch, cfg_kwargs = CASES["topk-rescaled"]
    build_sae(tmp_path, d_in=32, hook_name="blocks.1.hook_resid_post", arch=arch, cfg_kwargs=cfg_kwargs)
    sae = load_native_sae(tmp_path, "cpu")
    torch.manual_seed(2)
    x = torch.randn(700, 32) * 4 + 1  # more rows than one chunk of the sparse encode

    def agrees() -> None:
        with torch.no_grad():
            acts, dense = encode_sparse(sae, x), sae.encode(x)
        torch.testing.assert_close(SparseActs.from_dense(dense).indices, acts.indices)
        torch.testing.assert_close(SparseActs.from_dense(dense).values, acts.values, atol=1e-5, rtol=1e-5)

    agrees()
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.5, 2.0, sae.W_dec.shape[0])[:, None])  # changes the norms
        sae.b_dec.add_(0.3)
    agrees()
    sae.W_enc = torch.nn.Parameter(sae.W_enc.detach().flip(-1).clone())
    agrees()
