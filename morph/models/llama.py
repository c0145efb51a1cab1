"""Llama-family causal LMs in plain torch: the same modules, names, weights and numbers as transformers'
`LlamaForCausalLM`, without importing transformers' modelling code.

Why: on a laptop CPU, importing transformers' Llama modules (its model-loading, masking, kernel and loss
machinery pulls in torch.distributed, torch._dynamo and scipy) takes about 3 s, longer than loading the
weights and the tokenizer together. Morph loads a Llama checkpoint whose config is plain (`rope_type`
default, SiLU MLP, no biases; SmolLM2, the default, is one) with this module; anything else goes through
transformers (`morph.models.lens.load_model_and_tokenizer`).

The contract: same module tree and parameter names as transformers (`model.layers.N.self_attn.q_proj`,
`model.layers.N.post_attention_layernorm`, ...), so `morph.models.hooks` finds the same hook points; the
decoder layer takes the hidden states as its first positional argument and returns them; attention
reads a key/value cache (`KVCache`: `update`, `get_seq_length`, `crop`, `batch_repeat_interleave`, as
transformers' DynamicCache) passed as `cache`; the forward returns `CausalLMOutput(logits,
past_key_values)`. Its numbers equal transformers' within float rounding (tests/test_llama.py), and
`morph analyze` still equals transformers' hidden states through SAE-Lens (tests/test_analysis.py loads
transformers' model for that check).

The algorithm, per decoder layer (as `modeling_llama` in transformers 5): h += o_proj(attention(
rope(q_proj(rms(h))), rope(k_proj(rms(h))), v_proj(rms(h)))), then h += down_proj(silu(gate_proj(rms(h))) *
up_proj(rms(h))); RMSNorm in float32; rotary embeddings over the whole head (rotate_half); grouped-query
attention through `scaled_dot_product_attention` (its causal kernel without a cache or attention mask).

Several rows of unlike lengths run packed (`forward(..., row_lengths=...)`): laid end to end in one sequence
of batch 1, the linear layers run over their tokens only, and attention runs each row's slice through the
causal kernel alone, its positions counted from 0. Padding rows to the longest would run the padding
through every layer (~7% of the analysis's first pass on the benchmark's 8,000-token document).
`residual(input_ids, layer, row_lengths, keep_from)` runs packed rows to a layer's input and returns only
each row's positions from its `keep_from`: the positions before are context, whose keys and values every
layer reads but whose output the last layer run never computes (the analysis's left context).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from morph.models.remote_code import NATIVE_TYPES as SUPPORTED_TYPES


@dataclass
class LlamaConfig:
    """What the forward needs of a checkpoint's config.json (and what Morph reads of a model's config)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    dtype: str = "float32"
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    model_type: str = "llama"

    def get_text_config(self) -> "LlamaConfig":
        return self

    @classmethod
    def read(cls, folder: Path) -> "LlamaConfig | None":
        """The config of the checkpoint in `folder`, or None when this module cannot run it exactly (another
        architecture, scaled or partial rotary embeddings, biases, another activation): transformers then."""
        try:
            raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict) or raw.get("model_type") not in SUPPORTED_TYPES:
            return None
        rope = raw.get("rope_parameters") or {}
        theta = rope.get("rope_theta", raw.get("rope_theta")) or 10000.0
        plain = (
            rope.get("rope_type", "default") == "default" and not raw.get("rope_scaling")
            and raw.get("hidden_act", "silu") == "silu" and not raw.get("attention_bias") and not raw.get("mlp_bias")
            and int(raw.get("pretraining_tp", 1) or 1) == 1 and float(rope.get("partial_rotary_factor", 1.0)) == 1.0
            and not raw.get("quantization_config")
        )
        if not plain:
            return None
        try:
            heads = int(raw["num_attention_heads"])
            return cls(
                vocab_size=int(raw["vocab_size"]), hidden_size=int(raw["hidden_size"]),
                intermediate_size=int(raw["intermediate_size"]), num_hidden_layers=int(raw["num_hidden_layers"]),
                num_attention_heads=heads, num_key_value_heads=int(raw.get("num_key_value_heads") or heads),
                head_dim=int(raw.get("head_dim") or int(raw["hidden_size"]) // heads),
                rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)), rope_theta=float(theta),
                max_position_embeddings=int(raw.get("max_position_embeddings", 2048)),
                tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
                dtype=str(raw.get("dtype") or raw.get("torch_dtype") or "float32"),
                bos_token_id=raw.get("bos_token_id"), eos_token_id=raw.get("eos_token_id"),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class GenerationConfig:
    """The stop tokens of generation_config.json (what Morph's steering reads of it)."""

    eos_token_id: int | list[int] | None = None

    @classmethod
    def read(cls, folder: Path, config: LlamaConfig) -> "GenerationConfig":
        try:
            raw = json.loads((folder / "generation_config.json").read_text(encoding="utf-8"))
            return cls(raw.get("eos_token_id", config.eos_token_id))
        except (OSError, ValueError, AttributeError):
            return cls(config.eos_token_id)


