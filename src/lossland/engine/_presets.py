"""Evaluators for the usual model families, so a Hugging Face user writes one line:
``lossland.surface(model, loader, evaluator=lossland.presets.causal_lm(), ...)``.

Every preset computes its loss in the run's dtype (half types widened to float32; a float64
run gets float64 losses) and, where the loss is a mean over samples or tokens, returns the
per-sample parts so that batches are weighted correctly and a standard error exists.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossland.engine._contract import (
    IGNORE_INDEX,
    Evaluator,
    default_accuracy,
    default_forward,
    encoder_decoder,
    label_mask,
    token_losses,
    unwrap,
    wide,
)
from lossland.engine._data import Batch, targets_of
from lossland.errors import LosslandError, LosslandWarning

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
    """(logits (B, T−1, V) in the model's dtype, next tokens (B, T−1), counted (B, T−1)):
    position t predicts t+1. The loss widens the logits a block at a time (token_losses);
    the top-1 class is the same in any float dtype."""
    logits = unwrap(output)
    labels, attention = _shifted(batch)
    logits, targets = logits[:, :-1], labels[:, 1:]
    mask = targets != IGNORE_INDEX
    if attention is not None:
        mask = mask & attention[:, 1:].bool()
    return logits, targets, mask


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
    if labels.is_floating_point():
        raise LosslandError(
            "a classification preset needs integer class labels, and these are "
            f"{str(labels.dtype).removeprefix('torch.')}: for a regression head (num_labels=1) "
            "pass lossland.presets.regression()"
        )
    return F.cross_entropy(wide(logits), labels, reduction="none")


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


# --- encoder–decoder, token classification, regression ---------------------------------------


def _labels(batch: Batch, preset: str) -> Tensor:
    labels = targets_of(batch)
    if not isinstance(labels, Tensor):
        raise LosslandError(
            f"{preset}() needs batches with labels (a mapping's 'labels' or a tuple's last element)"
        )
    return labels


def _tokens(output: Any, batch: Batch, preset: str) -> tuple[Tensor, Tensor, Tensor]:
    """(logits (B, T, V), labels (B, T), counted (B, T)) of a per-token head, no shift."""
    logits, labels = unwrap(output), _labels(batch, preset)
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise LosslandError(
            f"{preset}() needs (B, T, V) logits and (B, T) labels, got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    return wide(logits), labels, label_mask(output, batch, labels)


def _seq2seq(output: Any, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
    return _tokens(output, batch, "seq2seq_lm")


def _token_class(output: Any, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
    logits, labels, _ = _tokens(output, batch, "token_classification")
    return logits, labels, labels != IGNORE_INDEX  # as the model's own loss counts them


def _token_loss(
    tokens: Callable[[Any, Batch], tuple[Tensor, Tensor, Tensor]],
) -> Callable[[Any, Batch], tuple[Tensor, Tensor]]:
    def loss(output: Any, batch: Batch) -> tuple[Tensor, Tensor]:
        return token_losses(*tokens(output, batch))

    return loss


def _token_accuracy(
    tokens: Callable[[Any, Batch], tuple[Tensor, Tensor, Tensor]],
) -> Callable[[Any, Batch], tuple[Tensor, Tensor]]:
    def accuracy(output: Any, batch: Batch) -> tuple[Tensor, Tensor]:
        logits, labels, mask = tokens(output, batch)
        return ((logits.argmax(-1) == labels) & mask).sum(), mask.sum()

    return accuracy


def seq2seq_lm() -> Evaluator:
    """Cross-entropy of an encoder–decoder LM (T5, BART, Marian, …) on dict batches with
    ``labels``: token-weighted over the decoder's real tokens (−100 and, when given,
    ``decoder_attention_mask`` mark padding; never the encoder's ``attention_mask``). The
    labels stay in the batch: the model builds its decoder inputs from them. The accuracy is
    top-1 over the same tokens."""
    return Evaluator(
        forward=default_forward,
        loss=_token_loss(_seq2seq),
        accuracy=_token_accuracy(_seq2seq),
        name="seq2seq_lm",
    )


def token_classification() -> Evaluator:
    """Per-token cross-entropy of a token classifier (``*ForTokenClassification``: NER, POS) on
    dict batches with (B, T) ``labels``, −100 not counted, token-weighted over the data set;
    the accuracy is over the counted tokens."""
    return Evaluator(
        forward=_inputs_only,
        loss=_token_loss(_token_class),
        accuracy=_token_accuracy(_token_class),
        name="token_classification",
    )


def _squared_errors(output: Any, batch: Batch) -> Tensor:
    predictions, labels = unwrap(output), _labels(batch, "regression")
    if predictions.dim() == 2 and predictions.shape[1] == 1:
        predictions = predictions[:, 0]  # a num_labels=1 head: (B, 1)
    if predictions.shape != labels.shape or predictions.dim() < 1:
        raise LosslandError(
            f"regression() needs one prediction per label, got {tuple(predictions.shape)} "
            f"predictions for {tuple(labels.shape)} labels"
        )
    errors = (wide(predictions) - labels.to(wide(predictions).dtype)) ** 2
    return errors.flatten(1).mean(dim=1) if errors.dim() > 1 else errors


def _no_accuracy(output: Any, batch: Batch) -> tuple[Tensor, Tensor]:
    nan = torch.tensor(math.nan, dtype=torch.float64)
    return nan, nan


def regression() -> Evaluator:
    """Mean squared error of a regression head (``num_labels=1`` with float labels: the
    ``MSELoss`` Hugging Face computes; or (B, K) predictions for (B, K) targets), per sample;
    no accuracy."""
    return Evaluator(
        forward=_inputs_only, loss=_squared_errors, accuracy=_no_accuracy, name="regression"
    )


# --- the model's own loss -------------------------------------------------------------------

# The per-sample forms of what models usually compute as their own loss, tried in this order
# against the model's ``outputs.loss`` on each batch.
_RECOVERED: dict[str, Callable[[Any, Batch], Tensor | tuple[Tensor, Tensor]]] = {
    "per-sample cross-entropy": lambda o, b: _class_loss(o, b),
    "next-token cross-entropy": lambda o, b: _causal_loss(o, b),
    "per-token cross-entropy": lambda o, b: token_losses(*_tokens(o, b, "own_loss")),
    "mean squared error": lambda o, b: _squared_errors(o, b),
}


def _own(output: Any) -> Tensor:
    own = getattr(output, "loss", None)
    if own is None and isinstance(output, Mapping):
        own = output.get("loss")
    if not isinstance(own, Tensor) or own.numel() != 1:
        raise LosslandError(
            "own_loss() needs a model that returns its own loss (outputs.loss): put the "
            "labels in the batch"
        )
    return own.reshape(())


def _mean_of(result: Tensor | tuple[Tensor, Tensor]) -> float:
    if isinstance(result, tuple):
        return float(result[0].sum() / result[1].sum())
    return float(result.mean())


def _recover(output: Any, batch: Batch, own: Tensor, names: list[str]) -> str | None:
    """The first of the per-sample forms ``names`` whose batch mean is the model's own loss
    (None: none is)."""
    theirs = float(own)
    for name in names:
        try:
            ours = _mean_of(_RECOVERED[name](output, batch))
        except (LosslandError, RuntimeError, ValueError, IndexError):
            continue
        if math.isfinite(ours) and abs(ours - theirs) <= 1e-4 * max(1.0, abs(theirs)):
            return name
    return None


_ACCURACY: dict[str | None, Callable[[Any, Batch], tuple[Tensor, Tensor]]] = {
    "per-sample cross-entropy": default_accuracy,
    "next-token cross-entropy": lambda o, b: _causal_accuracy(o, b),
    "per-token cross-entropy": _token_accuracy(lambda o, b: _tokens(o, b, "own_loss")),
    "mean squared error": _no_accuracy,
    None: _no_accuracy,
}


def own_loss() -> Evaluator:
    """The model's own ``outputs.loss`` (labels in the batch). On each batch lossland looks
    for the per-sample form that reproduces it (per-sample, next-token or per-token
    cross-entropy, squared error; the one found before is tried first) and uses it: batches
    weighted by their samples or tokens, with a standard error and the matching accuracy.
    Where none does, the loss is the model's scalar batch mean, batches weighted by their
    samples, no standard error and no accuracy, with a warning. One point per forward
    (``points_per_batch`` 1)."""
    chosen: list[str | None] = [None]
    warned: list[bool] = []

    def form(output: Any, batch: Batch) -> str | None:
        own = _own(output)
        found = chosen[0]
        if found is None or _recover(output, batch, own, [found]) is None:
            found = chosen[0] = _recover(output, batch, own, list(_RECOVERED))
        if found is None and not warned:
            warned.append(True)
            warnings.warn(
                "own_loss(): no per-sample form reproduces the model's own loss, so each batch "
                "counts with its scalar mean, weighted by its samples (not its tokens), and the "
                "surface has no standard error",
                LosslandWarning,
                stacklevel=2,
            )
        return found

    def loss(output: Any, batch: Batch) -> Tensor | tuple[Tensor, Tensor]:
        found = form(output, batch)
        if found is None:
            return wide(_own(output).detach())
        return _RECOVERED[found](output, batch)

    def accuracy(output: Any, batch: Batch) -> tuple[Tensor, Tensor]:
        return _ACCURACY[chosen[0]](output, batch)  # the form the loss of this batch chose

    return Evaluator(forward=default_forward, loss=loss, accuracy=accuracy, name="own_loss")


def fitting_preset(output: Any, batch: Batch) -> str:
    """The preset to advise when the model's own loss is not the default cross-entropy: the
    one whose per-sample form reproduces it, ``seq2seq_lm()`` for an encoder–decoder model,
    else ``own_loss()``."""
    if encoder_decoder(output, batch):
        return "lossland.presets.seq2seq_lm()"
    try:
        found = _recover(output, batch, _own(output), list(_RECOVERED))
    except LosslandError:
        found = None
    name = {
        "next-token cross-entropy": "causal_lm",
        "per-token cross-entropy": "token_classification",
        "mean squared error": "regression",
    }.get(found or "", "own_loss")
    return f"lossland.presets.{name}()"


PRESETS = {
    "causal_lm": causal_lm,
    "sequence_classification": sequence_classification,
    "image_classification": image_classification,
    "seq2seq_lm": seq2seq_lm,
    "token_classification": token_classification,
    "regression": regression,
    "own_loss": own_loss,
}
