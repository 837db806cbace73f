"""The evaluation contract: how a batch becomes a loss, for any model.

An :class:`Evaluator` is ``forward(model, batch) -> output``, ``loss(output, batch)`` and
``accuracy(output, batch)``; each ``None`` means the default, which needs no code:

* forward: a mapping batch is ``model(**batch)``; ``(inputs, targets)`` is ``model(inputs)``;
  a longer tuple ``(*inputs, targets)`` is ``model(*inputs)``;
* outputs with ``.logits``, ``["logits"]`` or a tuple's first element are unwrapped;
* loss: cross-entropy per sample for (B, C) logits and (B,) class targets; for per-token
  logits (B, T, V) and (B, T) targets the **token-weighted** mean (Σ token losses / Σ counted
  tokens), honouring ``ignore_index`` −100 and the mask of the labels' tokens
  (:func:`label_mask`: ``decoder_attention_mask`` for an encoder–decoder model, never the
  encoder's ``attention_mask``); the standard error is then the ratio estimator's over
  sequences;
* accuracy: defined for those two shapes (per sample, or per counted token); else not measured.

A loss returns per-sample losses (B,), or ``(sums, counts)`` per sample for weighted means, or
a scalar batch mean (no standard error). Anything else is an error, never silently summed.

Per point the engine adds up, over the batches, one float64 number per row of
:data:`lossland.core.SUMS` (see :meth:`Evaluator.stats` and :func:`accumulate`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossland.core import SUMS, import_object
from lossland.engine._data import Batch, batch_size_of, targets_of
from lossland.errors import LosslandError, arg

Forward = Callable[[nn.Module, Batch], Any]
Loss = Callable[[Any, Batch], "Tensor | tuple[Tensor, Tensor]"]
Accuracy = Callable[[Any, Batch], tuple[Tensor, Tensor]]  # (correct, counted) sums
LossFn = Callable[[Tensor, Tensor], Tensor]  # the classic loss(logits, targets)
IGNORE_INDEX = -100
# Where a point's batches combine by their largest value instead of their sum (see accumulate).
_LARGEST = tuple(s.combine == "max" for s in SUMS)
FIX = "pass loss=... (a function of the output and the batch) or a preset evaluator"


@dataclass(frozen=True, kw_only=True)
class Evaluator:
    """forward, loss and accuracy of one batch (``None``: the default for the batch)."""

    forward: Forward | None = None
    loss: Loss | None = None
    accuracy: Accuracy | None = None
    name: str = "cross_entropy"

    def run(self, model: nn.Module, batch: Batch) -> Any:
        return (self.forward or default_forward)(model, batch)

    def units(self, output: Any, batch: Batch) -> tuple[Tensor, Tensor, bool]:
        """(sums (m,), counts (m,), a batch mean only?): each unit's summed loss and weight
        (one unit for a loss that is a batch mean)."""
        return _per_unit((self.loss or default_loss)(output, batch), batch)

    def mean_loss(self, output: Any, batch: Batch) -> Tensor:
        """The batch's mean loss as :meth:`stats` defines it (Σ unit sums / Σ weights), a
        differentiable float32 scalar: what training through the contract minimises."""
        sums, counts, _ = self.units(output, batch)
        return (sums.sum() / counts.sum()).float()

    def stats(self, output: Any, batch: Batch) -> Tensor:
        """(len(SUMS),) float64: one batch's number for each row of :data:`lossland.core.SUMS`,
        in that order, on the output's device."""
        sums, counts, mean_only = self.units(output, batch)
        correct, counted = (self.accuracy or default_accuracy)(output, batch)
        # sums, counts: (m,) per unit; correct, counted: () each
        m = torch.tensor(float(len(sums)), dtype=torch.float64, device=sums.device)  # ()
        squares = (sums * sums).sum()  # ()
        if mean_only:  # a batch mean: no spread across units, so no standard error
            squares = torch.full_like(squares, math.nan)
        parts = {  # each (): s (m,) the units' summed losses, n (m,) their weights
            "loss_sum": sums.sum(),
            "loss_squares": squares,
            "weight": counts.sum(),
            "loss_weight": (sums * counts).sum(),
            "weight_squares": (counts * counts).sum(),
            "units": m,
            "correct": correct.double().reshape(()),
            "counted": counted.double().reshape(()),
        }
        return torch.stack([parts[s.name].to(sums.device) for s in SUMS])  # (len(SUMS),)


def with_loss(loss_fn: LossFn, name: str) -> Evaluator:
    """The classic ``loss(logits, targets)`` (per sample (B,), or a batch mean) as an
    evaluator with the default forward and accuracy."""

    def loss(output: Any, batch: Batch) -> Tensor:
        result = loss_fn(unwrap(output), targets_of(batch))  # (B,) or ()
        if not isinstance(result, Tensor):
            raise LosslandError(
                f"the {arg('loss')} returned {type(result).__name__}, not a tensor: return "
                "per-sample losses (B,) or a batch mean"
            )
        return result

    return Evaluator(loss=loss, name=name)


