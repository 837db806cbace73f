"""Helpers of the trust tests (test_files_run_no_code, test_user_files_kept,
test_inputs_checked): a small world of files (data, a checkpoint, a surface, a run folder), the
CLI run in-process with its outcome, and the command lines the tables run.

Not a conftest, and no fixtures: each file has its own autouse ``one_thread`` and its
module-scoped ``world`` (:func:`make_world`), as the other test files do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from faultkit import surface_args, write_checkpoint, write_data
from helpers import assert_one_line
from lossland.cli import main
from lossland.errors import LosslandError


def make_world(folder: Path) -> dict[str, Path]:
    """Data, a good checkpoint, a complete 3x3 surface of it (with its directions saved) and a
    run folder of three checkpoints, in ``folder``: each file's module-scoped ``world``."""
    data = write_data(folder / "data", n=32)
    ckpt = write_checkpoint(folder / "good.safetensors")
    good = folder / "good.h5"
    saved = f"{good}.directions.safetensors"  # random directions are saved only when asked
    assert main(surface_args(ckpt, good, data, "--save-directions", saved, grid="-1:1:3")) == 0
    runs = folder / "runs"
    runs.mkdir()
    for step in range(3):
        write_checkpoint(runs / f"step_{step:07d}.safetensors", seed=step + 1)
    return {"folder": folder, "data": data, "ckpt": ckpt, "good": good, "runs": runs}


def outcome(capsys: pytest.CaptureFixture[str], args: list[Any]) -> tuple[int, list[str]]:
    """Exit status and the lines lossland printed on stderr (any traceback fails the test)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("lossland:")]


def fails(capsys: pytest.CaptureFixture[str], args: list[Any], *expected: str) -> str:
    code, lines = outcome(capsys, args)
    errors = [line for line in lines if line.startswith("lossland: error:")]
    assert code == 2, lines
    assert len(errors) == 1, lines
    assert_one_line(errors[0])
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def api_fails(call: Callable[[], object], *expected: str) -> str:
    with pytest.raises(LosslandError) as info:
        call()
    message = str(info.value)
    assert_one_line(message)
    for text in expected:
        assert text in message, message
    return message


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder`` and its bytes."""
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def surface_cmd(w: dict[str, Path], ckpt: Path, out: Path, *extra: Any) -> list[Any]:
    return surface_args(ckpt, out, w["data"], *[str(e) for e in extra], grid="-1:1:3")


def line_cmd(w: dict[str, Path], ckpt: Path, out: Path, *extra: Any) -> list[Any]:
    """:func:`surface_cmd` on a 1-D line (no --y)."""
    args = surface_cmd(w, ckpt, out, *extra)
    at = args.index("--y")
    return args[:at] + args[at + 2 :]


def interpolate_cmd(w: dict[str, Path], a: Path, b: Path, out: Path) -> list[Any]:
    options = ["--samples", "all", "--x", "0:1:3", "--device", "cpu", "--no-progress"]
    return ["interpolate", a, b, "-o", out, "--data-dir", w["data"], *options]


def hessian_cmd(w: dict[str, Path], ckpt: Path, *extra: Any) -> list[Any]:
    options = ["--k", "1", "--probes", "0", "--iterations", "3", "--device", "cpu"]
    return ["hessian", ckpt, "--data-dir", w["data"], "--samples", "all", *options, *extra]


def train_cmd(w: dict[str, Path], out: Path, *extra: Any) -> list[Any]:
    options = ["--width", "0.25", "--limit", "32", "--no-progress"]
    return ["train", "--data-dir", w["data"], *options, "-o", out, *extra]


PRECIOUS = b"precious bytes the user owns\n"
