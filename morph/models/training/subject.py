"""The model an SAE is trained on: the LM this run trained, or any model Morph loads (a preset, hub id or
folder, `--model`). Every stage that reads activations goes through here, so each sees the same model,
tokenizer and hook as the editor will."""

from __future__ import annotations

from morph.models.training.common import Paths
from morph.models.training.config import TrainConfig


def model_label(cfg: TrainConfig) -> str:
    """The model's name for metadata and the card: the default's hub id for the default, else as given."""
    from morph.models import default_model

    if cfg.own_lm:
        return cfg.name
    return default_model.HUB_ID if cfg.model in ("default", default_model.HUB_ID) else cfg.model


def subject_name(cfg: TrainConfig, paths: Paths) -> str:
    """What `load_lens` is given as the model: a folder, or a name Morph resolves."""
    if cfg.own_lm:
        return str(paths.lm_final)
    from morph.models.lens import resolve_model_name

    return resolve_model_name(cfg.model)


def load_subject_tokenizer(cfg: TrainConfig, paths: Paths):
    if cfg.own_lm:
        from morph.models.training.data import load_tokenizer

        return load_tokenizer(paths)
    from morph.models.lens import load_tokenizer

    return load_tokenizer(subject_name(cfg, paths))


def load_subject(cfg: TrainConfig, paths: Paths, device: str):
    """(model in float32, tokenizer); for another model, also fills in its width and the default hook."""
    import torch

    from morph.models.hooks import decoder_layers_path
    from morph.models.lens import load_model_and_tokenizer

    if cfg.own_lm:
        from morph.models.training.lm import load_final_lm

        return load_final_lm(paths, device)
    model, tokenizer = load_model_and_tokenizer(subject_name(cfg, paths), device)
    model = model.to(torch.float32)
    cfg.n_embd = int(model.get_input_embeddings().weight.shape[1])
    cfg.n_layer = len(model.get_submodule(decoder_layers_path(model)))
    return model, tokenizer


def load_work_lens(cfg: TrainConfig, paths: Paths, device: str):
    """The model and the trained SAE loaded through `load_lens`, exactly as the editor loads them."""
    from morph.models.lens import LensSpec, load_lens

    return load_lens(LensSpec(model=subject_name(cfg, paths), sae=str(paths.sae_final), device=device))
