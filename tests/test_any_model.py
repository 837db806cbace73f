"""Any model, any data: real Hugging Face models (built from small configs, random init, a few
training steps on synthetic data; nothing downloaded), DataLoaders and dict batches, against a
direct computation with the weights set by hand and the library's own loss."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lossland
from lossland.errors import LosslandError, LosslandWarning

transformers = pytest.importorskip("transformers")

GRID = {"x": "-0.5:0.5:3", "y": "-0.5:0.5:3", "progress": False, "device": "cpu"}
CHECKED = [(0, 0), (0, 2), (2, 1), (1, 1)]  # (row, column) grid points compared by hand


def moved(model: nn.Module, d: lossland.Directions, a: float, b: float) -> nn.Module:
    """A copy of ``model`` at θ* + a·δ + b·η, weights set by hand."""
    net = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.add_(d.x[name], alpha=a).add_(d.y[name], alpha=b)  # type: ignore[index]
    return net


def assert_points(s: lossland.Surface, truth: object, model: nn.Module, d: object) -> None:
    for i, j in CHECKED:
        expected = truth(moved(model, d, s.x[j], s.y[i]))  # type: ignore[operator, arg-type]
        assert s.loss[i, j] == pytest.approx(expected, rel=1e-5), (i, j)


# --- a causal language model: GPT-2, dict batches padded with -100 labels ---------------------


@pytest.fixture(scope="module")
def gpt2() -> tuple[nn.Module, list[dict[str, torch.Tensor]]]:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=2, vocab_size=101, n_positions=32, attn_implementation="eager"
    )
    model = transformers.GPT2LMHeadModel(config)
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(3):  # sequences of 7..16 tokens, right-padded
        ids = torch.randint(0, 101, (8, 16), generator=g)
        lengths = torch.randint(7, 17, (8,), generator=g)
        mask = (torch.arange(16)[None, :] < lengths[:, None]).long()
        labels = ids.masked_fill(mask == 0, -100)
        batches.append({"input_ids": ids * mask, "attention_mask": mask, "labels": labels})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for batch in batches * 2:  # a few steps: not a random-init landscape
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    return model.eval(), batches


def hf_causal_loss(batches: list[dict[str, torch.Tensor]]) -> object:
    """The token-weighted mean of the model's own loss over the batches."""

    def loss(net: nn.Module) -> float:
        total = count = 0.0
        with torch.no_grad():
            for batch in batches:
                n = float((batch["labels"][:, 1:] != -100).sum())
                total += float(net(**batch).loss) * n
                count += n
        return total / count

    return loss


@pytest.mark.parametrize("mode", ["cached", "streamed"])
def test_gpt2_causal_lm_equals_its_own_loss(gpt2, mode):
    model, batches = gpt2
    loader = DataLoader(batches, batch_size=None)  # the dict batches as they are
    d = lossland.random_directions(model, seed=1, ndim=2)
    s = lossland.surface(
        model, loader, directions=d, evaluator=lossland.presets.causal_lm(), data_mode=mode, **GRID
    )
    assert s.attrs["data_mode"] == mode and s.attrs["loss"] == "causal_lm"
    assert_points(s, hf_causal_loss(batches), model, d)
    # Standard errors are the ratio estimator's over the 24 sequences: finite and small.
    assert np.all(np.isfinite(s.loss_sem)) and np.all(s.loss_sem < 0.2 * s.loss)
    assert np.all((s.acc >= 0) & (s.acc <= 100))


def test_the_acceptance_call(gpt2):
    model, batches = gpt2
    loss = lossland.surface(
        model,
        DataLoader(batches, batch_size=None),
        x="-0.5:0.5:3",
        y="-0.5:0.5:3",
        directions=lossland.random_directions(model, seed=1, ndim=2),
        evaluator=lossland.presets.causal_lm(),
        progress=False,
    ).loss
    assert loss.shape == (3, 3) and np.all(np.isfinite(loss))


def test_gpt2_without_the_preset_is_refused_at_the_door(gpt2):
    model, batches = gpt2
    with pytest.raises(LosslandError, match=r"presets\.causal_lm\(\)") as info:
        lossland.surface(model, batches, **GRID)
    assert "\n" not in str(info.value)


