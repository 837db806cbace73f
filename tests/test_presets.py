"""Presets against losses written by hand: encoder–decoder LMs (T5, BART) with decoder masks,
regression, token classification, the model's own loss, float64 runs, and --evaluator.
Real Hugging Face models from tiny configs, random init, nothing downloaded."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lossland
from helpers import assert_one_line
from lossland.cli._common import SampleArgs
from lossland.errors import LosslandError, LosslandWarning

transformers = pytest.importorskip("transformers")

V, B, T = 40, 4, 6
POINTS = {"x": "-0.5:0.5:3", "progress": False, "device": "cpu"}


def _seq2seq(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "t5":
        config = transformers.T5Config(
            vocab_size=V, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
            decoder_start_token_id=0, pad_token_id=0,
        )  # fmt: skip
        return transformers.T5ForConditionalGeneration(config).eval()
    config = transformers.BartConfig(
        vocab_size=V, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_position_embeddings=32, pad_token_id=1, decoder_start_token_id=2,
    )  # fmt: skip
    return transformers.BartForConditionalGeneration(config).eval()


def _lengths(seed: int) -> torch.Tensor:
    return torch.randint(2, T + 1, (B,), generator=torch.Generator().manual_seed(seed))


def _mask(lengths: torch.Tensor) -> torch.Tensor:
    return (torch.arange(T)[None, :] < lengths[:, None]).long()


def seq2seq_batches(labels: str, decoder_mask: bool) -> list[dict[str, torch.Tensor]]:
    """Encoder inputs and labels of the same shape (B, T), with different padding: the encoder's
    attention_mask must never mask the labels. ``labels``: how label padding is marked."""
    out = []
    for k in range(3):
        g = torch.Generator().manual_seed(10 + k)
        encoder, decoder = _mask(_lengths(20 + k)), _mask(_lengths(30 + k))
        batch = {
            "input_ids": torch.randint(3, V, (B, T), generator=g) * encoder,
            "attention_mask": encoder,
        }
        ids = torch.randint(3, V, (B, T), generator=g)
        batch["labels"] = ids.masked_fill(decoder == 0, -100 if labels == "-100" else 0)
        if decoder_mask:
            batch["decoder_attention_mask"] = decoder
        out.append(batch)
    return out


def by_hand(batches: list[dict[str, torch.Tensor]], decoder_mask: bool) -> Callable[..., Any]:
    """(loss, accuracy %) over the decoder's real tokens, token-weighted over all batches."""

    def truth(net: nn.Module) -> tuple[float, float]:
        total = hits = count = 0.0
        with torch.no_grad():
            for batch in batches:
                logits = net(**batch).logits.double()
                labels = batch["labels"]
                real = labels != -100
                if decoder_mask:
                    real &= batch["decoder_attention_mask"].bool()
                losses = F.cross_entropy(
                    logits.flatten(0, 1), labels.clamp(min=0).flatten(), reduction="none"
                ).view(labels.shape)
                total += float(losses[real].sum())
                hits += float((logits.argmax(-1) == labels)[real].sum())
                count += float(real.sum())
        return total / count, 100 * hits / count

    return truth


def moved(model: nn.Module, d: lossland.Directions, alpha: float) -> nn.Module:
    import copy

    net = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name in d.x:
                p.add_(d.x[name].to(p.dtype), alpha=alpha)
    return net


def check(s: lossland.Surface, truth: Callable[..., Any], model: nn.Module, rel: float) -> None:
    d = lossland.random_directions(model, seed=0)
    for j, alpha in enumerate(s.x):
        loss, acc = truth(moved(model, d, float(alpha)))
        assert float(s.loss[j]) == pytest.approx(loss, rel=rel), j
        assert float(s.acc[j]) == pytest.approx(acc, rel=1e-9, abs=1e-9), j


SEQ2SEQ = [
    # model, how labels are padded, decoder_attention_mask given, evaluator
    ("t5", "-100", True, "default"),
    ("t5", "-100", False, "default"),
    ("t5", "-100", True, "seq2seq_lm"),
    ("t5", "pad", True, "seq2seq_lm"),
    ("t5", "-100", False, "seq2seq_lm"),
    ("bart", "-100", True, "default"),
    ("bart", "pad", True, "seq2seq_lm"),
    ("bart", "-100", False, "own_loss"),
]


