"""Morph's training pipeline: tokenizer, GPT-2 LM, SAE-Lens TopK SAE, feature labels, evaluation, model card.

`morph train STAGE --corpus DIR --out DIR`; see `morph.models.training.pipeline` for the order of the stages
and `morph.models.training.config.TrainConfig` for every option.
"""

from morph.models.training.config import TrainConfig
from morph.models.training.pipeline import STAGES, run

__all__ = ["STAGES", "TrainConfig", "run"]
