"""What every stage shares: the work-dir layout, the log, the run state, the device and threads."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from morph.models.training.config import TrainConfig

LOG = logging.getLogger("morph.train")


class Paths:
    """The layout of a work dir."""

    def __init__(self, out: str | Path):
        self.out = Path(out).expanduser().resolve()
        self.config = self.out / "config.json"
        self.log = self.out / "train.log"
        self.state = self.out / "state.json"
        self.tokenizer = self.out / "tokenizer"
        self.data = self.out / "data"
        self.train_bin = self.data / "train.bin"
        self.val_bin = self.data / "val.bin"
        self.data_meta = self.data / "meta.json"
        self.lm_ckpt = self.out / "lm" / "checkpoint.safetensors"
        self.lm_legacy_ckpt = self.out / "lm" / "ckpt.pt"  # the earlier format, still resumed from
        self.lm_final = self.out / "lm" / "final"
        self.sae_ckpt = self.out / "sae" / "checkpoint"
        self.sae_final = self.out / "sae" / "final"
        self.labels = self.sae_final / "labels.json"
        self.metrics = self.out / "metrics.json"
        self.card = self.out / "MODEL_CARD.md"


def setup_logging(paths: Paths) -> None:
    paths.out.mkdir(parents=True, exist_ok=True)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    for handler in list(LOG.handlers):
        LOG.removeHandler(handler)
        handler.close()
    file_handler = logging.FileHandler(paths.log)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter("[train] %(message)s"))
    LOG.addHandler(file_handler)
    LOG.addHandler(stream)


def close_logging() -> None:
    for handler in list(LOG.handlers):
        LOG.removeHandler(handler)
        handler.close()


def write_json(path: Path, data: Any) -> None:
    """Atomically: a temporary file beside `path`, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def record(paths: Paths, stage: str, **facts: Any) -> None:
    """Note in state.json what a stage did (the model card is written from it)."""
    state = read_json(paths.state, {})
    entry = state.get(stage, {})
    entry.update(facts)
    entry["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    state[stage] = entry
    write_json(paths.state, state)


def setup_torch(cfg: TrainConfig) -> str:
    """Threads and device; returns the device."""
    import torch

    from morph.models.device import resolve_device

    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    return resolve_device(cfg.device)


def bf16_supported(device: str) -> bool:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    if device == "cpu":
        with contextlib.suppress(Exception):
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def use_autocast(cfg: TrainConfig, device: str) -> bool:
    if cfg.autocast == "off":
        return False
    if cfg.autocast == "on":
        return True
    return bf16_supported(device)


def autocast(enabled: bool, device: str):
    import torch

    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)


def hardware(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"GPU {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"CPU {cpu}, {torch.get_num_threads()} threads"
