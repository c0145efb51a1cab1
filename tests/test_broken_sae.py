"""An SAE whose weights hold a NaN or an infinity is refused in one line (exit 2) instead of giving NaN
activations everywhere (and invalid JSON from `--json`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_an_sae_with_nan_or_infinite_weights_is_refused_in_one_line(tmp_path, tiny_dirs, value):
    import torch
    from safetensors.torch import load_file, save_file

    sae = tmp_path / "sae"
    shutil.copytree(tiny_dirs["sae"], sae)
    weights = next(sae.glob("*.safetensors"))
    state = load_file(str(weights))
    state["W_dec"] = state["W_dec"].clone()
    state["W_dec"][3, 5] = value
    save_file(state, str(weights))
    doc = tmp_path / "doc.txt"
    doc.write_text("The river ran past the old mill.\n")
    done = subprocess.run([sys.executable, "-m", "morph", "analyze", str(doc), "--json", "--model",
                           str(tiny_dirs["model"]), "--sae", str(sae), "--device", "cpu"],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "W_dec has 1 NaN or infinite value" in done.stderr, done.stderr
    assert torch.isfinite(load_file(str(next(tiny_dirs["sae"].glob("*.safetensors"))))["W_dec"]).all()