class KVCache:
    """Keys and values per layer, [batch, kv heads, positions, head dim], grown by each forward."""

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def update(self, key: torch.Tensor, value: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this forward's keys and values for `layer`; return all of that layer's."""
        if layer == len(self.keys):
            self.keys.append(key)
            self.values.append(value)
        else:
            self.keys[layer] = torch.cat([self.keys[layer], key], dim=-2)
            self.values[layer] = torch.cat([self.values[layer], value], dim=-2)
        return self.keys[layer], self.values[layer]

    def get_seq_length(self, layer: int = 0) -> int:
        return int(self.keys[layer].shape[-2]) if layer < len(self.keys) else 0

    def crop(self, max_length: int) -> None:
        """Keep the first `max_length` positions; a negative count drops that many from the end (as
        transformers' DynamicCache.crop)."""
        if max_length < 0:
            max_length = self.get_seq_length() + max_length
        self.keys = [k[..., :max_length, :] for k in self.keys]
        self.values = [v[..., :max_length, :] for v in self.values]

    def to(self, dtype: torch.dtype) -> "KVCache":
        """This cache in another precision (a copy)."""
        out = KVCache()
        out.keys = [k.to(dtype) for k in self.keys]
        out.values = [v.to(dtype) for v in self.values]
        return out

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.keys = [k[indices] for k in self.keys]
        self.values = [v[indices] for v in self.values]

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.keys = [k.repeat_interleave(repeats, dim=0) for k in self.keys]
        self.values = [v.repeat_interleave(repeats, dim=0) for v in self.values]


@dataclass(frozen=True)
class Rows:
    """Rows laid end to end in one sequence (the module docstring's packing): each row's [start, end) in
    it. Each attends only to itself."""

    bounds: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, lengths: "list[int] | tuple[int, ...]") -> "Rows":
        ends = list(accumulate(int(n) for n in lengths))
        return cls(tuple(zip([0, *ends[:-1]], ends)))

    def positions(self, device: torch.device) -> torch.Tensor:
        """Each token's position within its own row."""
        return torch.cat([torch.arange(end - start, device=device) for start, end in self.bounds])

    def kept(self, keep_from: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """The indices, in the packed sequence, of each row's positions from its `keep_from` on."""
        return torch.cat([torch.arange(start + keep, end, device=device)
                          for (start, end), keep in zip(self.bounds, keep_from)])


@dataclass
class CausalLMOutput:
    logits: torch.Tensor
    past_key_values: KVCache | None = field(default=None)


class Linear(nn.Linear):
    """A linear layer left uninitialised: the checkpoint's weights replace it (initialising on the meta
    device instead would import torch._dynamo, ~2 s)."""

    def reset_parameters(self) -> None:
        pass


class Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        pass


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


class RotaryEmbedding(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        dim = config.head_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        self.inv_freq = nn.Buffer(inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions[:, None].float() * self.inv_freq.to(x.device)[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig, layer: int) -> None:
        super().__init__()
        self.layer_idx = layer
        self.head_dim = config.head_dim
        self.groups = config.num_attention_heads // config.num_key_value_heads
        self.q_proj = Linear(config.hidden_size, config.num_attention_heads * self.head_dim, bias=False)
        self.k_proj = Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=False)
        self.v_proj = Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=False)
        self.o_proj = Linear(config.num_attention_heads * self.head_dim, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | Rows | None,
                cache: KVCache | None, keep_from: tuple[int, ...] | None = None) -> tuple[torch.Tensor, None]:
        """`keep_from` (packed rows only): the output at each row's positions from that offset on (the
        others' keys and values are read; their output is never projected)."""
        batch, length, _ = x.shape
        shape = (batch, length, -1, self.head_dim)
        q = self.q_proj(x).view(shape).transpose(1, 2)
        k = self.k_proj(x).view(shape).transpose(1, 2)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        cos, sin = rope
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        if isinstance(mask, Rows):  # gathered as [batch, length, heads, head_dim]: one copy, not two
            starts = keep_from or (0,) * len(mask.bounds)
            out = torch.cat([F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=b - a > 1,
                                                            enable_gqa=self.groups > 1)[:, :, keep:].transpose(1, 2)
                             for (a, b), keep in zip(mask.bounds, starts)], dim=1)
        elif keep_from is not None:
            raise ValueError("keep_from takes packed rows")
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and length > 1,
                                                 enable_gqa=self.groups > 1).transpose(1, 2)
        return self.o_proj(out.reshape(batch, out.shape[1], -1)), None