# --- the defaults ---------------------------------------------------------------------------


def default_forward(model: nn.Module, batch: Batch) -> Any:
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch[:-1]) if len(batch) > 2 else model(batch[0])
    return model(batch)


def unwrap(output: Any) -> Tensor:
    """The logits of a model's output: a tensor, ``.logits``, ``["logits"]``, or a tuple's
    first element."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, Mapping):
        logits = output.get("logits")
    if logits is None and isinstance(output, (tuple, list)) and output:
        logits = output[0]
    if isinstance(logits, Tensor):
        return logits
    raise LosslandError(
        f"the model returned {type(output).__name__} with no logits to compute a loss from: {FIX}"
    )


def _classes(output: Any, batch: Batch) -> tuple[Tensor, Tensor, Tensor | None]:
    """(logits, integer targets, token mask or None) where the default loss is defined."""
    logits, targets = unwrap(output), targets_of(batch)
    if not isinstance(targets, Tensor) or targets.is_floating_point():
        regression = isinstance(targets, Tensor) and targets.is_floating_point()
        fix = "for a regression head pass lossland.presets.regression()" if regression else FIX
        raise LosslandError(
            "the default cross-entropy needs integer class targets (the batch's last element "
            f"or its 'labels'), and this batch has {_describe(targets)}: {fix}"
        )
    if logits.dim() == 2 and targets.dim() == 1 and len(logits) == len(targets):
        return logits, targets, None
    if logits.dim() == 3 and targets.dim() == 2 and logits.shape[:2] == targets.shape:
        return logits, targets, label_mask(output, batch, targets)  # mask (B, T)
    raise LosslandError(
        f"cannot reduce output {tuple(logits.shape)} with targets {tuple(targets.shape)} to a "
        f"loss: the default is (B, C) logits with (B,) classes or (B, T, V) with (B, T); {FIX}"
    )


def encoder_decoder(output: Any, batch: Batch) -> bool:
    """Whether the batch feeds an encoder–decoder model (T5, BART, …): it names decoder inputs,
    or the output carries the encoder's states (Hugging Face ``Seq2Seq*Output``)."""
    if isinstance(batch, Mapping) and any(str(k).startswith("decoder_") for k in batch):
        return True
    return getattr(output, "encoder_last_hidden_state", None) is not None


def label_mask(output: Any, batch: Batch, labels: Tensor) -> Tensor:
    """(B, T) bool: the label tokens that count. −100 never counts; an encoder–decoder model's
    labels are the decoder's, masked by ``decoder_attention_mask`` when given (the encoder's
    ``attention_mask`` belongs to the inputs, even when it has the labels' shape); a
    decoder-only model's by its ``attention_mask``."""
    mask = labels != IGNORE_INDEX
    if not isinstance(batch, Mapping):
        return mask
    key = "decoder_attention_mask" if encoder_decoder(output, batch) else "attention_mask"
    attention = batch.get(key)
    if isinstance(attention, Tensor) and attention.shape == labels.shape:
        mask = mask & attention.bool()
    return mask


def wide(logits: Tensor) -> Tensor:
    """``logits`` in at least float32: half types are widened, float64 stays float64 (a float64
    run gets float64 losses)."""
    wider: Tensor = logits.float() if logits.dtype not in (torch.float32, torch.float64) else logits
    return wider


def default_loss(output: Any, batch: Batch) -> Tensor | tuple[Tensor, Tensor]:
    logits, targets, mask = _classes(output, batch)
    logits = wide(logits)
    if mask is None:
        return F.cross_entropy(logits, targets, reduction="none")
    return token_losses(logits, targets, mask)


# Logit elements widened to float32 at a time by ``token_losses``: a float32 copy of every
# position's logits over a large vocabulary (and the log-softmax beside it) would outweigh the
# rest of a language model's activations (151,936 tokens: 1.2 MB a position).
WIDE_BLOCK = 1 << 22


