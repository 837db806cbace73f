"""Tests for checkpoints: safetensors round trips, plain state dicts, refusing pickled code."""

from __future__ import annotations

import hashlib
import os
import pickle
import shlex
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from helpers import assert_one_line, torch_threads
from lossland.errors import CheckpointError, LosslandError
from lossland.io import (
    METADATA_KEY,
    ModelSpec,
    load_checkpoint,
    load_state_into,
    mismatch_report,
    save_checkpoint,
    state_of,
)
from lossland.zoo import build_model, load_model


def _trained_looking(spec: ModelSpec, seed: int = 0) -> nn.Module:
    """A model whose BatchNorm statistics are not the defaults, so buffers are checked too."""
    torch.manual_seed(seed)
    model = build_model(spec)
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 1, 28, 28) * 3 + 1)
    return model.eval()


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


class CodePayload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


# --- round trips --------------------------------------------------------------------------------


def test_safetensors_round_trip_with_metadata(tmp_path: Path) -> None:
    spec = ModelSpec("small", {"width": 0.5, "activation": "leaky_relu"})
    model = _trained_looking(spec)
    path = save_checkpoint(
        model, tmp_path / "m.safetensors", spec=spec, note="hello", results={"acc": 0.5}
    )
    checkpoint = load_checkpoint(path)
    _assert_same_state(checkpoint.state_dict, state_of(model))
    assert checkpoint.model_spec == spec
    assert checkpoint.metadata["note"] == "hello"
    assert checkpoint.metadata["results"] == {"acc": 0.5}
    assert checkpoint.metadata["torch_version"] == torch.__version__
    assert checkpoint.path == path
    assert checkpoint.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    rebuilt, again = load_model(path)
    assert again.model_spec == spec
    assert not rebuilt.training
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_channels_last_model_saves(tmp_path: Path) -> None:
    model = _trained_looking(ModelSpec("small")).to(memory_format=torch.channels_last)
    conv = model[4].weight
    assert not conv.is_contiguous()  # the case that needs the contiguous copy
    path = save_checkpoint(model, tmp_path / "cl.safetensors", spec=ModelSpec("small"))
    state = load_checkpoint(path).state_dict
    assert torch.equal(state["4.weight"], conv.detach())
    assert state["4.weight"].is_contiguous()
    rebuilt, _ = load_model(path)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model(x), atol=1e-5)


def test_plain_torch_save_state_dict_loads(tmp_path: Path) -> None:
    model = _trained_looking(ModelSpec("small"))
    path = tmp_path / "plain.pt"
    torch.save(model.state_dict(), path)
    checkpoint = load_checkpoint(path)
    _assert_same_state(checkpoint.state_dict, state_of(model))
    assert checkpoint.metadata == {}
    assert checkpoint.model_spec is None
    with pytest.raises(LosslandError, match="does not say which model") as info:
        load_model(path)
    assert_one_line(str(info.value))
    rebuilt, _ = load_model(path, spec=ModelSpec("small"))
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
def test_wrapped_state_dict_loads(tmp_path: Path, key: str) -> None:
    model = _trained_looking(ModelSpec("small"))
    path = tmp_path / "wrapped.pt"
    torch.save({key: model.state_dict(), "epoch": 3, "lr": 0.1}, path)
    _assert_same_state(load_checkpoint(path).state_dict, state_of(model))


def test_pickle_of_non_tensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="not a state dict") as info:
        load_checkpoint(path)
    assert_one_line(str(info.value))


# --- refusing code ------------------------------------------------------------------------------


