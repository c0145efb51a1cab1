"""A small GPT-2 for inference: Morph's embedded default model runs on it.

Importing transformers' modelling stack (modeling_utils and what it pulls in: torch.distributed.tensor,
torch._dynamo, the hub kernels) takes about 2.4 s, half of the editor's start-up on two cores, to run a
4-layer GPT-2. This module runs the same weights with the same module names as transformers'
GPT2LMHeadModel (transformer.h.N.ln_1 / attn / ln_2 / mlp ...), so the hooks, the SAE, labels and
steering work on it unchanged; it equals GPT2LMHeadModel within float tolerance, on logits, on every
hook point and on cached generation (tests/test_native_gpt2.py). Only configurations it reproduces
exactly are accepted (`supports`); anything else loads through transformers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS = "model.safetensors"


@dataclass
class GPT2Config:
    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    layer_norm_epsilon: float = 1e-5
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    model_type: str = "gpt2"

    def get_text_config(self) -> "GPT2Config":
        return self


def supports(config: dict) -> bool:
    """Whether this module computes exactly what GPT2LMHeadModel computes for a config.json."""
    return (config.get("model_type") == "gpt2"
            and config.get("activation_function", "gelu_new") == "gelu_new"
            and config.get("scale_attn_weights", True)
            and not config.get("scale_attn_by_inverse_layer_idx", False)
            and not config.get("reorder_and_upcast_attn", False)
            and not config.get("add_cross_attention", False)
            and config.get("n_inner") in (None, 4 * config.get("n_embd", 0))
            and config.get("tie_word_embeddings", True))


class KVCache:
    """Keys and values per layer ([batch, heads, positions, head_dim]), with the few operations of
    transformers' DynamicCache that steering uses."""

    def __init__(self, n_layers: int) -> None:
        self.keys: list[Any] = [None] * n_layers
        self.values: list[Any] = [None] * n_layers

    def update(self, layer: int, key: Any, value: Any) -> tuple[Any, Any]:
        if self.keys[layer] is not None:
            key = torch.cat([self.keys[layer], key], dim=-2)
            value = torch.cat([self.values[layer], value], dim=-2)
        self.keys[layer], self.values[layer] = key, value
        return key, value

    def get_seq_length(self) -> int:
        return 0 if self.keys[0] is None else int(self.keys[0].shape[-2])

    def crop(self, max_length: int) -> None:
        """Keep the first max_length positions (negative: drop that many from the end)."""
        if max_length < 0:
            max_length = self.get_seq_length() + max_length
        self.keys = [None if k is None else k[..., :max_length, :] for k in self.keys]
        self.values = [None if v is None else v[..., :max_length, :] for v in self.values]

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.keys = [None if k is None else k.repeat_interleave(repeats, dim=0) for k in self.keys]
        self.values = [None if v is None else v.repeat_interleave(repeats, dim=0) for v in self.values]

    def batch_select_indices(self, indices: Any) -> None:
        self.keys = [None if k is None else k[indices] for k in self.keys]
        self.values = [None if v is None else v[indices] for v in self.values]


class Conv1D(nn.Module):
    """GPT-2's linear layer: weight stored [in, out]."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: Any) -> Any:
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class Attention(nn.Module):
    def __init__(self, config: GPT2Config, layer: int) -> None:
        super().__init__()
        self.n_head, self.layer = config.n_head, layer
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)

    def forward(self, x: Any, cache: KVCache | None, mask: Any) -> Any:
        batch, length, width = x.shape
        q, k, v = self.c_attn(x).split(width, dim=-1)
        q, k, v = (t.view(batch, length, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             is_causal=mask is None and length > 1 and k.shape[-2] == length)
        return self.c_proj(out.transpose(1, 2).reshape(batch, length, width))


class MLP(nn.Module):
    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.c_fc = Conv1D(config.n_embd, 4 * config.n_embd)
        self.c_proj = Conv1D(4 * config.n_embd, config.n_embd)

    def forward(self, x: Any) -> Any:
        h = self.c_fc(x)
        # transformers' NewGELUActivation, written out (F.gelu's tanh form rounds differently)
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * torch.pow(h, 3.0))))
        return self.c_proj(h)


class Block(nn.Module):
    def __init__(self, config: GPT2Config, layer: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = Attention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, hidden: Any, cache: KVCache | None = None, mask: Any = None) -> Any:
        # Modules are called with the activation as their first positional argument: the hooks read it there.
        hidden = hidden + self.attn(self.ln_1(hidden), cache, mask)
        return hidden + self.mlp(self.ln_2(hidden))


class Transformer(nn.Module):
    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.config = config
        self.generation_config = SimpleNamespace(eos_token_id=config.eos_token_id)
        self.transformer = Transformer(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(self, input_ids: Any, attention_mask: Any = None, past_key_values: KVCache | None = None,
                use_cache: bool = False, **_: Any) -> SimpleNamespace:
        batch, length = input_ids.shape
        cache = past_key_values if past_key_values is not None else (
            KVCache(self.config.n_layer) if use_cache else None)
        past = cache.get_seq_length() if cache is not None else 0
        positions = torch.arange(past, past + length, device=input_ids.device)
        hidden = self.transformer.wte(input_ids) + self.transformer.wpe(positions)
        mask = _mask(attention_mask, length, past, input_ids.device)
        for block in self.transformer.h:
            hidden = block(hidden, cache, mask)
        logits = self.lm_head(self.transformer.ln_f(hidden))
        return SimpleNamespace(logits=logits, past_key_values=cache)


def _mask(attention_mask: Any, length: int, past: int, device: Any) -> Any:
    """A boolean [batch or 1, 1, length, past + length] mask, or None where plain causal attention does."""
    if attention_mask is None and (past == 0 or length == 1):
        return None  # is_causal, or one new token that sees everything before it
    total = past + length
    causal = torch.ones(length, total, dtype=torch.bool, device=device).tril(diagonal=past)
    if attention_mask is None:
        return causal[None, None]
    keys = attention_mask[:, None, None, -total:].to(torch.bool)
    return causal[None, None] & keys


def load(folder: str | Path, device: str = "cpu") -> GPT2LMHeadModel:
    """GPT-2 weights saved by transformers (config.json + model.safetensors), as float32."""
    from safetensors.torch import load_file

    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text())
    if not supports(raw):
        raise ValueError(f"{folder} is not a GPT-2 configuration the native runner reproduces")
    config = GPT2Config(**{k: raw[k] for k in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")},
                        layer_norm_epsilon=raw.get("layer_norm_epsilon", 1e-5),
                        bos_token_id=raw.get("bos_token_id"), eos_token_id=raw.get("eos_token_id"))
    model = GPT2LMHeadModel(config)  # (not on the meta device: its initialisers import torch._refs, 1.5 s)
    state = {k: v.float() for k, v in load_file(str(folder / WEIGHTS)).items() if not k.endswith(".attn.bias")}
    state.setdefault("lm_head.weight", state["transformer.wte.weight"])
    model.load_state_dict(state, strict=True, assign=True)
    model.lm_head.weight = model.transformer.wte.weight
    return model.to(device).eval()