def token_losses(logits: Tensor, targets: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per sequence: (Σ token losses, counted tokens) over the tokens ``mask`` keeps.

    ``logits`` (B, T, V) in any float dtype are widened (``wide``) a block of sequences or
    positions at a time, at most WIDE_BLOCK elements: each position's loss is computed on its
    own row, so the blocks give the same losses as one call over all of them."""
    safe = targets.masked_fill(~mask, 0)  # (B, T): a masked position's target is any class
    n, t, v = logits.shape
    if logits.numel() <= WIDE_BLOCK:
        losses = _cross_entropy(logits, safe)
    else:
        losses = torch.empty(targets.shape, dtype=wide(logits[:0]).dtype, device=logits.device)
        rows = max(1, WIDE_BLOCK // (t * v))  # sequences a block
        span = t if t * v <= WIDE_BLOCK else max(1, WIDE_BLOCK // v)  # positions a block
        for i in range(0, n, rows):
            for j in range(0, t, span):
                block = (slice(i, i + rows), slice(j, j + span))
                losses[block] = _cross_entropy(logits[block], safe[block])
    weights = mask.to(losses.dtype)  # (B, T): 1 for a counted token
    return (losses * weights).sum(dim=1), weights.sum(dim=1)  # (B,), (B,)


def _cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """(b, t, V) logits, (b, t) targets → (b, t) losses, in at least float32."""
    flat = wide(logits).flatten(0, 1)  # (b·t, V)
    losses = F.cross_entropy(flat, targets.flatten(), reduction="none")
    return losses.view(targets.shape)


def default_accuracy(output: Any, batch: Batch) -> tuple[Tensor, Tensor]:
    """(correct, counted) where accuracy is defined; (nan, nan) where it is not."""
    try:
        logits, targets, mask = _classes(output, batch)
    except LosslandError:
        nan = torch.tensor(math.nan, dtype=torch.float64)
        return nan, nan
    hits = logits.argmax(dim=-1) == targets  # (B,) or (B, T)
    if mask is None:
        return hits.sum(), torch.tensor(float(len(targets)), device=hits.device)
    return (hits & mask).sum(), mask.sum()


# --- checks and sums ------------------------------------------------------------------------


def _per_unit(result: Any, batch: Batch) -> tuple[Tensor, Tensor, bool]:
    """(sums (m,), counts (m,), a batch mean only?) of a loss result, validated."""
    if isinstance(result, tuple) and len(result) == 2:
        sums, counts = (_as_tensor(r, "sums and counts") for r in result)
        if sums.dim() == 0 and counts.dim() == 0:
            return sums.reshape(1), counts.reshape(1), True
        if sums.dim() != 1 or sums.shape != counts.shape:
            raise LosslandError(
                f"the {arg('loss')} returned sums {tuple(sums.shape)} and counts "
                f"{tuple(counts.shape)}: return two (B,) tensors, one value per sample"
            )
        return sums, counts, False
    losses = _as_tensor(result, "losses")
    units = batch_size_of(batch)
    if losses.dim() == 0:
        return (losses * units).reshape(1), losses.new_full((1,), float(units)), True
    if losses.dim() != 1 or len(losses) != units:
        raise LosslandError(
            f"the {arg('loss')} returned shape {tuple(losses.shape)} for a batch of {units}: "
            "return per-sample losses (B,), (sums, counts) per sample for weighted means "
            "(e.g. per-token losses), or a scalar batch mean"
        )
    return losses, torch.ones_like(losses), False  # (B,), (B,) of ones


def _as_tensor(value: Any, what: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise LosslandError(
            f"the {arg('loss')} returned {type(value).__name__} as its {what}, not a tensor"
        )
    double: Tensor = value.double()
    return double


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"{value.dtype} targets of shape {tuple(value.shape)}"
    return "none" if value is None else f"targets of type {type(value).__name__}"


def accumulate(total: Tensor | None, sums: Tensor) -> Tensor:
    """A point's running sums (..., len(SUMS)) with one more batch's ``sums`` added: each row
    of :data:`lossland.core.SUMS` combines by its ``combine`` (a sum, or the largest)."""
    if total is None:
        return sums
    if not any(_LARGEST):
        return total + sums
    largest = torch.tensor(_LARGEST, device=sums.device)  # (len(SUMS),) bool
    return torch.where(largest, torch.maximum(total, sums), total + sums)


def resolve_evaluator(evaluator: Evaluator | None, loss: LossFn | str | None) -> Evaluator:
    """The evaluator: given, or the default with the classic ``loss(logits, targets)``."""
    if evaluator is not None and loss is not None:
        raise LosslandError(
            f"{arg('evaluator')} and {arg('loss')} both given: put the loss in the evaluator"
        )
    if evaluator is not None:
        if not isinstance(evaluator, Evaluator):
            raise LosslandError(
                f"{arg('evaluator')} must be a lossland Evaluator (see lossland.presets), "
                f"not {type(evaluator).__name__}"
            )
        return evaluator
    loss_fn, name = resolve_loss(loss)
    return Evaluator() if loss_fn is None else with_loss(loss_fn, name)


def resolve_loss(loss: LossFn | str | None) -> tuple[LossFn | None, str]:
    """The loss callable and a name for the file: cross-entropy by default, or an import path."""
    if loss is None:
        return None, "cross_entropy"
    if isinstance(loss, str):
        fn = import_object(loss, what="loss")
        if not callable(fn):
            raise LosslandError(
                f"{arg('loss')} {loss!r} is not callable: point to a function(logits, targets)"
            )
        return fn, loss
    if not callable(loss):
        raise LosslandError(f"{arg('loss')} must be callable, not {type(loss).__name__}")
    return loss, getattr(loss, "__qualname__", type(loss).__name__)