@pytest.mark.parametrize(("name", "labels", "decoder_mask", "evaluator"), SEQ2SEQ)
def test_encoder_decoder_losses_count_the_decoders_real_tokens(
    name: str, labels: str, decoder_mask: bool, evaluator: str
) -> None:
    model = _seq2seq(name)
    batches = seq2seq_batches(labels, decoder_mask)
    chosen = None if evaluator == "default" else lossland.presets.PRESETS[evaluator]()
    d = lossland.random_directions(model, seed=0)
    s = lossland.surface(model, batches, directions=d, evaluator=chosen, **POINTS)
    check(s, by_hand(batches, decoder_mask), model, rel=1e-5)
    if evaluator != "own_loss":
        assert np.all(np.isfinite(s.loss_sem))


@pytest.mark.parametrize("name", ["t5", "bart"])
def test_the_own_loss_check_advises_seq2seq_lm_for_an_encoder_decoder(name: str) -> None:
    """Labels padded with the pad id and masked by decoder_attention_mask: the model's own loss
    counts the padding, lossland's does not; the advice names the seq2seq preset."""
    batches = seq2seq_batches("pad", decoder_mask=True)
    with pytest.raises(LosslandError, match=r"presets\.seq2seq_lm\(\)") as info:
        lossland.surface(_seq2seq(name), batches, x="0:0:1", progress=False)
    assert_one_line(str(info.value))


# --- regression, token classification, the model's own loss ----------------------------------


def _bert(head: str, labels: int) -> nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32, num_labels=labels,
    )  # fmt: skip
    return getattr(transformers, f"BertFor{head}")(config).eval()


