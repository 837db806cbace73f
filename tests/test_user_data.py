"""The user's own model and data from the command line (--model, --data, --preset, --forward)
and the README's "your own model and data" examples, run as written."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import assert_one_line, run_cli
from lossland.io import Surface

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tiny_gpt2.py"
GPT2 = ["--model", "tiny_gpt2:make_model", "--data", "tiny_gpt2:make_loader"]


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gpt2")
    shutil.copy(EXAMPLE, folder / "tiny_gpt2.py")
    sys.path.insert(0, str(folder))
    try:
        import tiny_gpt2

        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(folder)
            tiny_gpt2.train(steps=10)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("tiny_gpt2", None)
    return folder


@pytest.fixture
def in_folder(gpt2_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI run from the folder holding tiny_gpt2.py, which is not on sys.path: the CLI
    itself makes the current folder importable."""
    monkeypatch.chdir(gpt2_folder)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(gpt2_folder))])
    monkeypatch.delitem(sys.modules, "tiny_gpt2", raising=False)
    return gpt2_folder


def test_gpt2_surface_pca_plane_and_hessian_from_the_cli(in_folder, capsys):
    grid = ["--x", "-0.5:0.5:3", "--y", "-0.5:0.5:3", "--no-progress"]
    common = ["gpt2.safetensors", *GPT2, "--preset", "causal_lm", "--samples", "16"]
    code, out, err = run_cli(["surface", *common, *grid, "-o", "s.h5"], capsys)
    assert code == 0, err
    s = Surface.load(in_folder / "s.h5")
    assert s.complete and s.attrs["loss"] == "causal_lm" and np.all(np.isfinite(s.loss))
    code, out, err = run_cli(
        ["surface", *common, "--trajectory", "gpt2_run", "--x", "auto:3", "--y", "auto:3",
         "--no-progress", "-o", "t.h5"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "gpt2_run" in Surface.load(in_folder / "t.h5").trajectories
    code, out, err = run_cli(
        ["hessian", *common, "--k", "2", "--probes", "1", "--iterations", "4"], capsys
    )
    assert code == 0, err
    assert re.search(r"λ1 = \d", out) and "trace" in out


def test_the_default_loss_is_refused_for_a_causal_lm_with_the_preset_named(in_folder, capsys):
    code, _, err = run_cli(["surface", "gpt2.safetensors", *GPT2, "--x", "0:0:1"], capsys)
    assert code == 2 and "causal_lm" in err
    assert_one_line(err)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--data", "nope"], "unknown --data 'nope'"),
        (["--data", "fashion-mnist", "--data-arg", "a=1"], "--data-arg is for a user"),
        (["--data", "tiny_gpt2:missing"], "has no 'missing'"),
        (["--data", "tiny_gpt2:VOCAB"], "is not callable"),
        (["--data", "tiny_gpt2:make_loader", "--data-arg", "bogus=1"], "cannot call"),
        (["--data", "tiny_gpt2:make_loader", "--preset", "nope"], "unknown --preset"),
        (["--preset", "causal_lm", "--loss", "torch:add"], "--preset sets forward and loss"),
        (["--data", "tiny_gpt2:make_loader", "--samples", "zero"], "--samples must be"),
    ],
)
def test_bad_data_arguments_are_one_line_errors(in_folder, capsys, extra, words):
    args = ["surface", "gpt2.safetensors", "--model", "tiny_gpt2:make_model", *extra]
    code, _, err = run_cli([*args, "--x", "0:0:1", "--no-progress"], capsys)
    assert code == 2 and words in err, err
    assert_one_line(err)


def test_a_seeded_subset_of_user_data(in_folder, capsys):
    args = ["surface", "gpt2.safetensors", *GPT2, "--preset", "causal_lm", "--x", "0:0:1"]
    code, _, err = run_cli([*args, "--samples", "20", "--no-progress", "-o", "sub.h5"], capsys)
    assert code == 0, err
    assert Surface.load(in_folder / "sub.h5").attrs["samples"] == 20


def test_the_evaluator_flag_equals_the_preset(in_folder, capsys):
    """--evaluator pkg.mod:obj (here a factory of lossland's) gives the preset's surface."""
    common = ["surface", "gpt2.safetensors", *GPT2, "--x", "-0.5:0.5:3", "--samples", "16"]
    losses = []
    for flags, out in ((["--preset", "causal_lm"], "p.h5"),
                       (["--evaluator", "lossland.presets:causal_lm"], "e.h5")):  # fmt: skip
        code, _, err = run_cli([*common, *flags, "--no-progress", "-o", out], capsys)
        assert code == 0, err
        losses.append(Surface.load(in_folder / out).loss)
    np.testing.assert_array_equal(losses[0], losses[1])


def _readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own model and data", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    examples = _readme_examples()
    assert len(examples) >= 2  # a DataLoader example and a Hugging Face one
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(EXAMPLE.parent))
    for code in examples:
        namespace: dict[str, object] = {}
        exec(compile(code, "README.md", "exec"), namespace)
        assert isinstance(namespace.get("s"), Surface), code
