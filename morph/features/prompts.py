"""A prompt run as interpretability servers run it (Neuronpedia's inference server, TransformerLens's
`run_with_cache` + SAE-Lens `encode`): BOS (where the model uses one) + the prompt's tokens, one forward pass to
the hook, the SAE's activations at every position (several prompts may share one padded pass); and a plain
sampled completion, token by token, with directions edited in at the hook (Neuronpedia's SIMPLE_ADDITIVE and
ORTHOGONAL_DECOMP steering).

Activations may be *folded* as Neuronpedia folds them on load (SAE-Lens `fold_W_dec_norm`): each feature's
activation times the norm of its decoder row. For an SAE whose decoder rows have norm 1 these are its own
numbers; for a TopK SAE with other norms, the set of active features is the unfolded SAE's.

This is the engine's raw side, for the server's Neuronpedia-compatible routes; the editor uses the analyzer.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from morph.errors import InputError
from morph.features.checks import check_feature

if TYPE_CHECKING:
    import torch

    from morph.models.lens import Lens


@dataclass(frozen=True)
class PromptActivations:
    ids: list[int]
    """Token ids, BOS first where the model uses one."""
    tokens: list[str]
    """Each token decoded on its own."""
    special: list[bool]
    """Which tokens are special (BOS...)."""
    features: "torch.Tensor"
    """SAE activations [n, d_sae] (float32, on the model's device), folded when asked."""


def prompt_ids(lens: Lens, prompt: str) -> list[int]:
    """The prompt's token ids, BOS first where the model uses one."""
    return lens.bos_prefix + list(lens.tokenizer(prompt, add_special_tokens=False)["input_ids"])


def checked_prompt_ids(lens: Lens, prompt: str, max_tokens: int) -> list[int]:
    """prompt_ids, refused in one line when empty or longer than `max_tokens` (or the model's context)."""
    ids = prompt_ids(lens, prompt)
    if not ids:
        raise InputError("the prompt has no tokens")
    limit = min(max_tokens, lens.context_size)
    if len(ids) > limit:
        raise InputError(f"the prompt has {len(ids)} tokens; at most {limit}")
    return ids


def prompt_features(lens: Lens, rows: list[list[int]]) -> list[torch.Tensor]:
    """The SAE's activations ([len(row), d_sae], float32, unfolded) at every position of each row of token ids,
    all rows in one forward pass to the hook (`hooks.capture_rows`: equal to one pass per row up to float
    rounding, as the analyzer's batches)."""
    import torch

    from morph.models.hooks import capture_rows

    with lens.lock, torch.inference_mode():
        acts = capture_rows(lens.model, lens.hook, rows, lens.device)
        return [lens.sae.encode(row.to(lens.sae.dtype)).float() for row in acts]


def prompt_activations(lens: Lens, prompt: str, max_tokens: int, fold: bool = True,
                       features: Callable[[list[int]], torch.Tensor] | None = None) -> PromptActivations:
    """One forward pass over the prompt (at most `max_tokens` tokens, and the model's context) to the hook, and
    the SAE's activations there. `features(ids)`, when given, runs the pass (the engine's batcher, which may
    run it together with other callers' prompts)."""
    ids = checked_prompt_ids(lens, prompt, max_tokens)
    feats = features(ids) if features is not None else prompt_features(lens, [ids])[0]
    if fold:
        feats = feats * decoder_norms(lens)
    special = set(getattr(lens.tokenizer, "all_special_ids", []) or [])
    return PromptActivations(ids, [lens.tokenizer.decode([i]) for i in ids], [i in special for i in ids], feats)


_DECODER_NORMS: "weakref.WeakKeyDictionary[Lens, torch.Tensor]" = weakref.WeakKeyDictionary()


def decoder_norms(lens: Lens) -> torch.Tensor:
    """||W_dec[f]|| per feature (what SAE-Lens's fold_W_dec_norm moves into the encoder), once per lens."""
    norms = _DECODER_NORMS.get(lens)
    if norms is None:
        norms = _DECODER_NORMS[lens] = lens.sae.W_dec.detach().float().norm(dim=-1)
    return norms


STEER_METHODS = ("additive", "orthogonal")


@dataclass(frozen=True)
class Steering:
    """Directions edited into the activations at the hook, at every position, in order, each with its
    coefficient c. `additive`: h + c * v (Neuronpedia's SIMPLE_ADDITIVE). `orthogonal`: the component of h
    along v scaled by c, the rest kept: (I - P) h + c * P h with P = v v^T / |v|^2 (its ORTHOGONAL_DECOMP)."""

    directions: list[tuple["torch.Tensor", float]]
    """(direction [d_model], coefficient) pairs."""
    method: str = "additive"

    def apply(self, acts: torch.Tensor) -> torch.Tensor:
        for direction, coefficient in self.directions:
            v = direction.to(acts.dtype)
            if self.method == "orthogonal":
                unit = v / v.norm()
                along = (acts @ unit).unsqueeze(-1) * unit
                acts = acts + (coefficient - 1.0) * along
            else:
                acts = acts + coefficient * v
        return acts


def steering(lens: Lens, features: list[tuple[int, float]], vectors: list[tuple[list[float], float]],
             normalize: bool, method: str = "additive") -> Steering:
    """A Steering from SAE features ((index, coefficient): the feature's decoder row) and raw vectors
    ((values, coefficient), d_model values each); each direction scaled to norm 1 first when `normalize`."""
    import torch

    if method not in STEER_METHODS:
        raise InputError(f"steering method {method!r} is not one of {', '.join(STEER_METHODS)}")
    directions: list[tuple[torch.Tensor, float]] = []
    for index, coefficient in features:
        directions.append((lens.sae.W_dec[check_feature(index, lens.d_sae)].detach().float(), coefficient))
    for values, coefficient in vectors:
        if len(values) != lens.d_model:
            raise InputError(f"a steering vector has {len(values)} values; the hook has {lens.d_model}")
        directions.append((torch.tensor(values, dtype=torch.float32), coefficient))
    out = []
    for direction, coefficient in directions:
        norm = float(direction.norm())
        if not torch.isfinite(direction).all() or (norm == 0 and (normalize or method == "orthogonal")):
            raise InputError("a steering direction is zero or not finite")
        out.append(((direction / norm if normalize else direction).to(lens.device), coefficient))
    return Steering(out, method)


def sample_completion(lens: Lens, ids: list[int], n_tokens: int, temperature: float, freq_penalty: float,
                      seed: int, edit: Steering | None, should_stop: Callable[[], bool] = lambda: False
                      ) -> Iterator[str]:
    """Sample up to `n_tokens` tokens after `ids` (greedy at temperature 0, stopping at EOS), a frequency
    penalty on the logits, seeded, with `edit` (or nothing) applied at the hook on every position; yields the
    completion so far after each token. Holds the model (Lens.lock) until it ends: consume it in one thread."""
    import torch

    from morph.models.hooks import _cache_argument, edit_activations

    if not ids or len(ids) + n_tokens > lens.context_size:
        raise InputError(f"the prompt and completion must fit in {lens.context_size} tokens")
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    counts: dict[int, int] = {}
    out: list[int] = []
    cache = None
    step = torch.tensor([ids], device=lens.device)
    eos = lens.tokenizer.eos_token_id
    cache_name = _cache_argument(lens.model)
    with lens.lock, torch.inference_mode():
        with edit_activations(lens.model, lens.hook, edit.apply if edit is not None else (lambda acts: acts)):
            for _ in range(n_tokens):
                if should_stop():
                    return
                result = lens.model(input_ids=step, use_cache=True, **{cache_name: cache})
                cache = result.past_key_values
                logits = result.logits[0, -1].float().cpu()
                for token, n in counts.items():
                    logits[token] -= freq_penalty * n
                if temperature <= 0:
                    token = int(logits.argmax())
                else:
                    probs = torch.softmax(logits / temperature, dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                if eos is not None and token == eos:
                    return
                out.append(token)
                counts[token] = counts.get(token, 0) + 1
                step = torch.tensor([[token]], device=lens.device)
                yield str(lens.tokenizer.decode(out))
