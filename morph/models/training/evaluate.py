"""Evaluation on held-out text: LM loss and perplexity, SAE L0, variance explained, dead features, CE recovered.

CE loss recovered splices the SAE's reconstruction into the forward pass at the hook (every position but BOS,
which is left as it is, as in training), and compares the loss with the clean loss and with zero-ablation:
(loss_zero - loss_spliced) / (loss_zero - loss_clean).
"""

from __future__ import annotations

import math

from morph.models.training.common import LOG, Paths, hardware, record, setup_torch, write_json
from morph.models.training.config import TrainConfig
from morph.models.training.data import load_tokens, sequential_batches
from morph.models.training.subject import load_work_lens


def sae_metrics(cfg: TrainConfig, lens, val, n_tokens: int) -> dict:
    import torch
    from tqdm.auto import tqdm

    from morph.models.hooks import capture

    d_sae = lens.d_sae
    fired = torch.zeros(d_sae, dtype=torch.bool)
    seen, l0_sum, err_sum = 0, 0.0, 0.0
    x_sum = torch.zeros(lens.d_model, dtype=torch.float64)
    x_sq = 0.0
    bar = tqdm(total=n_tokens, desc="eval sae", unit="tok", unit_scale=True)
    for x, _ in sequential_batches(val, n_tokens, cfg.eval_batch, cfg.context, lens.bos_token_id):
        with torch.no_grad():
            acts = capture(lens.model, lens.hook, x.to(lens.device))[:, 1:, :]
            acts = acts.reshape(-1, acts.shape[-1]).float()
            feats = lens.sae.encode(acts)
            recon = lens.sae.decode(feats).float()
        active = feats > 0
        fired |= active.any(0).cpu()
        l0_sum += active.sum().item()
        err_sum += (recon - acts).double().pow(2).sum().item()
        x_sum += acts.double().sum(0).cpu()
        x_sq += acts.double().pow(2).sum().item()
        seen += len(acts)
        bar.update(len(acts))
    bar.close()
    total_var = x_sq - (x_sum.pow(2).sum().item() / seen)  # sum over tokens of |x - mean|^2
    return {
        "tokens": seen,
        "l0": l0_sum / seen,
        "fraction_variance_explained": 1 - err_sum / total_var,
        "mse_per_token": err_sum / seen,
        "dead_features": int((~fired).sum().item()),
        "dead_fraction": float((~fired).float().mean().item()),
        "d_sae": d_sae,
    }


def ce_metrics(cfg: TrainConfig, lens, val, n_tokens: int) -> dict:
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from morph.models.hooks import edit_activations

    def keep_bos(new):
        def edit(acts):
            out = new(acts)
            out[:, 0, :] = acts[:, 0, :]
            return out
        return edit

    splice = keep_bos(lambda a: lens.sae.decode(lens.sae.encode(a.float())).to(a.dtype))
    zero = keep_bos(torch.zeros_like)
    sums = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    seen = 0
    bar = tqdm(total=n_tokens, desc="eval ce", unit="tok", unit_scale=True)
    for x, y in sequential_batches(val, n_tokens, cfg.eval_batch, cfg.context, lens.bos_token_id):
        x, y = x.to(lens.device), y.to(lens.device)

        def loss() -> float:
            with torch.no_grad():
                logits = lens.model(input_ids=x, use_cache=False).logits.float()
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()

        sums["clean"] += loss()
        with edit_activations(lens.model, lens.hook, splice):
            sums["spliced"] += loss()
        with edit_activations(lens.model, lens.hook, zero):
            sums["zero"] += loss()
        seen += y.numel()
        bar.update(y.numel())
    bar.close()
    clean, spliced, zeroed = (sums[k] / seen for k in ("clean", "spliced", "zero"))
    return {
        "tokens": seen,
        "loss_clean": clean,
        "perplexity": math.exp(clean),
        "loss_spliced": spliced,
        "loss_zero_ablation": zeroed,
        "ce_loss_recovered": (zeroed - spliced) / (zeroed - clean),
    }


def stage_eval(cfg: TrainConfig, paths: Paths) -> None:
    device = setup_torch(cfg)
    lens = load_work_lens(cfg, paths, device)
    val = load_tokens(paths.val_bin)
    sae = sae_metrics(cfg, lens, val, cfg.eval_tokens)
    LOG.info("eval: SAE over %d held-out tokens: L0 %.2f, variance explained %.4f, dead %d of %d (%.2f%%)",
             sae["tokens"], sae["l0"], sae["fraction_variance_explained"], sae["dead_features"], sae["d_sae"],
             100 * sae["dead_fraction"])
    ce = ce_metrics(cfg, lens, val, cfg.ce_tokens)
    LOG.info("eval: LM over %d held-out tokens: loss %.4f (perplexity %.2f); spliced %.4f, zero-ablated %.4f, "
             "CE loss recovered %.4f", ce["tokens"], ce["loss_clean"], ce["perplexity"], ce["loss_spliced"],
             ce["loss_zero_ablation"], ce["ce_loss_recovered"])
    metrics = {"lm": ce, "sae": sae, "hook_name": lens.hook.name, "device": device, "hardware": hardware(device)}
    write_json(paths.metrics, metrics)
    record(paths, "eval", **{k: v for k, v in metrics.items() if k not in ("lm", "sae")})