class MLP(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig, layer: int) -> None:
        super().__init__()
        self.self_attn = Attention(config, layer)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, hidden_states: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                mask: torch.Tensor | Rows | None, cache: KVCache | None,
                keep_from: tuple[int, ...] | None = None) -> torch.Tensor:
        """`keep_from` (packed rows only): the output at each row's positions from that offset on."""
        attn, _ = self.self_attn(self.input_layernorm(hidden_states), rope, mask, cache, keep_from)
        if keep_from is not None and isinstance(mask, Rows):
            hidden_states = hidden_states[:, mask.kept(keep_from, hidden_states.device)]
        hidden_states = hidden_states + attn
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class LlamaModel(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)


class LlamaForCausalLM(nn.Module):
    """See the module's docstring. `forward(input_ids, attention_mask=None, use_cache=False, cache=None,
    logits_to_keep=0, row_lengths=None)`."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.generation_config = GenerationConfig(config.eos_token_id)
        self.name_or_path = ""  # the folder it was loaded from (as transformers' models say)
        self.model = LlamaModel(config)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def new_cache(self) -> KVCache:
        return KVCache()

    def residual(self, input_ids: torch.Tensor, layer: int, row_lengths: list[int],
                 keep_from: tuple[int, ...]) -> torch.Tensor:
        """The residual stream entering decoder layer `layer` (what a hook on its input reads; `layer` = the
        number of layers: the last one's output), for rows packed as `forward`'s `row_lengths`, at each row's
        positions from its `keep_from` on, in order: [sum of (length - keep), hidden]. The positions before
        are context: every layer run reads their keys and values, and the last one computes nothing else for
        them (no attention output, no MLP: 9% of a context token's cost on 10 layers)."""
        if input_ids.shape[0] != 1 or sum(row_lengths) != input_ids.shape[1]:
            raise ValueError("packed rows take one row of all their tokens")
        rows = Rows.of(row_lengths)
        x = self.model.embed_tokens(input_ids)
        if layer == 0:
            return x[0, rows.kept(keep_from, x.device)]
        rope = self.model.rotary_emb(x, rows.positions(x.device))
        for block in self.model.layers[:layer - 1]:
            x = block(x, rope, rows, None)
        return self.model.layers[layer - 1](x, rope, rows, None, keep_from)[0]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                use_cache: bool = False, cache: KVCache | None = None,
                output_hidden_states: bool = False, logits_to_keep: int = 0,
                row_lengths: list[int] | None = None) -> CausalLMOutput:
        """`row_lengths`: `input_ids` ([1, sum of them]) holds that many rows end to end (module docstring)."""
        if output_hidden_states:
            raise ValueError("Morph's Llama does not return hidden states: hook a layer (morph.models.hooks)")
        if row_lengths is not None:
            if cache is not None or use_cache or input_ids.shape[0] != 1 or sum(row_lengths) != input_ids.shape[1]:
                raise ValueError("packed rows take one row of all their tokens, and no cache")
        if cache is None and use_cache:
            cache = KVCache()
        past = cache.get_seq_length() if cache is not None else 0
        length = input_ids.shape[1]
        x = self.model.embed_tokens(input_ids)
        rows = Rows.of(row_lengths) if row_lengths is not None else None
        positions = rows.positions(x.device) if rows is not None else torch.arange(past, past + length, device=x.device)
        rope = self.model.rotary_emb(x, positions)
        mask: torch.Tensor | Rows | None = rows
        if past and length > 1:  # the causal kernel aligns to the top left; with a cache the diagonal moves
            mask = torch.ones(length, past + length, dtype=torch.bool, device=x.device).tril(past)
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("Morph's Llama takes no padding mask: pad rows on the right (hooks.capture_rows)")
        for layer in self.model.layers:
            x = layer(x, rope, mask, cache)
        if logits_to_keep:  # as transformers: the last `logits_to_keep` positions' logits (0: all)
            x = x[:, -logits_to_keep:]
        logits = self.lm_head(self.model.norm(x))
        return CausalLMOutput(logits, cache if use_cache else None)


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's safetensors files (one, or the shards its index lists); [] if there are none."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [folder / name for name in names]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else []


def _assemble(config: LlamaConfig, state: dict[str, torch.Tensor], dtype: torch.dtype) -> LlamaForCausalLM:
    """A model of `config` (eval mode) holding `state`'s tensors in `dtype`: each storage converted once (tied
    weights are one tensor, and no second full copy is made on the way), and the embeddings tied where the
    config ties them. Raises RuntimeError (torch's) when the tensors do not fit the config."""
    converted: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
    cast = {}
    for name, tensor in state.items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key not in converted:
            converted[key] = tensor.to(dtype)
        cast[name] = converted[key]
    model = LlamaForCausalLM(config)
    model.load_state_dict(cast, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.eval()


def load(folder: Path, config: LlamaConfig, device: str, dtype: torch.dtype) -> LlamaForCausalLM:
    """The model of `folder` (eval mode, on `device`). Raises RuntimeError (torch's) when the weights do not
    fit the config (a missing or unexpected tensor, a wrong shape), ValueError when there are none, and
    OSError when they cannot be read."""
    from safetensors.torch import load_file

    files = weight_files(folder)
    if not files:
        raise ValueError("no safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for path in files:
        state.update(load_file(str(path), device=device if device != "mps" else "cpu"))
    embeddings = state.get("model.embed_tokens.weight")
    if embeddings is not None and (config.tie_word_embeddings or "lm_head.weight" not in state):
        state["lm_head.weight"] = embeddings
    model = _assemble(config, state, dtype)
    model.generation_config = GenerationConfig.read(folder, config)
    model.name_or_path = str(folder)
    return model.to(device)


def in_dtype(model: LlamaForCausalLM, dtype: torch.dtype) -> LlamaForCausalLM:
    """A copy of `model` with its weights in `dtype`, on the same device."""
    copy = _assemble(model.config, model.state_dict(), dtype)
    copy.generation_config = model.generation_config
    copy.name_or_path = model.name_or_path
    return copy.to(model.lm_head.weight.device)
