"""The stages in order. `all` runs those not yet done; naming a stage runs it again (resuming where it can)."""

from __future__ import annotations

import time
from pathlib import Path

from morph.models.training.common import LOG, Paths, close_logging, read_json, setup_logging
from morph.models.training.config import TrainConfig

STAGES = ("tokenizer", "data", "lm", "sae", "stats", "eval", "card")
REDO_STAGES = ("starts",)  # parts of a stage that may be run again alone (stats writes the start means too)


def stages_of(cfg: TrainConfig) -> tuple[str, ...]:
    """The stages of a run: all of them for Morph's own LM; no tokenizer or LM for a model Morph loads."""
    return STAGES if cfg.own_lm else tuple(s for s in STAGES if s not in ("tokenizer", "lm"))


def run_stage(stage: str, cfg: TrainConfig, paths: Paths, fresh: bool = False) -> None:
    from morph.models.training import card, data, evaluate, lm, sae, stats

    if stage == "tokenizer":
        data.stage_tokenizer(cfg, paths)
    elif stage == "data":
        data.stage_data(cfg, paths)
    elif stage == "lm":
        lm.stage_lm(cfg, paths, fresh=fresh)
    elif stage == "sae":
        sae.stage_sae(cfg, paths, fresh=fresh)
    elif stage == "stats":
        stats.stage_stats(cfg, paths)
    elif stage == "starts":
        stats.stage_starts(cfg, paths)
    elif stage == "eval":
        evaluate.stage_eval(cfg, paths)
    elif stage == "card":
        card.stage_card(cfg, paths)
    else:
        raise ValueError(stage)


def run(stage: str, cfg: TrainConfig, fresh: bool = False, dest: Path | None = None) -> None:
    paths = Paths(cfg.out)
    setup_logging(paths)
    try:
        cfg.save(paths.config)
        if stage == "export":
            from morph.models.training.card import export
            from morph.models.presets import DEFAULT_DIR

            export(cfg, paths, Path(dest) if dest else DEFAULT_DIR)
            return
        todo = [stage] if stage != "all" else [s for s in stages_of(cfg) if fresh or s not in read_json(paths.state, {})]
        for name in todo:
            t0 = time.time()
            LOG.info("== %s ==", name)
            run_stage(name, cfg, paths, fresh=fresh)
            LOG.info("== %s done in %.1f min ==", name, (time.time() - t0) / 60)
    finally:
        close_logging()
