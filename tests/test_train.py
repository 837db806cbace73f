"""Tests for training through the CLI on tiny synthetic IDX data (and once on Fashion-MNIST)."""

from __future__ import annotations

import contextlib
import io
import itertools
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from helpers import (
    assert_one_line,
    fashion_mnist_dir,
    run_cli,
    torch_threads,
    write_learnable_data,
)
from lossland.cli import main
from lossland.cli._common import parse_model_args
from lossland.errors import LosslandError
from lossland.io import ModelSpec, load_checkpoint, save_checkpoint
from lossland.zoo import batches, build_model, fingerprint, load_fashion_mnist

# 160 samples in batches of 32: five steps, enough to move every weight, cheap on two cores.
QUICK = ["--limit", "160", "--batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_learnable_data(tmp_path_factory.mktemp("idx"))


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


def _train(data_dir: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    """Run ``lossland train`` without pytest's capsys (usable in module-scoped fixtures)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["train", "--data-dir", str(data_dir), "-o", str(out), *extra])
    return code, stdout.getvalue(), stderr.getvalue()


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def _identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def learned(data_dir: Path, out_dir: Path) -> tuple[Path, str]:
    """One epoch over all 600 synthetic samples (19 steps); seeds 0-7 reach 0.89-1.0."""
    out = out_dir / "learned.safetensors"
    args = ["--batch-size", "32", "--lr", "0.003", "--seed", "1", "--no-progress"]
    code, stdout, stderr = _train(data_dir, out, *args)
    assert code == 0, stderr
    return out, stdout


@pytest.fixture(scope="module")
def quick_run(data_dir: Path, out_dir: Path) -> Path:
    """Five Adam steps with seed 0: the reference for determinism, SGD and --init tests."""
    out = out_dir / "quick.safetensors"
    code, _, stderr = _train(data_dir, out, *QUICK)
    assert code == 0, stderr
    return out


# --- a successful run ---------------------------------------------------------------------------


def test_train_learns_the_synthetic_task(learned: tuple[Path, str]) -> None:
    path, stdout = learned
    results = load_checkpoint(path).metadata["results"]
    assert results["test_accuracy"] >= 0.8
    assert results["steps"] == 19  # ceil(600 / 32)
    assert f"test accuracy {results['test_accuracy']:.4f}" in stdout
    assert str(path) in stdout


def test_checkpoint_metadata(learned: tuple[Path, str], data_dir: Path) -> None:
    path, _ = learned
    checkpoint = load_checkpoint(path)
    meta = checkpoint.metadata
    assert checkpoint.model_spec == ModelSpec("small", {"width": 1.0, "activation": "relu"})
    assert meta["training"] == {
        "optimizer": "adam",
        "lr": 0.003,
        "betas": [0.9, 0.999],
        "momentum": 0.0,
        "batch_size": 32,
        "epochs": 1,
        "limit": None,
        "seed": 1,
        "init": None,
    }
    images, labels = load_fashion_mnist("train", data_dir=data_dir)
    assert meta["data"]["samples"] == 600
    assert meta["data"]["sha256"] == fingerprint(images, labels)
    results = meta["results"]
    assert 0.0 <= results["test_accuracy"] <= 1.0
    assert results["test_loss"] > 0
    assert results["device"] == "cpu"
    # The saved weights are the trained ones: they reproduce the recorded test accuracy.
    model = build_model(checkpoint.model_spec).eval()
    model.load_state_dict(checkpoint.state_dict)
    test_images, test_labels = load_fashion_mnist("test", data_dir=data_dir)
    with torch.no_grad():
        accuracy = (model(test_images).argmax(1) == test_labels).float().mean().item()
    # (one of the 200 samples may flip: evaluation ran in channels_last, this does not)
    assert accuracy == pytest.approx(results["test_accuracy"], abs=0.0051)


def test_same_seed_is_bit_identical(data_dir: Path, tmp_path: Path, quick_run: Path) -> None:
    rng_before = torch.random.get_rng_state()
    code, _, stderr = _train(data_dir, tmp_path / "again.safetensors", *QUICK)
    assert code == 0, stderr
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the caller's RNG is untouched
    assert _identical(_state(tmp_path / "again.safetensors"), _state(quick_run))


def test_different_seed_differs(data_dir: Path, tmp_path: Path, quick_run: Path) -> None:
    code, _, stderr = _train(data_dir, tmp_path / "seed1.safetensors", *QUICK, "--seed", "1")
    assert code == 0, stderr
    other, reference = _state(tmp_path / "seed1.safetensors"), _state(quick_run)
    assert other.keys() == reference.keys()
    assert not torch.equal(other["0.weight"], reference["0.weight"])
    assert load_checkpoint(tmp_path / "seed1.safetensors").metadata["training"]["seed"] == 1


def test_sgd_with_momentum(data_dir: Path, tmp_path: Path, quick_run: Path) -> None:
    out = tmp_path / "sgd.safetensors"
    args = [*QUICK, "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.05"]
    code, _, stderr = _train(data_dir, out, *args)
    assert code == 0, stderr
    training = load_checkpoint(out).metadata["training"]
    assert (training["optimizer"], training["momentum"], training["lr"]) == ("sgd", 0.9, 0.05)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        initial = build_model(ModelSpec("small")).state_dict()
    trained = _state(out)
    assert not torch.equal(trained["15.weight"], initial["15.weight"])  # it moved ...
    assert not torch.equal(trained["15.weight"], _state(quick_run)["15.weight"])  # ... not as Adam


# --- trajectories -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trajectory_run(data_dir: Path, out_dir: Path) -> Path:
    """Two epochs of 3 steps, a checkpoint every 2 steps."""
    out = out_dir / "traj.safetensors"
    args = ["--limit", "96", "--batch-size", "32", "--epochs", "2", "--save-every", "2"]
    code, _, stderr = _train(data_dir, out, *args, "--no-progress")
    assert code == 0, stderr
    return out


def test_save_every_writes_the_trajectory(trajectory_run: Path) -> None:
    folder = trajectory_run.with_name("traj_trajectory")
    assert sorted(p.name for p in folder.iterdir()) == [
        f"step_{s:07d}.safetensors" for s in (0, 2, 4, 6)
    ]
    steps = [load_checkpoint(folder / f"step_{s:07d}.safetensors") for s in (0, 2, 4, 6)]
    assert [c.metadata["step"] for c in steps] == [0, 2, 4, 6]
    assert all(c.model_spec == load_checkpoint(trajectory_run).model_spec for c in steps)
    # Step 0 is the seeded initialisation; the last step is the final checkpoint.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        initial = {
            k: v.contiguous() for k, v in build_model(ModelSpec("small")).state_dict().items()
        }
    assert _identical(steps[0].state_dict, initial)
    assert _identical(steps[-1].state_dict, _state(trajectory_run))
    for before, after in itertools.pairwise(steps):
        assert not torch.equal(before.state_dict["0.weight"], after.state_dict["0.weight"])


def test_save_every_keeps_the_final_step_when_it_does_not_divide(
    data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "odd.safetensors"
    code, _, stderr = _train(data_dir, out, *QUICK, "--save-every", "2")  # 5 steps
    assert code == 0, stderr
    names = sorted(p.name for p in (tmp_path / "odd_trajectory").iterdir())
    assert names == [f"step_{s:07d}.safetensors" for s in (0, 2, 4, 5)]
    assert _identical(_state(tmp_path / "odd_trajectory" / names[-1]), _state(out))


def test_final_trajectory_epoch_label_does_not_depend_on_save_every(
    data_dir: Path, tmp_path: Path, trajectory_run: Path
) -> None:
    out = tmp_path / "every4.safetensors"
    args = ["--limit", "96", "--batch-size", "32", "--epochs", "2", "--save-every", "4"]
    code, _, stderr = _train(data_dir, out, *args, "--no-progress")
    assert code == 0, stderr
    final4 = load_checkpoint(tmp_path / "every4_trajectory" / "step_0000006.safetensors")
    final2 = load_checkpoint(
        trajectory_run.with_name("traj_trajectory") / "step_0000006.safetensors"
    )
    assert _identical(final4.state_dict, final2.state_dict)  # the same state ...
    assert final4.metadata["epoch"] == final2.metadata["epoch"]  # ... the same label


def test_init_starts_from_given_weights(data_dir: Path, tmp_path: Path, quick_run: Path) -> None:
    out = tmp_path / "from_init.safetensors"
    args = [*QUICK, "--init", str(quick_run), "--seed", "5", "--save-every", "100"]
    code, _, stderr = _train(data_dir, out, *args)
    assert code == 0, stderr
    step0 = _state(tmp_path / "from_init_trajectory" / "step_0000000.safetensors")
    assert _identical(step0, _state(quick_run))
    assert load_checkpoint(out).metadata["training"]["init"] == str(quick_run)
    assert not torch.equal(_state(out)["0.weight"], step0["0.weight"])


def test_init_from_another_model_is_refused(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = save_checkpoint(build_model(ModelSpec("small", {"width": 0.5})), tmp_path / "w.st")
    argv = ["train", "--data-dir", data_dir, "-o", tmp_path / "x.safetensors", *QUICK]
    code, _, err = run_cli([*argv, "--init", str(other)], capsys)
    assert code == 2
    assert err.startswith("lossland: error: --init checkpoint")
    assert "does not fit the model" in err
    assert_one_line(err)
    assert not (tmp_path / "x.safetensors").exists()


def test_user_model_trains_from_the_cli(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "lossland_test_train_user.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def mlp(hidden=32):
                return nn.Sequential(
                    nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10)
                )
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "user.safetensors"
    argv = ["train", "--data-dir", data_dir, "-o", out, *QUICK]
    code, _, err = run_cli(
        [*argv, "--model", "lossland_test_train_user:mlp", "--model-arg", "hidden=16"], capsys
    )
    sys.modules.pop("lossland_test_train_user", None)
    assert code == 0, err
    spec = load_checkpoint(out).model_spec
    assert spec == ModelSpec("lossland_test_train_user:mlp", {"hidden": 16})


# --- user errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            ["--model", "resnet"],
            "unknown model 'resnet': choose one of resnet56, resnet56_noshort, small, vgg",
        ),
        (["--model", "a:b:c"], "malformed import path 'a:b:c'"),
        (["--model", "no_such_module_xyz:f"], "cannot import module 'no_such_module_xyz'"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--limit", "0"], "--limit must be at least 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--lr", "0"], "--lr must be positive"),
        (["--save-every", "0"], "--save-every must be at least 1"),
        (["--model-arg", "oops"], "malformed --model-arg 'oops'"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    expected: str,
) -> None:
    out = tmp_path / "m.safetensors"
    code, stdout, err = run_cli(
        ["train", "--data-dir", data_dir, "-o", out, *QUICK, *extra], capsys
    )
    assert code == 2
    assert err.startswith("lossland: error: ")
    assert expected in err
    assert_one_line(err)
    assert stdout == ""
    assert not out.exists()


def test_missing_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-data"
    out = tmp_path / "m.safetensors"
    code, _, err = run_cli(["train", "--data-dir", missing, "-o", out, *QUICK], capsys)
    assert code == 2
    assert err.startswith("lossland: error: ")
    assert f"data directory {missing}" in err and "does not exist" in err
    assert_one_line(err)
    assert not out.exists()


def test_missing_output_folder(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "no" / "such" / "m.safetensors"
    code, _, err = run_cli(["train", "--data-dir", data_dir, "-o", out, *QUICK], capsys)
    assert code == 2
    assert err.startswith("lossland: error: ")
    assert f"output folder {out.parent} does not exist" in err
    assert_one_line(err)
    assert not out.parent.exists()


# --- helpers of the training loop ---------------------------------------------------------------


def test_batches_cover_every_sample_once_per_epoch() -> None:
    steps = list(batches(10, 4, seed=0, epochs=2))
    starts = [(e, i is None) for e, i in steps]
    assert starts == [(0, True), *[(0, False)] * 3, (1, True), *[(1, False)] * 3]
    epochs = [torch.cat([i for e, i in steps if e == k and i is not None]) for k in (0, 1)]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(10))
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled each epoch
    again = list(batches(10, 4, seed=0, epochs=2))
    assert all(
        (a[1] is None and b[1] is None) or torch.equal(a[1], b[1])
        for a, b in zip(steps, again, strict=True)
    )


def test_last_batch_of_fashion_mnist_has_32_samples() -> None:
    sizes = [len(i) for _, i in batches(60_000, 64, seed=0, epochs=1) if i is not None]
    assert len(sizes) == 938
    assert sizes[:-1] == [64] * 937
    assert sizes[-1] == 32


def test_parse_model_args() -> None:
    assert parse_model_args(["hidden=128", "name=abc", "sizes=[1, 2]", "flag=true", "x="]) == {
        "hidden": 128,
        "name": "abc",
        "sizes": [1, 2],
        "flag": True,
        "x": "",
    }
    for bad in ["novalue", "=3", "1x=2", "a-b=1"]:
        with pytest.raises(LosslandError, match="malformed --model-arg"):
            parse_model_args([bad])


# --- real data ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_fashion_mnist_2000_samples(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    directory = fashion_mnist_dir()
    if directory is None:
        pytest.skip(
            "no Fashion-MNIST copy at ../shared/data/fashion-mnist or $LOSSLAND_TEST_FMNIST"
        )
    images, _ = load_fashion_mnist("train", data_dir=directory, download=False)
    assert images.shape == (60_000, 1, 28, 28)
    out = tmp_path / "fmnist.safetensors"
    argv = ["train", "--data-dir", directory, "--limit", "2000", "-o", out, "--no-progress"]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    meta = load_checkpoint(out).metadata
    assert meta["data"]["samples"] == 2000
    assert meta["results"]["steps"] == 32  # ceil(2000 / 64)
    assert meta["results"]["test_accuracy"] >= 0.6
