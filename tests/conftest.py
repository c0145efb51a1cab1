from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """A tiny random GPT-2 and a TopK SAE at blocks.1.hook_resid_post, as folders: {'model', 'sae'}."""
    from morph.models.tiny import build_model, build_sae

    root = tmp_path_factory.mktemp("tiny-gpt2")
    build_model(root / "model", "gpt2", d_model=64, n_layers=3)
    build_sae(root / "sae", d_in=64, hook_name="blocks.1.hook_resid_post", arch="topk")
    return {"model": root / "model", "sae": root / "sae"}


@pytest.fixture(scope="session")
def tiny_lens(tiny_dirs):
    from morph.models.lens import LensSpec, load_lens

    return load_lens(LensSpec(model=str(tiny_dirs["model"]), sae=str(tiny_dirs["sae"]), device="cpu"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matrices: one torch thread is many times faster than two fighting over busy cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Config and state folders of the test's own, and the working directory there."""
    monkeypatch.setenv("MORPH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MORPH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    return tmp_path
