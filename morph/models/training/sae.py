"""The sparse autoencoder: SAE-Lens's TopK SAE trained with SAE-Lens's SAETrainer on residual activations.

Activations are captured with `morph.models.hooks.capture`, the code the editor runs, on windows that start
with BOS; the BOS position itself is left out (its residual is an outlier the editor never shows). They are
shuffled in a buffer before they reach the trainer. A short warm-up measures the throughput, so the number of
training samples (and the learning-rate schedule) fits --sae-minutes; a hard deadline stops it regardless.
"""

from __future__ import annotations

import math
import time
import numpy as np

from morph.errors import InputError
from morph.models.training.common import LOG, Paths, hardware, read_json, record, setup_torch, \
    use_autocast, write_json
from morph.models.training.config import TrainConfig
from morph.models.training.data import load_tokens, random_batch
from morph.models.training.subject import load_subject, model_label


class ActivationStream:
    """Batches of `cfg.sae_batch` residual activations from random training windows, shuffled in a buffer.

    Each captured activation enters the buffer `cfg.sae_reuse` times (1 = every activation is seen once).
    """

    def __init__(self, cfg: TrainConfig, model, hook, train: np.ndarray, bos: int, device: str,
                 rng: np.random.Generator):
        import torch

        self.cfg, self.model, self.hook, self.train, self.bos, self.device, self.rng = \
            cfg, model, hook, train, bos, device, rng
        self.seqs = max(1, cfg.sae_batch // (cfg.context - 1))
        self.depth = max(2, cfg.sae_buffer_batches) * cfg.sae_batch
        self.buffer = torch.empty(0, cfg.n_embd)
        self.gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
        self.ready: list = []

    def capture_chunk(self):
        from morph.models.hooks import capture

        x, _ = random_batch(self.train, self.seqs, self.cfg.context, self.bos, self.rng)
        acts = capture(self.model, self.hook, x.to(self.device))[:, 1:, :]  # drop the BOS position
        return acts.reshape(-1, acts.shape[-1]).float().cpu()

    def __iter__(self):
        return self

    def __next__(self):
        import torch

        if not self.ready:
            while len(self.buffer) < self.depth:
                chunk = self.capture_chunk()
                self.buffer = torch.cat([self.buffer, *([chunk] * max(1, self.cfg.sae_reuse))])
            self.buffer = self.buffer[torch.randperm(len(self.buffer), generator=self.gen)]
            # hand out half the buffer, keep the other half to mix with fresh activations
            half = (len(self.buffer) // 2 // self.cfg.sae_batch) * self.cfg.sae_batch
            self.ready = list(self.buffer[:half].split(self.cfg.sae_batch))
            self.buffer = self.buffer[half:]
        return self.ready.pop(0).to(self.device)


def sae_metadata(cfg: TrainConfig):
    from sae_lens.saes.sae import SAEMetadata

    return SAEMetadata(
        model_name=model_label(cfg), model_class_name="AutoModelForCausalLM", hook_name=cfg.hook_name,
        hook_head_index=None, prepend_bos=True, context_size=cfg.context, dataset_path=None,
        model_from_pretrained_kwargs={}, exclude_bos_in_training=True,
    )


def build_training_sae(cfg: TrainConfig, device: str):
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    sae_cfg = TopKTrainingSAEConfig(
        d_in=cfg.n_embd, d_sae=cfg.d_sae, k=cfg.sae_k, dtype="float32", device=device,
        apply_b_dec_to_input=True, normalize_activations="expected_average_only_in",
        rescale_acts_by_decoder_norm=True, aux_loss_coefficient=1.0, metadata=sae_metadata(cfg),
    )
    return TopKTrainingSAE(sae_cfg)


def trainer_config(cfg: TrainConfig, device: str, total_samples: int, amp: bool):
    from sae_lens.config import LoggingConfig, SAETrainerConfig

    steps = max(1, total_samples // cfg.sae_batch)
    window = int(min(1000, max(10, steps // 10)))
    return SAETrainerConfig(
        total_training_samples=steps * cfg.sae_batch, train_batch_size_samples=cfg.sae_batch, lr=cfg.sae_lr,
        lr_end=cfg.sae_lr / 10, lr_scheduler_name="constant", lr_warm_up_steps=min(50, steps // 10),
        lr_decay_steps=steps // 5, device=device, autocast=amp, dead_feature_window=window,
        feature_sampling_window=window, n_checkpoints=0, checkpoint_path=None, save_final_checkpoint=False,
        logger=LoggingConfig(log_to_wandb=False), n_batches_for_norm_estimate=min(50, max(5, steps // 10)),
    )


def stage_sae(cfg: TrainConfig, paths: Paths, fresh: bool = False) -> None:
    import torch
    from sae_lens import SAE, TopKTrainingSAE
    from sae_lens.training.sae_trainer import SAETrainer
    from tqdm.auto import tqdm

    from morph.models.hooks import resolve_hook

    device = setup_torch(cfg)
    amp = use_autocast(cfg, device) and not device.startswith("cpu")  # on CPU bf16 is slower here than fp32
    model, tokenizer = load_subject(cfg, paths, device)
    hook = resolve_hook(model, cfg.hook_name)
    train = load_tokens(paths.train_bin)
    rng = np.random.default_rng(cfg.seed + 2)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    stream = ActivationStream(cfg, model, hook, train, bos, device, rng)
    plan_path = paths.sae_ckpt / "plan.json"
    plan = None if fresh else read_json(plan_path)

    if plan is None:
        # warm-up: time a few steps of a throwaway SAE on real activations (not trained on)
        probe = build_training_sae(cfg, device)
        probe_trainer = SAETrainer(cfg=trainer_config(cfg, device, 100 * cfg.sae_batch, amp), sae=probe,
                                   data_provider=stream)
        probe_trainer.activation_scaler.estimate_scaling_factor(cfg.n_embd, stream, 2)
        batches = [next(stream) for _ in range(4)]
        t0 = time.time()
        for batch in batches:
            probe_trainer.step(batch)
        per_step = (time.time() - t0) / len(batches)
        t0 = time.time()
        chunk = len(stream.capture_chunk())
        per_step += (time.time() - t0) * cfg.sae_batch / chunk / max(1, cfg.sae_reuse)  # capture, amortised
        budget = cfg.sae_minutes * 60 if cfg.sae_minutes > 0 else math.inf
        fit = int(0.9 * budget / per_step) * cfg.sae_batch if math.isfinite(budget) else cfg.sae_tokens
        total = max(cfg.sae_batch * 10, min(cfg.sae_tokens, fit))
        plan = {"total_samples": total, "seconds_per_step": per_step, "elapsed": 0.0}
        LOG.info("sae: %.2f s per step of %d activations; planning %d samples (%d steps) for %.1f min", per_step,
                 cfg.sae_batch, total, total // cfg.sae_batch, cfg.sae_minutes)
        del probe, probe_trainer

    tcfg = trainer_config(cfg, device, plan["total_samples"], amp)
    sae = build_training_sae(cfg, device)
    trainer = SAETrainer(cfg=tcfg, sae=sae, data_provider=stream)
    if (paths.sae_ckpt / "cfg.json").is_file() and not fresh:
        sae = TopKTrainingSAE.load_from_disk(paths.sae_ckpt, device=device)
        trainer = SAETrainer(cfg=tcfg, sae=sae, data_provider=stream)
        trainer.load_trainer_state(paths.sae_ckpt)
        LOG.info("sae: resumed from %s at %d samples", paths.sae_ckpt, trainer.n_training_samples)
    else:
        trainer.activation_scaler.estimate_scaling_factor(cfg.n_embd, stream, tcfg.n_batches_for_norm_estimate)
    LOG.info("sae: TopK k=%d, %d features (%dx width %d) at %s, lr %.1e, batch %d, bf16 autocast %s",
             cfg.sae_k, cfg.d_sae, cfg.sae_expansion, cfg.n_embd, cfg.hook_name, cfg.sae_lr, cfg.sae_batch, amp)

    def checkpoint() -> None:
        trainer.save_checkpoint("checkpoint", base_path=paths.sae_ckpt.parent)
        write_json(plan_path, plan)

    deadline = time.time() + (cfg.sae_minutes * 60 - plan["elapsed"] if cfg.sae_minutes > 0 else math.inf)
    bar = tqdm(total=tcfg.total_training_samples, initial=trainer.n_training_samples, desc="sae", unit="act",
               unit_scale=True)
    last_ckpt, mse, l0 = time.time(), float("nan"), float("nan")
    stopped_early = False
    while trainer.n_training_samples < tcfg.total_training_samples:
        if time.time() > deadline:
            stopped_early = True
            LOG.info("sae: time budget spent at %d samples", trainer.n_training_samples)
            break
        t0 = time.time()
        trainer.maybe_reset_sparsity()
        out = trainer.step(next(stream))
        trainer.n_training_steps += 1
        plan["elapsed"] += time.time() - t0
        bar.update(tcfg.train_batch_size_samples)
        if trainer.n_training_steps % 20 == 0 or trainer.n_training_samples >= tcfg.total_training_samples:
            with torch.no_grad():
                x = out.sae_in.float()
                mse = (out.sae_out.float() - x).pow(2).sum(-1).mean().item()
                var = (x - x.mean(0)).pow(2).sum(-1).mean().item()
                l0 = (out.feature_acts != 0).float().sum(-1).mean().item()
                dead = int(trainer.dead_neurons.sum().item())
            bar.set_postfix(fve=f"{1 - mse / var:.3f}", l0=f"{l0:.1f}", dead=dead)
            if trainer.n_training_steps % 200 == 0:
                LOG.info("sae: step %d, %d samples, variance explained %.3f, L0 %.1f, dead %d",
                         trainer.n_training_steps, trainer.n_training_samples, 1 - mse / var, l0, dead)
        if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
            checkpoint()
            last_ckpt = time.time()
    bar.close()
    checkpoint()

    # what fit() does at its end: fold the normalisation into the weights, note L0 and dead features
    if trainer.activation_scaler.scaling_factor is not None:
        trainer.sae.fold_activation_norm_scaling_factor(trainer.activation_scaler.scaling_factor)
        trainer.activation_scaler.scaling_factor = None
    trainer.set_final_sae_metadata()
    paths.sae_final.mkdir(parents=True, exist_ok=True)
    trainer.sae.save_inference_model(paths.sae_final)  # TopK inference SAE, decoder norms folded
    loaded = SAE.load_from_disk(str(paths.sae_final), device="cpu")
    if loaded.cfg.d_sae != cfg.d_sae:
        raise InputError("the saved SAE does not load back with its width")
    LOG.info("sae: done, %d samples in %.1f min; saved to %s", trainer.n_training_samples, plan["elapsed"] / 60,
             paths.sae_final)
    record(paths, "sae", samples=trainer.n_training_samples, steps=trainer.n_training_steps,
           minutes=round(plan["elapsed"] / 60, 2), stopped_by_time=stopped_early, hook_name=cfg.hook_name,
           d_sae=cfg.d_sae, k=cfg.sae_k, lr=cfg.sae_lr, batch=cfg.sae_batch, hardware=hardware(device),
           bf16_autocast=amp, architecture="topk", reuse=cfg.sae_reuse)
