"""`morph train`: tokenizer, language model, SAE, feature labels, evaluation and model card from a folder of text.

    morph train all --corpus ../shared/corpus --out /work/runs/default --max-minutes 60 --sae-minutes 15
    morph train export --out /work/runs/default        # copy the final artifacts into morph/default

The run's options are saved in OUT/config.json; later commands on the same --out reuse them, and any option
given again overrides the saved value.
"""

from __future__ import annotations

import argparse

STAGE_HELP = ("tokenizer, data, lm, sae, stats, eval, card, all (those not yet done, in order), export, or starts "
              "(only the features' means at a text's first tokens, added to the labels file)")

# option -> (TrainConfig field, type, help)
OPTIONS: dict[str, tuple[str, type, str]] = {
    "--corpus": ("corpus", str, "folder of UTF-8 .txt files (one paragraph per line, <|endoftext|> ends a document)"),
    "--name": ("name", str, "model name written into the SAE metadata and the card"),
    "--model": ("model", str, "train the SAE on this model (preset, hub id or folder) instead of training an LM"),
    "--hook": ("hook", str, "hook point the SAE reads, e.g. blocks.10.hook_resid_pre (default: --sae-layer's resid_pre)"),
    "--seed": ("seed", int, "random seed (default 1337)"),
    "--device": ("device", str, "auto (cuda, mps, cpu), cpu, cuda or mps"),
    "--threads": ("threads", int, "CPU threads (default: all cores)"),
    "--max-corpus-mb": ("max_corpus_mb", float, "use a seeded random slice of this many MB of text (default all)"),
    "--max-file-mb": ("max_file_mb", float, "take at most this many MB from each corpus file, so that a large file "
                      "does not drown the small ones (default 0: no cap)"),
    "--val-fraction": ("val_fraction", float, "share of the text held out, by whole documents (default 0.05)"),
    "--vocab": ("vocab_size", int, "BPE vocabulary size (default 8192)"),
    "--tokenizer-mb": ("tokenizer_mb", float, "train the tokenizer on at most this much text (default 40)"),
    "--layers": ("n_layer", int, "LM layers (default 4)"),
    "--width": ("n_embd", int, "LM width (default 256)"),
    "--heads": ("n_head", int, "attention heads (default 4)"),
    "--context": ("context", int, "context length (default 512)"),
    "--batch-size": ("batch_size", int, "sequences per micro-batch (default 8)"),
    "--grad-accum": ("grad_accum", int, "micro-batches per step (default 2)"),
    "--lr": ("lr", float, "peak LM learning rate (default 1e-3)"),
    "--warmup-iters": ("warmup_iters", int, "LM warm-up iterations (default 100)"),
    "--max-iters": ("max_iters", int, "LM iterations (default 0: until --max-minutes)"),
    "--max-minutes": ("max_minutes", float, "LM training time budget in minutes (default 60)"),
    "--eval-interval": ("eval_interval", int, "LM iterations between validation losses (default 100)"),
    "--eval-batches": ("eval_batches", int, "validation batches per evaluation (default 20)"),
    "--checkpoint-minutes": ("checkpoint_minutes", float, "minutes between checkpoints (default 5)"),
    "--sae-layer": ("sae_layer", int, "layer whose residual (resid_pre) the SAE reads (default: the middle)"),
    "--sae-expansion": ("sae_expansion", int, "SAE features per model dimension (default 16)"),
    "--sae-k": ("sae_k", int, "active features per token, TopK (default 32)"),
    "--sae-lr": ("sae_lr", float, "SAE learning rate (default 4e-4)"),
    "--sae-batch": ("sae_batch", int, "activations per SAE step (default 4096)"),
    "--sae-tokens": ("sae_tokens", int, "most activations to train the SAE on (default 50M)"),
    "--sae-reuse": ("sae_reuse", int, "times each captured activation is trained on (default 1)"),
    "--sae-minutes": ("sae_minutes", float, "SAE training time budget in minutes (default 15)"),
    "--stats-tokens": ("stats_tokens", int, "held-out tokens for feature statistics and labels (default 1M)"),
    "--eval-tokens": ("eval_tokens", int, "held-out tokens for the SAE metrics (default 1M)"),
    "--ce-tokens": ("ce_tokens", int, "held-out tokens for LM loss and CE loss recovered (default 262144)"),
    "--eval-batch": ("eval_batch", int, "sequences per forward pass in stats and eval (default 8)"),
    "--autocast": ("autocast", str, "bf16 autocast: auto (where supported), on, off"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", nargs="?", default="all", help=STAGE_HELP)
    parser.add_argument("--out", required=True, help="work dir for checkpoints, logs and results (outside the repo)")
    for option, (_field, kind, help_text) in OPTIONS.items():
        parser.add_argument(option, type=kind, default=None, help=help_text)
    parser.add_argument("--fresh", action="store_true", help="start over: ignore checkpoints and finished stages")
    parser.add_argument("--dest", default=None, help="export: where to copy the artifacts (default: morph/default)")


def config_from_args(args: argparse.Namespace):
    from pathlib import Path

    from morph.errors import InputError
    from morph.models.training.config import TrainConfig

    out = Path(args.out).expanduser().resolve()
    saved = out / "config.json"
    try:
        cfg = TrainConfig.load(saved) if saved.is_file() else TrainConfig()
    except (ValueError, TypeError) as err:
        raise InputError(f"cannot read {saved}: {err}") from None
    cfg.out = str(out)
    for option, (field, _kind, _help) in OPTIONS.items():
        value = getattr(args, option.lstrip("-").replace("-", "_"))
        if value is not None:
            setattr(cfg, field, value)
    if cfg.corpus:
        cfg.corpus = str(Path(cfg.corpus).expanduser().resolve())
    if cfg.autocast not in ("auto", "on", "off"):
        raise InputError(f"--autocast must be auto, on or off, not {cfg.autocast!r}")
    for name in ("n_layer", "n_embd", "n_head", "context", "vocab_size", "batch_size", "grad_accum", "sae_k",
                 "sae_batch", "sae_expansion", "eval_batch"):
        if getattr(cfg, name) <= 0:
            raise InputError(f"{name.replace('_', '-')} must be positive")
    if cfg.own_lm and cfg.sae_layer >= cfg.n_layer:
        raise InputError(f"--sae-layer {cfg.sae_layer} is not below --layers {cfg.n_layer}")
    if cfg.sae_k > cfg.d_sae:
        raise InputError(f"--sae-k {cfg.sae_k} is more than the SAE's {cfg.d_sae} features")
    return cfg


def run(args: argparse.Namespace) -> int:
    from morph.errors import InputError
    from morph.models.training.pipeline import REDO_STAGES, STAGES, run as run_pipeline

    stage = args.stage
    if stage not in (*STAGES, *REDO_STAGES, "all", "export"):
        raise InputError(f"unknown stage {stage!r}: {STAGE_HELP}")
    out = args.out
    if out is None:
        raise InputError("give --out DIR, the work dir")
    cfg = config_from_args(args)
    if stage in ("lm", "tokenizer") and not cfg.own_lm:
        raise InputError(f"stage {stage!r} trains Morph's own LM; this run reads --model {cfg.model}")
    if stage in ("all", "tokenizer", "data"):
        from pathlib import Path

        if not cfg.corpus:
            raise InputError("give --corpus DIR, a folder of .txt files")
        if not Path(cfg.corpus).is_dir():
            raise InputError(f"corpus folder {cfg.corpus!r} does not exist")
    run_pipeline(stage, cfg, fresh=args.fresh, dest=args.dest)
    return 0
