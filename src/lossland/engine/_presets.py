"""Evaluators for the usual model families, so a Hugging Face user writes one line:
``lossland.surface(model, loader, evaluator=lossland.presets.causal_lm(), ...)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lossland.engine._contract import (
    IGNORE_INDEX,
    Evaluator,
    default_accuracy,
    default_forward,
    token_losses,
    unwrap,
)
from lossland.engine._data import Batch, targets_of
from lossland.errors import LosslandError

LABEL_KEYS = ("labels", "label")


def _inputs_only(model: nn.Module, batch: Batch) -> Any:
    """``model(**batch)`` without the labels (the model need not compute its own loss)."""
    if isinstance(batch, Mapping):
        return model(**{k: v for k, v in batch.items() if k not in LABEL_KEYS})
    return default_forward(model, batch)


def _shifted(batch: Batch) -> tuple[Tensor, Tensor | None]:
    """Next-token labels: the batch's ``labels`` (−100 = not counted), else its input ids
    with the attention mask."""
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        raise LosslandError(
            "causal_lm() needs dict batches with input_ids (and labels or an attention_mask), "
            "as a Hugging Face tokenizer and collator make them"
        )
    labels = batch.get("labels")
    mask = batch.get("attention_mask") if labels is None else None
    return (batch["input_ids"] if labels is None else labels), mask


def _next_token(output: Any, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
    """(logits (B, T−1, V), next tokens (B, T−1), counted (B, T−1)): position t predicts t+1."""
    logits = unwrap(output)
    labels, attention = _shifted(batch)
    logits, targets = logits[:, :-1], labels[:, 1:]
    mask = targets != IGNORE_INDEX
    if attention is not None:
        mask = mask & attention[:, 1:].bool()
    return logits.float(), targets, mask


def _causal_loss(output: Any, batch: Batch) -> tuple[Tensor, Tensor]:
    return token_losses(*_next_token(output, batch))


def _causal_accuracy(output: Any, batch: Batch) -> tuple[Tensor, Tensor]:
    logits, targets, mask = _next_token(output, batch)
    return ((logits.argmax(-1) == targets) & mask).sum(), mask.sum()


def causal_lm() -> Evaluator:
    """Next-token cross-entropy of a causal language model, token-weighted over the data set
    (the loss Hugging Face's ``*ForCausalLM`` computes, summed correctly across batches); the
    accuracy is next-token top-1 and the perplexity is exp(loss)."""
    return Evaluator(
        forward=_inputs_only, loss=_causal_loss, accuracy=_causal_accuracy, name="causal_lm"
    )


def _class_loss(output: Any, batch: Batch) -> Tensor:
    logits, labels = unwrap(output), targets_of(batch)
    if not isinstance(labels, Tensor) or logits.dim() != 2:
        raise LosslandError(
            "a classification preset needs (B, C) logits and (B,) labels in each batch"
        )
    return F.cross_entropy(logits.float(), labels, reduction="none")


def sequence_classification() -> Evaluator:
    """Cross-entropy and accuracy of a sequence classifier on dict batches with ``labels``
    (Hugging Face ``*ForSequenceClassification``)."""
    return Evaluator(
        forward=_inputs_only,
        loss=_class_loss,
        accuracy=default_accuracy,
        name="sequence_classification",
    )


def image_classification() -> Evaluator:
    """Cross-entropy and accuracy of an image classifier: ``(images, labels)`` batches, or dict
    batches with ``pixel_values`` and ``labels`` (Hugging Face, timm, torchvision models)."""
    return Evaluator(
        forward=_inputs_only,
        loss=_class_loss,
        accuracy=default_accuracy,
        name="image_classification",
    )


PRESETS = {
    "causal_lm": causal_lm,
    "sequence_classification": sequence_classification,
    "image_classification": image_classification,
}
