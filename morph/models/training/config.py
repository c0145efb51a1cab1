"""One dataclass holds every knob of a training run; it is saved as `OUT/config.json` and reloaded on re-runs."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    # where
    corpus: str = ""  # a folder of UTF-8 .txt files: one paragraph per line, `<|endoftext|>` ends a document
    out: str = ""  # the work dir: checkpoints, logs, final artifacts (keep it outside the repository)
    name: str = "morph-default"
    # the model the SAE reads: a preset, hub id or folder that Morph loads; empty = the LM trained by this run
    model: str = ""
    seed: int = 1337
    device: str = "auto"
    threads: int = 0  # 0 = all CPU cores
    # data
    max_corpus_mb: float = 0.0  # 0 = the whole corpus; otherwise a seeded random slice of documents
    max_file_mb: float = 0.0  # 0 = no cap; otherwise each corpus file gives at most this many MB (before the cut)
    val_fraction: float = 0.05  # held-out documents (by characters)
    paragraph_sep: str = "\n\n"  # how the paragraphs of a document are joined
    # tokenizer
    vocab_size: int = 8192
    tokenizer_mb: float = 40.0  # train the BPE on at most this much text (0 = all)
    # language model (GPT-2 architecture)
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    context: int = 512
    dropout: float = 0.0
    batch_size: int = 8  # sequences per micro-batch
    grad_accum: int = 2
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    max_iters: int = 0  # 0 = until the time budget is spent
    max_minutes: float = 60.0  # time budget of the LM stage (training time, summed over resumes)
    eval_interval: int = 100
    eval_batches: int = 20
    checkpoint_minutes: float = 5.0
    # sparse autoencoder (SAE-Lens TopK)
    sae_layer: int = -1  # -1 = the middle layer (n_layer // 2)
    sae_hook: str = "resid_pre"
    hook: str = ""  # a full hook name (blocks.L.hook_...); wins over sae_layer/sae_hook
    sae_expansion: int = 16
    sae_k: int = 32
    sae_lr: float = 4e-4
    sae_batch: int = 4096  # activations per SAE step
    sae_tokens: int = 50_000_000  # upper bound; the time budget usually ends the run first
    sae_minutes: float = 15.0
    sae_reuse: int = 1  # how many times each captured activation is trained on
    sae_buffer_batches: int = 16  # activations are shuffled in a buffer this many SAE batches deep
    # statistics and evaluation, on held-out text
    stats_tokens: int = 1_000_000
    eval_tokens: int = 1_000_000  # SAE metrics (L0, variance explained, dead features)
    ce_tokens: int = 262_144  # LM loss and CE loss recovered (three forward passes each)
    eval_batch: int = 8  # sequences per forward in stats/eval
    autocast: str = "auto"  # bf16 autocast for LM training: auto (where supported), on, off
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def layer(self) -> int:
        return self.n_layer // 2 if self.sae_layer < 0 else self.sae_layer

    @property
    def hook_name(self) -> str:
        return self.hook or f"blocks.{self.layer}.hook_{self.sae_hook}"

    @property
    def own_lm(self) -> bool:
        """Whether the SAE reads the LM this run trains (else a model Morph loads: `model`)."""
        return not self.model

    @property
    def d_sae(self) -> int:
        return self.sae_expansion * self.n_embd

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        data = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

