"""Evaluators for the usual model families: ``lossland.surface(model, loader,
evaluator=lossland.presets.causal_lm())``. See :class:`lossland.Evaluator` to write your own."""

from lossland.engine import PRESETS, causal_lm, image_classification, sequence_classification

__all__ = ["PRESETS", "causal_lm", "image_classification", "sequence_classification"]
