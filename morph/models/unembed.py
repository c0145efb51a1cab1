"""What a direction in the residual stream says about the next token: the one formula for "promoted tokens".

A direction d (an SAE feature's decoder row) is read the way the model reads its last residual: through the
final norm's gain (and, for LayerNorm, its centring; RMSNorm does not centre) and the unembedding. The norm's
division by the residual's scale is the same for every token, so it does not change which tokens rank first.

Why the norm is applied: the model never reads its residual raw. Its logits are unembed(norm(residual)), and
the norm's per-dimension gain reweights the directions, so d @ unembed.T alone can rank first tokens the
model would not push up. Labels (morph.features.labels) and the statistics stage of training
(morph.models.training.stats) both call `promoted_token_ids`; they differ only in how they print and filter
the tokens it returns.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

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