def test_code_payload_is_real(tmp_path: Path) -> None:
    """Control: a plain unpickle of the payload does run it (so the next tests mean something)."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(CodePayload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("how", ["torch.save", "torch.save legacy", "pickle protocol 2"])
def test_pickled_code_is_refused_and_never_runs(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"weight": torch.zeros(3), "evil": CodePayload(marker)}
    if how == "torch.save":
        torch.save(payload, path)
    elif how == "torch.save legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match="never runs their code") as info:
        load_checkpoint(path)
    assert_one_line(str(info.value))
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_model(path, spec=ModelSpec("small"))
    assert not marker.exists()


def test_default_protocol_pickle_is_refused_without_warnings(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"evil": CodePayload(marker)}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
    assert not marker.exists()
    assert [str(w.message) for w in caught] == []


# --- broken files -------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", ["header", "half", "all but one byte"])
def test_truncated_safetensors(tmp_path: Path, keep: str) -> None:
    good = save_checkpoint(_trained_looking(ModelSpec("small")), tmp_path / "good.safetensors")
    raw = good.read_bytes()
    header = 8 + int.from_bytes(raw[:8], "little")
    cut = {"header": header, "half": len(raw) // 2, "all but one byte": len(raw) - 1}[keep]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(raw[:cut])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value)
    assert_one_line(str(info.value))


def test_malformed_lossland_metadata(tmp_path: Path) -> None:
    path = tmp_path / "meta.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={METADATA_KEY: "{not json"})
    with pytest.raises(CheckpointError, match="lossland metadata that is not valid JSON") as info:
        load_checkpoint(path)
    assert_one_line(str(info.value))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.touch()
    with pytest.raises(CheckpointError, match="is empty") as info:
        load_checkpoint(path)
    assert_one_line(str(info.value))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found") as info:
        load_checkpoint(tmp_path / "nope.safetensors")
    assert_one_line(str(info.value))
    with pytest.raises(CheckpointError, match="is not a regular file"):
        load_checkpoint(tmp_path)  # a folder is not a checkpoint either


@pytest.mark.parametrize("data", [b"abc", b"hello world, not a checkpoint"], ids=["3B", "text"])
def test_garbage_file_is_a_checkpoint_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert_one_line(str(info.value))


def test_save_into_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(LosslandError, match="does not exist") as info:
        save_checkpoint({"w": torch.zeros(1)}, tmp_path / "no" / "such" / "m.safetensors")
    assert_one_line(str(info.value))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_non_finite_weights_refused(tmp_path: Path, bad: float, fmt: str) -> None:
    state = state_of(_trained_looking(ModelSpec("small")))
    state["4.weight"] = state["4.weight"].clone()
    state["4.weight"].view(-1)[7] = bad
    path = tmp_path / f"diverged.{fmt}"
    if fmt == "safetensors":
        save_checkpoint(state, path)
    else:
        torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"NaN or inf in 1 tensor\(s\) \(4\.weight\)") as info:
        load_checkpoint(path)
    assert_one_line(str(info.value))


# --- checkpoints of other models ----------------------------------------------------------------


def test_mismatch_report_lists_missing_unexpected_and_shapes() -> None:
    model = build_model(ModelSpec("small"))
    state = state_of(model)
    del state["0.bias"]
    state["extra.weight"] = torch.zeros(2, 2)
    state["13.weight"] = torch.zeros(3, 3)
    problems = mismatch_report(model, state)
    assert sorted(problems) == sorted(
        [
            "missing 0.bias (16,)",
            "unexpected extra.weight (2, 2)",
            "shape of 13.weight: checkpoint (3, 3), model (64, 576)",
        ]
    )
    before = state_of(model)
    with pytest.raises(CheckpointError, match="3 mismatches") as info:
        load_state_into(model, state, source="checkpoint X")
    message = str(info.value)
    assert message.startswith("checkpoint X does not fit the model")
    assert all(p in message for p in problems)
    assert_one_line(message)
    _assert_same_state(state_of(model), before)  # nothing was half-loaded


def test_exact_state_has_no_mismatches() -> None:
    model = build_model(ModelSpec("small"))
    assert mismatch_report(model, state_of(model)) == []


def test_load_model_with_another_spec_lists_mismatches(tmp_path: Path) -> None:
    path = save_checkpoint(
        build_model(ModelSpec("small")), tmp_path / "small.safetensors", spec=ModelSpec("small")
    )
    other = ModelSpec("vgg", {"width": 0.125})
    problems = mismatch_report(build_model(other), load_checkpoint(path).state_dict)
    assert len(problems) > 8
    assert any(p.startswith("unexpected ") for p in problems)
    assert any(p.startswith("shape of ") for p in problems)
    with pytest.raises(CheckpointError, match="does not fit the model") as info:
        load_model(path, spec=other)
    message = str(info.value)
    assert str(path) in message
    assert f"({len(problems)} mismatches: {problems[0]}; " in message
    assert f"; and {len(problems) - 8} more)" in message  # long lists are summarised
    assert_one_line(message)

    with pytest.raises(CheckpointError, match=r"shape of 0\.weight: checkpoint") as info:
        load_model(path, spec=ModelSpec("small", {"width": 0.5}))
    assert_one_line(str(info.value))