def test_per_token_logits_are_token_weighted_not_summed():
    """(B, T, V) logits with (B, T) targets: the mean over counted tokens (the old engine
    returned T times that), -100 tokens left out."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(13, 8), nn.Linear(8, 13)).eval()
    ids = torch.randint(0, 13, (6, 11))
    labels = torch.randint(0, 13, (6, 11))
    labels[:, 8:] = -100
    s = lossland.surface(model, (ids, labels), x="0:0:1", progress=False)
    with torch.no_grad():
        expected = F.cross_entropy(model(ids).flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert s.loss[0] == pytest.approx(float(expected), rel=1e-6)
    # Token accuracy over the counted tokens only.
    with torch.no_grad():
        hits = (model(ids).argmax(-1) == labels)[:, :8].double().mean()
    assert s.acc[0] == pytest.approx(100 * float(hits), rel=1e-9)


# --- sequence and image classifiers ---------------------------------------------------------


def test_bert_sequence_classifier():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=3,
    )
    model = transformers.BertForSequenceClassification(config).eval()
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 60, (20, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[::3, 9:] = 0
    labels = torch.randint(0, 3, (20,), generator=g)
    rows = [
        {"input_ids": i, "attention_mask": m, "labels": y}
        for i, m, y in zip(ids, mask, labels, strict=True)
    ]
    loader = DataLoader(rows, batch_size=8)  # dict batches collated by the default collate
    d = lossland.random_directions(model, seed=3, ndim=2)
    s = lossland.surface(
        model, loader, directions=d, evaluator=lossland.presets.sequence_classification(), **GRID
    )

    def own(net: nn.Module) -> float:
        with torch.no_grad():
            return float(net(input_ids=ids, attention_mask=mask, labels=labels).loss)

    assert_points(s, own, model, d)


def test_vit_image_classifier_on_dict_batches():
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=16,
        patch_size=4,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=4,
    )
    model = transformers.ViTForImageClassification(config).eval()
    pixels = torch.randn(12, 3, 16, 16)
    labels = torch.randint(0, 4, (12,))
    batches = [{"pixel_values": pixels[i : i + 5], "labels": labels[i : i + 5]} for i in (0, 5, 10)]
    d = lossland.random_directions(model, seed=4, ndim=2)
    s = lossland.surface(
        model, batches, directions=d, evaluator=lossland.presets.image_classification(), **GRID
    )

    def own(net: nn.Module) -> float:
        with torch.no_grad():
            return float(F.cross_entropy(net(pixel_values=pixels).logits, labels))

    assert_points(s, own, model, d)


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


def resnet() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        Block(8),
        Block(8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    net.train()
    with torch.no_grad():  # running statistics that are not the defaults
        for _ in range(3):
            net(torch.randn(16, 3, 8, 8) * 2 + 1)
    return net.eval()


@pytest.mark.parametrize("kind", ["pair", "dataset", "loader", "shuffled", "list", "numpy"])
def test_every_kind_of_data_equals_the_tensor_pair(kind):
    model = resnet()
    x, y = torch.randn(40, 3, 8, 8), torch.randint(0, 5, (40,))
    d = lossland.random_directions(model, seed=5, ndim=2)
    reference = lossland.surface(model, (x, y), directions=d, **GRID)
    data = {
        "pair": (x, y),
        "dataset": TensorDataset(x, y),
        "loader": DataLoader(TensorDataset(x, y), batch_size=16),
        "shuffled": DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True),
        "list": [(x[i : i + 16], y[i : i + 16]) for i in range(0, 40, 16)],
        "numpy": (x.numpy(), y.numpy()),
    }[kind]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = lossland.surface(model, data, directions=d, **GRID)
    assert any(issubclass(w.category, LosslandWarning) for w in caught) == (kind == "shuffled")
    np.testing.assert_allclose(s.loss, reference.loss, rtol=1e-6)
    np.testing.assert_allclose(s.acc, reference.acc, rtol=0, atol=1e-9)
    np.testing.assert_allclose(s.loss_sem, reference.loss_sem, rtol=1e-5)

    def own(net: nn.Module) -> float:
        with torch.no_grad():
            return float(F.cross_entropy(net(x), y))

    assert_points(s, own, model, d)


def test_seeded_subsets_of_a_dataset_and_of_a_pair_agree():
    model = resnet()
    x, y = torch.randn(40, 3, 8, 8), torch.randint(0, 5, (40,))
    d = lossland.random_directions(model, seed=6)
    a = lossland.surface(model, (x, y), x="-1:1:3", directions=d, samples=12, progress=False)
    b = lossland.surface(
        model, TensorDataset(x, y), x="-1:1:3", directions=d, samples=12, progress=False
    )
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-6)
    assert a.attrs["samples"] == b.attrs["samples"] == 12


# --- errors at the door ---------------------------------------------------------------------


def _bad_losses() -> dict[str, object]:
    return {
        "unreduced (B, C)": lambda logits, targets: F.cross_entropy(
            logits, targets, reduction="none"
        )[:, None].expand(-1, 5),
        "wrong length": lambda logits, targets: F.cross_entropy(logits, targets, reduction="none")[
            :-1
        ],
        "not a tensor": lambda logits, targets: 3.0,
    }


@pytest.mark.parametrize("name", list(_bad_losses()))
def test_losses_of_the_wrong_shape_are_one_line_errors(name):
    model = resnet()
    data = (torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,)))
    with pytest.raises(LosslandError) as info:
        lossland.surface(model, data, x="0:0:1", loss=_bad_losses()[name], progress=False)
    assert "\n" not in str(info.value) and "loss" in str(info.value)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ((torch.randn(4, 3, 8, 8), torch.randn(4)), "integer class targets"),
        ([{"x": torch.randn(4, 3, 8, 8)}], "raised TypeError"),
        ([(torch.randn(4, 5, 8, 8), torch.randint(0, 5, (4,)))], "batches fit the model"),
        (iter([]), "empty"),
        ("not data", "cannot evaluate on str"),
    ],
)
def test_data_that_does_not_fit_the_model_is_refused_with_the_fix(data, words):
    with pytest.raises(LosslandError) as info:
        lossland.surface(resnet(), data, x="0:0:1", progress=False)
    message = str(info.value)
    assert words in message and "\n" not in message, message


def test_a_one_shot_iterator_is_cached_not_streamed():
    model = resnet()
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 5, (16,))
    s = lossland.surface(model, iter([(x, y)]), x="-1:1:3", progress=False)
    assert s.attrs["data_mode"] == "cached" and np.all(np.isfinite(s.loss))
    with pytest.raises(LosslandError, match="one-shot"):
        lossland.surface(model, iter([(x, y)]), x="-1:1:3", data_mode="streamed", progress=False)


# --- the Hessian through the contract -------------------------------------------------------


def test_hessian_of_a_token_weighted_loss_equals_the_dense_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(7, 3), nn.Linear(3, 7)).double().eval()
    ids = torch.randint(0, 7, (5, 6))
    labels = torch.randint(0, 7, (5, 6))
    labels[:2, 4:] = -100
    batches = [
        {"input_ids": ids[:3], "labels": labels[:3]},
        {"input_ids": ids[3:], "labels": labels[3:]},
    ]

    def forward(net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return net(batch["input_ids"])

    evaluator = lossland.Evaluator(forward=forward)
    op = lossland.HessianOperator(model, batches, evaluator=evaluator, dtype=torch.float64)
    names = [n for n, _ in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    shapes = [p.shape for p in model.parameters()]

    def loss_of(theta: torch.Tensor) -> torch.Tensor:
        parts = torch.split(theta, [math.prod(s) for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes, strict=True)}
        logits = torch.func.functional_call(model, params, (ids,))
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)

    dense = torch.autograd.functional.hessian(loss_of, flat)
    probe = torch.randn(len(flat), dtype=torch.float64)
    torch.testing.assert_close(op.matvec(probe), dense @ probe, rtol=1e-9, atol=1e-10)


# --- BatchNorm modes against float64 --------------------------------------------------------


@pytest.mark.parametrize("bn", ["eval", "train", "recompute"])
def test_every_batchnorm_mode_matches_a_float64_computation(bn):
    """Inputs far from zero make channels_last BatchNorm lose float32 precision on the CPU;
    every mode must still match float64 to 1e-5."""
    model = resnet()
    x, y = torch.rand(64, 3, 8, 8) + 30, torch.randint(0, 5, (64,))
    d = lossland.random_directions(model, seed=7, ndim=2)
    s = lossland.surface(model, (x, y), directions=d, bn=bn, batch_size=32, **GRID)
    wide = copy.deepcopy(model).double()
    d64 = lossland.Directions(
        x={k: v.double() for k, v in d.x.items()},
        y={k: v.double() for k, v in d.y.items()},  # type: ignore[union-attr]
    )
    exact = lossland.surface(
        wide, (x.double(), y), directions=d64, bn=bn, batch_size=32, dtype="float64", **GRID
    )
    np.testing.assert_allclose(s.loss, exact.loss, rtol=1e-5)
