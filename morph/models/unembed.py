"""What a direction in the residual stream says about the next token: the one formula for "promoted tokens".

A direction d (an SAE feature's decoder row) is read the way the model reads its last residual: through the
final norm's gain (and, for LayerNorm, its centring; RMSNorm does not centre) and the unembedding. The norm's
division by the residual's scale is the same for every token, so it does not change which tokens rank first.
"""

from __future__ import annotations

import contextlib
from typing import Any

_FINAL_NORMS = ("model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm", "model.language_model.norm",
                "model.final_layernorm", "model.decoder.final_layer_norm")


def final_norm(model: Any) -> Any | None:
    """The norm applied to the last residual before the unembedding, or None if it cannot be found."""
    for path in _FINAL_NORMS:
        with contextlib.suppress(AttributeError):
            return model.get_submodule(path)
    return None


def promoted_token_ids(model: Any, directions: Any, k: int) -> Any:
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
