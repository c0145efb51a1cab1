"""The language model: GPT-2 architecture, trained nanoGPT-style under a time budget, checkpointed and resumable.

Every training sequence starts with <|endoftext|> as BOS, as the editor's analysis does. The learning rate
follows a cosine over the run's progress, which is the larger of iterations done / --max-iters and training
time / --max-minutes, so a run ends on time whatever the throughput.
"""

from __future__ import annotations

import math
import time

import numpy as np

from morph.errors import InputError
from morph.models.training import checkpoint
from morph.models.training.common import LOG, Paths, autocast, hardware, record, setup_torch, use_autocast
from morph.models.training.config import TrainConfig
from morph.models.training.data import load_tokenizer, load_tokens, random_batch


def build_model(cfg: TrainConfig, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    if cfg.n_embd % cfg.n_head:
        raise InputError(f"--width {cfg.n_embd} is not a multiple of --heads {cfg.n_head}")
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=cfg.context, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    return GPT2LMHeadModel(config)


def lm_loss(model, x, y):
    import torch.nn.functional as F

    logits = model(input_ids=x, use_cache=False).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


def lr_at(cfg: TrainConfig, it: int, progress: float) -> float:
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / cfg.warmup_iters
    progress = min(max(progress, 0.0), 1.0)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def stage_lm(cfg: TrainConfig, paths: Paths, fresh: bool = False) -> None:
    import torch
    from tqdm.auto import tqdm

    device = setup_torch(cfg)
    tokenizer = load_tokenizer(paths)
    bos = tokenizer.bos_token_id
    train, val = load_tokens(paths.train_bin), load_tokens(paths.val_bin)
    for name, tokens in (("train", train), ("val", val)):
        if len(tokens) <= cfg.context:
            raise InputError(f"the {name} split has {len(tokens)} tokens, fewer than --context {cfg.context}")
    amp = use_autocast(cfg, device)

    model = build_model(cfg, tokenizer).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    it, elapsed, tokens_seen, history = 0, 0.0, 0, []
    rng = np.random.default_rng(cfg.seed)
    resumed = None if fresh else _read_checkpoint(paths)
    if resumed is not None:
        try:
            model.load_state_dict(resumed.model)
            optimizer.load_state_dict(resumed.optimizer)
            state = resumed.state
            it, elapsed, tokens_seen, history = state["iter"], state["elapsed"], state["tokens_seen"], state["history"]
            rng.bit_generator.state = state["rng"]
        except (KeyError, TypeError, ValueError, RuntimeError) as err:  # another model's shapes, a missing value
            raise checkpoint.unreadable(paths.lm_ckpt.parent, err) from None
        LOG.info("lm: resumed from %s at iteration %d (%.1f min, %d tokens)", paths.lm_ckpt.parent, it,
                 elapsed / 60, tokens_seen)
    n_params = sum(p.numel() for p in model.parameters())
    LOG.info("lm: %d layers, width %d, %d heads, context %d, %.2fM parameters, device %s, bf16 autocast %s",
             cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.context, n_params / 1e6, device, amp)

    # fixed held-out batches, so every evaluation measures the same text
    val_rng = np.random.default_rng(cfg.seed + 1)
    val_batches = [random_batch(val, cfg.batch_size, cfg.context, bos, val_rng) for _ in range(cfg.eval_batches)]

    @torch.no_grad()
    def evaluate() -> float:
        model.eval()
        losses = []
        for x, y in val_batches:
            with autocast(amp, device):
                losses.append(lm_loss(model, x.to(device), y.to(device)).item())
        model.train()
        return float(np.mean(losses))

    def save_checkpoint() -> None:
        state = {"iter": it, "elapsed": elapsed, "tokens_seen": tokens_seen, "history": history,
                 "rng": rng.bit_generator.state, "config": cfg.__dict__}
        checkpoint.save(paths.lm_ckpt, checkpoint.Checkpoint(model.state_dict(), optimizer.state_dict(), state))

    budget = cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf

    def progress() -> float:
        by_iters = it / cfg.max_iters if cfg.max_iters > 0 else 0.0
        return max(by_iters, elapsed / budget)

    if cfg.max_iters <= 0 and not math.isfinite(budget):
        raise InputError("give --max-iters or --max-minutes: the LM stage needs an end")
    tokens_per_iter = cfg.batch_size * cfg.grad_accum * cfg.context
    model.train()
    bar = tqdm(total=1000, desc="lm", unit="‰", initial=int(progress() * 1000))
    last_ckpt = time.time()
    while progress() < 1.0:
        t0 = time.time()
        lr = lr_at(cfg, it, progress())
        for group in optimizer.param_groups:
            group["lr"] = lr
        total = 0.0
        for _ in range(cfg.grad_accum):
            x, y = random_batch(train, cfg.batch_size, cfg.context, bos, rng)
            with autocast(amp, device):
                loss = lm_loss(model, x.to(device), y.to(device)) / cfg.grad_accum
            loss.backward()
            total += loss.item()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        it += 1
        tokens_seen += tokens_per_iter
        elapsed += time.time() - t0
        bar.n = int(min(progress(), 1.0) * 1000)
        bar.set_postfix(iter=it, loss=f"{total:.3f}", lr=f"{lr:.1e}", tok=f"{tokens_seen / 1e6:.2f}M")
        if it % cfg.eval_interval == 0 or progress() >= 1.0:
            t_eval = time.time()
            val_loss = evaluate()
            history.append({"iter": it, "tokens": tokens_seen, "minutes": round(elapsed / 60, 2),
                            "train_loss": round(total, 4), "val_loss": round(val_loss, 4)})
            LOG.info("lm: iter %d, %.2fM tokens, %.1f min, train loss %.4f, val loss %.4f, %.0f tok/s", it,
                     tokens_seen / 1e6, elapsed / 60, total, val_loss, tokens_seen / max(elapsed, 1e-9))
            last_ckpt -= time.time() - t_eval  # evaluation time does not count toward the next checkpoint
        if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
            save_checkpoint()
            last_ckpt = time.time()
    bar.close()
    save_checkpoint()
    val_loss = history[-1]["val_loss"] if history else evaluate()

    # The final weights are rounded to fp16, as shipped; everything downstream reads these exact weights.
    model.eval()
    model.half()
    model.config.use_cache = True
    model.save_pretrained(paths.lm_final, safe_serialization=True)
    tokenizer.save_pretrained(paths.lm_final)
    LOG.info("lm: done, %d iterations, %d tokens, %.1f min, val loss %.4f (ppl %.1f); saved to %s", it,
             tokens_seen, elapsed / 60, val_loss, math.exp(val_loss), paths.lm_final)
    record(paths, "lm", iterations=it, tokens_seen=tokens_seen, minutes=round(elapsed / 60, 2),
           params=n_params, val_loss=val_loss, val_batches=cfg.eval_batches * cfg.batch_size,
           history=history, hardware=hardware(device), bf16_autocast=amp, device=device)


def _read_checkpoint(paths: Paths) -> checkpoint.Checkpoint | None:
    """The checkpoint to resume from, if any: the current format, else one of the earlier format."""
    if paths.lm_ckpt.is_file():
        return checkpoint.load(paths.lm_ckpt)
    if paths.lm_legacy_ckpt.is_file():
        return checkpoint.load_legacy(paths.lm_legacy_ckpt)
    return None


def load_final_lm(paths: Paths, device: str):
    """The trained LM in fp32 (its weights are fp16-exact), as the editor loads it."""
    from morph.models.lens import load_model_and_tokenizer

    if not (paths.lm_final / "config.json").is_file():
        raise InputError(f"no trained model in {paths.lm_final}: run `morph train lm` first")
    import torch

    model, tokenizer = load_model_and_tokenizer(str(paths.lm_final), device)
    return model.float() if device == "cpu" else model.to(torch.float32), tokenizer
