"""What a direction in the residual stream says about the next token, two ways: the logit lens
(`promoted_token_ids`, "promoted tokens") and the steered reading (`said_token_ids`, "steered, it says").

The logit lens: a direction d (an SAE feature's decoder row) is read the way the model reads its last
residual: through the final norm's gain (and, for LayerNorm, its centring; RMSNorm does not centre) and the
unembedding. The norm's division by the residual's scale is the same for every token, so it does not change
which tokens rank first. The model never reads its residual raw: its logits are unembed(norm(residual)), and
the norm's per-dimension gain reweights the directions, so d @ unembed.T alone can rank first tokens the
model would not push up. One matrix product for every feature: labels of an SAE without a statistics file
(morph.features.labels) are built from it.

The steered reading: d, scaled to the residual's own norm at each position, is added at the SAE's hook
while the whole model reads a short neutral text (SAID_PROMPT); the tokens said are the whole words (a space
and three or more letters) whose log-probability as the next token rises most, averaged over the text's
positions after BOS. At a middle layer the layers above the hook transform the direction before the
unembedding, and the logit lens can name junk: on the default (SAE at layer 10 of 30) the feature that fires
on "water · sea · ocean" promotes "igen ringe ensus rund" by the logit lens and says "trillions basins
extinction habitats species" steered; "rain · weather · wind" promotes ")." and says "precipitation forecast
conditions winds moisture". Some features say noise too, and a whole-word token can be a word's piece
("refug"). One forward of the whole model per SAID_BATCH features
(the default's 4,608: about 3.5 minutes on 2 cores), so the statistics stage of training computes it once
and the labels file holds it (morph.models.training.stats).
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from morph.models.lens import Lens

_FINAL_NORMS = ("model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm", "model.language_model.norm",
                "model.final_layernorm", "model.decoder.final_layer_norm")


def final_norm(model: PreTrainedModel) -> torch.nn.Module | None:
    """The norm applied to the last residual before the unembedding, or None if it cannot be found."""
    for path in _FINAL_NORMS:
        with contextlib.suppress(AttributeError):
            return model.get_submodule(path)
    return None


def promoted_token_ids(model: PreTrainedModel, directions: torch.Tensor, k: int) -> torch.Tensor:
    """[n, k] ids of the tokens each of `directions` ([n, d_model]) pushes up most."""
    import torch

    with torch.inference_mode():
        unembed = model.get_output_embeddings().weight.detach()  # [vocab, d_model]
        d = directions.detach().to(device=unembed.device, dtype=torch.float32)
        norm = final_norm(model)
        if norm is not None and isinstance(norm, torch.nn.LayerNorm):
            d = d - d.mean(dim=-1, keepdim=True)
        gain = getattr(norm, "weight", None) if norm is not None else None
        if isinstance(gain, torch.Tensor) and gain.shape == d.shape[-1:]:
            d = d * gain.detach().float()
        logits = d @ unembed.float().T
        return logits.topk(min(k, logits.shape[-1]), dim=-1).indices


SAID_PROMPT = "We met on the corner after work and talked for a while about nothing much. Then she said"
SAID_BATCH = 32  # features per forward


def said_token_ids(lens: Lens, directions: torch.Tensor, k: int,
                   progress: Callable[[int], None] | None = None) -> list[list[int]]:
    """Per row of `directions` ([n, d_model], in the SAE's frame), the ids of the (up to) k whole-word tokens
    the model says more of when it is added at the lens's hook, the most first (module docstring: the steered
    reading). `progress(done)` after each batch."""
    import re

    import torch

    from morph.models.hooks import edit_activations

    vocab = lens.model.get_output_embeddings().weight.shape[0]
    texts = lens.tokenizer.batch_decode([[i] for i in range(vocab)])
    not_words = torch.tensor([re.fullmatch(r" [A-Za-z]{3,}", t) is None for t in texts], device=lens.device)
    bos = [lens.bos_token_id] if lens.bos_token_id is not None else []
    ids = (bos + list(lens.tokenizer(SAID_PROMPT, add_special_tokens=False)["input_ids"]))[:lens.context_size]
    out = []
    with lens.lock, torch.inference_mode():
        plain = torch.log_softmax(lens.model(input_ids=torch.tensor([ids], device=lens.device)).logits.float(), -1)
        for start in range(0, len(directions), SAID_BATCH):
            chunk = directions[start:start + SAID_BATCH].detach().float().to(lens.device)
            unit = chunk / chunk.norm(dim=-1, keepdim=True).clamp_min(1e-8)

            def add(acts: torch.Tensor) -> torch.Tensor:
                added = acts + acts.norm(dim=-1, keepdim=True) * unit[:, None, :].to(acts.dtype)
                added[:, :len(bos)] = acts[:, :len(bos)]  # BOS stays as it is
                return added

            with edit_activations(lens.model, lens.hook, add):
                logits = lens.model(input_ids=torch.tensor([ids] * len(unit), device=lens.device)).logits.float()
            gain = (torch.log_softmax(logits, -1) - plain)[:, len(bos):].mean(dim=1)
            gain[:, not_words] = -math.inf
            top = gain.topk(min(k, vocab), dim=-1)
            out += [[i for i, g in zip(row, gains) if g > -math.inf]
                    for row, gains in zip(top.indices.tolist(), top.values.tolist())]
            if progress is not None:
                progress(min(start + SAID_BATCH, len(directions)))
    return out