def _ids(k: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(40 + k)
    mask = _mask(_lengths(50 + k))
    return {"input_ids": torch.randint(3, V, (B, T), generator=g) * mask, "attention_mask": mask}


def regression_batches() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    return [{**_ids(k), "labels": torch.randn(B, generator=g) * 2} for k in range(3)]


def token_batches() -> list[dict[str, torch.Tensor]]:
    out = []
    for k in range(3):
        batch = _ids(k)
        tags = torch.randint(0, 4, (B, T), generator=torch.Generator().manual_seed(60 + k))
        out.append({**batch, "labels": tags.masked_fill(batch["attention_mask"] == 0, -100)})
    return out


def mse_by_hand(batches: list[dict[str, torch.Tensor]]) -> Callable[..., Any]:
    def truth(net: nn.Module) -> tuple[float, float]:
        with torch.no_grad():
            errors = [
                (net(**{k: v for k, v in b.items() if k != "labels"}).logits[:, 0] - b["labels"])
                ** 2
                for b in batches
            ]
        return float(torch.cat(errors).double().mean()), math.nan

    return truth


def tokens_by_hand(batches: list[dict[str, torch.Tensor]]) -> Callable[..., Any]:
    def truth(net: nn.Module) -> tuple[float, float]:
        total = hits = count = 0.0
        with torch.no_grad():
            for b in batches:
                logits = net(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
                real = b["labels"] != -100
                losses = F.cross_entropy(logits[real].double(), b["labels"][real], reduction="sum")
                total += float(losses)
                hits += float((logits[real].argmax(-1) == b["labels"][real]).sum())
                count += float(real.sum())
        return total / count, 100 * hits / count

    return truth


def check_nan_acc(s: lossland.Surface, truth: Callable[..., Any], model: nn.Module) -> None:
    d = lossland.random_directions(model, seed=0)
    for j, alpha in enumerate(s.x):
        loss, acc = truth(moved(model, d, float(alpha)))
        assert float(s.loss[j]) == pytest.approx(loss, rel=1e-5), j
        if math.isnan(acc):
            assert math.isnan(float(s.acc[j]))
        else:
            assert float(s.acc[j]) == pytest.approx(acc, abs=1e-9)


HEADS = [
    # model maker, batches, truth, evaluator
    ("regression", lambda: _bert("SequenceClassification", 1), regression_batches, mse_by_hand),
    ("own_loss", lambda: _bert("SequenceClassification", 1), regression_batches, mse_by_hand),
    ("token_classification", lambda: _bert("TokenClassification", 4), token_batches,
     tokens_by_hand),
    ("own_loss", lambda: _bert("TokenClassification", 4), token_batches, tokens_by_hand),
]  # fmt: skip


@pytest.mark.parametrize(("preset", "make", "data", "truth"), HEADS)
def test_heads_equal_their_losses_written_by_hand(preset: str, make, data, truth) -> None:
    model, batches = make(), data()
    d = lossland.random_directions(model, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LosslandWarning)  # own_loss recovers a per-sample form
        s = lossland.surface(
            model, batches, directions=d, evaluator=lossland.presets.PRESETS[preset](), **POINTS
        )
    check_nan_acc(s, truth(batches), model)
    assert np.all(np.isfinite(s.loss_sem))


@pytest.mark.parametrize("preset", [None, "sequence_classification"])
def test_classification_on_float_labels_names_the_regression_preset(preset: str | None) -> None:
    evaluator = None if preset is None else lossland.presets.PRESETS[preset]()
    with pytest.raises(LosslandError, match=r"presets\.regression\(\)") as info:
        lossland.surface(
            _bert("SequenceClassification", 1),
            regression_batches(),
            x="0:0:1",
            evaluator=evaluator,
            progress=False,
        )
    assert_one_line(str(info.value))


class Odd(nn.Module):
    """A model whose own loss is no per-sample form lossland knows: 2·CE + 1."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.fc(x)
        return {"logits": logits, "loss": 2 * F.cross_entropy(logits, labels) + 1}


def test_own_loss_without_a_per_sample_form_is_a_batch_mean_with_a_note() -> None:
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(10, 5, generator=g), torch.randint(0, 3, (10,), generator=g)
    batches = [{"x": x[:6], "labels": y[:6]}, {"x": x[6:], "labels": y[6:]}]
    model = Odd().eval()
    with pytest.warns(LosslandWarning, match="no per-sample form"):
        s = lossland.surface(
            model, batches, x="0:0:1", evaluator=lossland.presets.own_loss(), progress=False
        )
    with torch.no_grad():
        means = [float(model(**b)["loss"]) for b in batches]
    assert float(s.loss[0]) == pytest.approx((6 * means[0] + 4 * means[1]) / 10, rel=1e-6)
    assert math.isnan(float(s.loss_sem[0])) and math.isnan(float(s.acc[0]))


def test_own_loss_needs_labels_in_the_batch() -> None:
    with pytest.raises(LosslandError, match="put the labels in the batch"):
        lossland.surface(
            _bert("TokenClassification", 4),
            [_ids(0)],
            x="0:0:1",
            evaluator=lossland.presets.own_loss(),
            progress=False,
        )


# --- float64 runs get float64 losses ---------------------------------------------------------


def _gpt2() -> tuple[nn.Module, list[dict[str, torch.Tensor]]]:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=1, n_embd=16, n_head=2, vocab_size=V, n_positions=16,
        attn_implementation="eager", bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    batches = []
    for k in range(2):
        batch = _ids(k)
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        batches.append(batch)
    return transformers.GPT2LMHeadModel(config).eval(), batches


def _hand_causal(output: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    logits, labels = output.logits[:, :-1], batch["labels"][:, 1:]
    real = labels != -100
    losses = -torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return (losses * real).sum(dim=1), real.sum(dim=1).to(losses.dtype)


def _hand_tokens(output: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    labels = batch["labels"]
    real = labels != -100
    if "decoder_attention_mask" in batch:
        real &= batch["decoder_attention_mask"].bool()
    losses = -torch.log_softmax(output.logits, dim=-1).gather(-1, labels.clamp(min=0)[..., None])
    return (losses[..., 0] * real).sum(dim=1), real.sum(dim=1).to(losses.dtype)


def _hand_mse(output: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return (output.logits[:, 0] - batch["labels"].to(output.logits.dtype)) ** 2


FLOAT64 = [
    ("causal_lm", _gpt2, _hand_causal),
    ("own_loss", _gpt2, _hand_causal),
    ("seq2seq_lm", lambda: (_seq2seq("t5"), seq2seq_batches("pad", True)), _hand_tokens),
    ("token_classification", lambda: (_bert("TokenClassification", 4), token_batches()),
     _hand_tokens),
    ("regression", lambda: (_bert("SequenceClassification", 1), regression_batches()), _hand_mse),
]  # fmt: skip


@pytest.mark.parametrize(("preset", "make", "hand"), FLOAT64)
def test_presets_compute_float64_losses_in_a_float64_run(preset: str, make, hand) -> None:
    model, batches = make()
    model = model.double()
    d = lossland.random_directions(model, seed=1)
    common: dict[str, Any] = {"directions": d, "dtype": "float64", **POINTS}
    evaluator = lossland.presets.PRESETS[preset]()
    s = lossland.surface(model, batches, evaluator=evaluator, **common)
    handwritten = lossland.Evaluator(forward=evaluator.forward, loss=hand)
    ref = lossland.surface(model, batches, evaluator=handwritten, **common)
    np.testing.assert_allclose(s.loss, ref.loss, rtol=1e-12, atol=0)


# --- --evaluator on the command line ---------------------------------------------------------


MODULE = '''
import torch
import lossland

def _loss(output, batch):
    """Token-weighted next-token cross-entropy, written by hand."""
    logits, labels = output.logits[:, :-1], batch["labels"][:, 1:]
    real = labels != -100
    losses = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), labels.clamp(min=0).flatten(), reduction="none"
    ).view(labels.shape)
    return (losses * real).sum(dim=1), real.sum(dim=1).to(losses.dtype)

WEIGHTED = lossland.Evaluator(loss=_loss, name="weighted")

def make():
    return WEIGHTED

def needs(argument):
    return WEIGHTED

NOT_ONE = 3
'''


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ({"evaluator": "my_eval:WEIGHTED"}, None),
        ({"evaluator": "my_eval:make"}, None),
        ({"evaluator": "lossland.presets:causal_lm"}, None),
        ({"evaluator": "my_eval:NOT_ONE"}, "not a lossland Evaluator"),
        ({"evaluator": "my_eval:needs"}, "without arguments"),
        ({"evaluator": "my_eval:missing"}, "has no 'missing'"),
        ({"evaluator": "my_eval"}, "malformed import path"),
        ({"evaluator": "my_eval:make", "preset": "causal_lm"}, "drop --preset"),
    ],
)
def test_the_evaluator_flag_imports_an_evaluator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: dict[str, str], words: str | None
) -> None:
    (tmp_path / "my_eval.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "my_eval", raising=False)
    args = SampleArgs(**flags)  # type: ignore[arg-type]
    if words is not None:
        with pytest.raises(LosslandError, match=words) as info:
            args.make_evaluator()
        assert_one_line(str(info.value))
        return
    evaluator = args.make_evaluator()
    assert isinstance(evaluator, lossland.Evaluator)
    model, batches = _gpt2()
    s = lossland.surface(model, batches, evaluator=evaluator, x="0:0:1", progress=False)
    ref = lossland.surface(
        model, batches, evaluator=lossland.presets.causal_lm(), x="0:0:1", progress=False
    )
    assert float(s.loss[0]) == pytest.approx(float(ref.loss[0]), rel=1e-6)


@pytest.mark.parametrize(
    ("shape", "dtype", "block"),
    [
        ((3, 7, 50), torch.bfloat16, 50 * 7),  # whole sequences a block
        ((3, 7, 50), torch.bfloat16, 120),  # two positions a block, across sequences' ends
        ((2, 5, 40), torch.float32, 1),  # one position a block (a row wider than the block)
        ((2, 5, 40), torch.float16, 7 * 40),
        ((4, 6, 30), torch.float64, 90),  # float64 stays float64
    ],
)
def test_token_losses_widened_a_block_at_a_time_equal_one_call(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int, int], dtype: torch.dtype, block: int
) -> None:
    """A large vocabulary's logits are widened to float32 a block at a time (the float32 copy
    of them all is most of a language model's activations): the losses do not change, bit for
    bit, including for a non-contiguous slice (the causal shift) and masked positions."""
    from lossland.engine import _contract

    torch.manual_seed(0)
    n, t, v = shape
    logits = (torch.randn(n, t + 1, v) * 3).to(dtype)[:, :-1]  # (n, t, v), not contiguous
    targets = torch.randint(0, v, (n, t))
    mask = torch.rand(n, t) > 0.2
    whole = _contract.token_losses(logits, targets, mask)
    monkeypatch.setattr(_contract, "WIDE_BLOCK", block)
    blocks = _contract.token_losses(logits, targets, mask)
    for a, b in zip(whole, blocks, strict=True):
        assert a.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        assert torch.equal(a, b)
    wide = logits.double() if dtype == torch.float64 else logits.float()
    direct = F.cross_entropy(wide.transpose(1, 2), targets, reduction="none") * mask
    assert torch.allclose(blocks[0].double(), direct.sum(dim=1).double(), rtol=1e-6)
