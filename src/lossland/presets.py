"""Evaluators for the usual model families: ``lossland.surface(model, loader,
evaluator=lossland.presets.causal_lm())``. See :class:`lossland.Evaluator` to write your own."""

from lossland.engine import (
    PRESETS,
    causal_lm,
    image_classification,
    own_loss,
    regression,
    seq2seq_lm,
    sequence_classification,
    token_classification,
)

__all__ = [
    "PRESETS",
    "causal_lm",
    "image_classification",
    "own_loss",
    "regression",
    "seq2seq_lm",
    "sequence_classification",
    "token_classification",
]
