"""Trajectory PCA: streamed Gram-matrix PCA vs numpy's SVD, exact projections, runs, ranges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from helpers import assert_one_line, run_cli
from lossland.core import auto_range, coordinates
from lossland.directions import (
    Directions,
    find_run,
    parse_pca_runs,
    pca_directions,
    projection,
    trajectory_plane,
)
from lossland.errors import LosslandError
from lossland.io import Surface

SHAPES = {"w": (3, 4), "b": (5,), "s": (), "conv": (2, 3, 2, 2)}


def _flat(state: dict[str, torch.Tensor], names: list[str]) -> np.ndarray:
    return np.concatenate([state[n].double().reshape(-1).numpy() for n in names])


def _states(
    t: int = 7, seed: int = 0
) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """A final state and t checkpoints around it (a low-rank drift plus noise), float64."""
    g = torch.Generator().manual_seed(seed)
    final = {k: torch.randn(s, generator=g, dtype=torch.float64) for k, s in SHAPES.items()}
    drift = [
        {k: torch.randn(s, generator=g, dtype=torch.float64) for k, s in SHAPES.items()}
        for _ in range(2)
    ]
    states = []
    for i in range(t):
        a, b = 3.0 * (t - 1 - i) / t, np.sin(i)
        states.append(
            {
                k: final[k]
                + a * drift[0][k]
                + b * drift[1][k]
                + 0.05 * torch.randn(SHAPES[k], generator=g, dtype=torch.float64)
                for k in SHAPES
            }
        )
    return final, states


def _save_run(folder: Path, states: list[dict[str, torch.Tensor]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(states):
        save_file(
            {k: v.contiguous() for k, v in s.items()}, str(folder / f"step_{i:07d}.safetensors")
        )
    return folder


@pytest.mark.parametrize("center", [True, False])
def test_pca_matches_numpy_svd(center: bool) -> None:
    final, states = _states()
    names = list(SHAPES)
    d = np.stack([_flat(s, names) - _flat(final, names) for s in states])
    if center:
        d = d - d.mean(axis=0)
    _, sv, vt = np.linalg.svd(d, full_matrices=False)
    directions = pca_directions(final, states, names=names, center=center)
    for got, want in ((directions.x, vt[0]), (directions.y, vt[1])):
        assert got is not None
        vec = _flat(got, names)
        assert abs(np.dot(vec, want)) == pytest.approx(1.0, abs=1e-10)  # same axis, unit norm
        np.testing.assert_allclose(np.abs(vec), np.abs(want), atol=1e-10)
    ratio = sv**2 / np.sum(sv**2)
    np.testing.assert_allclose(directions.info["explained_variance_ratio"], ratio[:2], rtol=1e-9)
    assert directions.kind == "pca" and directions.norm == "none"
    # Sign convention: the start of training has negative coordinates.
    start = projection(states[:1], directions, final).coords[0]
    assert start[0] < 0 and start[1] < 0


def test_pca_streamed_from_files_in_small_chunks_equals_in_memory(tmp_path: Path) -> None:
    final, states = _states(t=6, seed=3)
    run = _save_run(tmp_path / "run", states)
    files = sorted(run.iterdir())
    in_memory = pca_directions(final, states)
    # 300 bytes per chunk: every chunk is a few rows of a tensor, pieces of several tensors.
    streamed = pca_directions(final, files, max_chunk_bytes=300)
    for a, b in ((in_memory.x, streamed.x), (in_memory.y, streamed.y)):
        assert a is not None and b is not None
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-12)


def test_projection_is_exact_for_points_in_a_skewed_plane() -> None:
    g = torch.Generator().manual_seed(5)
    origin = {k: torch.randn(s, generator=g, dtype=torch.float64) for k, s in SHAPES.items()}
    x = {k: torch.randn(s, generator=g, dtype=torch.float64) for k, s in SHAPES.items()}
    # y is far from orthogonal to x: the cosine shortcut would be wrong, least squares is not.
    y = {
        k: 0.8 * x[k] + 0.3 * torch.randn(s, generator=g, dtype=torch.float64)
        for k, s in SHAPES.items()
    }
    directions = Directions(x=x, y=y, kind="pca", norm="none", ignore="none")
    assert abs(directions.cosine or 0) > 0.9
    coefs = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (-2.5, 0.75), (3.25, -1.5)]
    points = [{k: origin[k] + a * x[k] + b * y[k] for k in SHAPES} for a, b in coefs]
    result = projection(points, directions, origin)
    np.testing.assert_allclose(result.coords, np.array(coefs), rtol=0, atol=1e-12)
    assert result.off_plane < 1e-12


def test_projection_of_points_off_the_plane_is_least_squares() -> None:
    g = torch.Generator().manual_seed(6)
    names = list(SHAPES)
    origin = {k: torch.zeros(s, dtype=torch.float64) for k, s in SHAPES.items()}
    x = {k: torch.randn(s, generator=g, dtype=torch.float64) for k, s in SHAPES.items()}
    y = {k: torch.randn(s, generator=g, dtype=torch.float64) for k, s in SHAPES.items()}
    points = [
        {k: torch.randn(s, generator=g, dtype=torch.float64) for k, s in SHAPES.items()}
        for _ in range(4)
    ]
    basis = np.stack([_flat(x, names), _flat(y, names)], axis=1)
    want = np.stack([np.linalg.lstsq(basis, _flat(p, names), rcond=None)[0] for p in points])
    result = projection(points, Directions(x=x, y=y), origin)
    np.testing.assert_allclose(result.coords, want, rtol=1e-10, atol=1e-12)
    residuals = [
        np.linalg.norm(_flat(p, names) - basis @ c) for p, c in zip(points, want, strict=True)
    ]
    np.testing.assert_allclose(result.residual, residuals, rtol=1e-8)


def test_two_runs_share_one_plane(tmp_path: Path) -> None:
    final, states = _states(t=6, seed=1)
    _, other = _states(t=5, seed=2)
    run1 = _save_run(tmp_path / "adam", [*states, final])
    run2 = _save_run(tmp_path / "sgd", other)
    plane = trajectory_plane(final, [run1, run2])
    assert set(plane.trajectories) == {"adam", "sgd"}
    assert plane.trajectories["adam"].shape == (7, 2)
    assert plane.trajectories["sgd"].shape == (5, 2)
    np.testing.assert_allclose(plane.trajectories["adam"][-1], [0.0, 0.0], atol=1e-12)
    assert plane.directions.info["pca_checkpoints"] == 12
    label = plane.attrs["axis_labels"][0]
    assert label.startswith("PC1 (") and label.endswith(" %)")
    # Only run 1 defines the plane: same as a PCA of run 1 alone; run 2 is still projected.
    only_first = trajectory_plane(final, [run1, run2], pca_runs="1")
    alone = trajectory_plane(final, [run1])
    assert only_first.directions.fingerprint() == alone.directions.fingerprint()
    assert set(only_first.trajectories) == {"adam", "sgd"}
    assert only_first.attrs["pca_runs"] == [1]


def test_parse_pca_runs() -> None:
    assert parse_pca_runs("all", 3) == [0, 1, 2]
    assert parse_pca_runs("3,1", 3) == [0, 2]
    for bad in ("0", "4", "x", ""):
        with pytest.raises(LosslandError) as info:
            parse_pca_runs(bad, 3)
        assert_one_line(str(info.value))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=30),
    st.integers(3, 80),
)
def test_auto_range_covers_the_points_with_zero_exactly_on_the_grid(
    values: list[float], num: int
) -> None:
    spec = auto_range(np.array(values), f"auto:{num}")
    grid = coordinates(spec, name="x")
    assert len(grid) == num
    assert grid[0] <= min([*values, 0.0]) and grid[-1] >= max([*values, 0.0])
    assert np.count_nonzero(grid == 0.0) == 1  # the final model itself is a grid point


def test_find_run_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for folder, words in (
        (tmp_path / "missing", "not found"),
        (tmp_path / "empty", "holds no checkpoints"),
        (tmp_path / "file.txt", "is not a folder"),
    ):
        with pytest.raises(LosslandError, match=words) as info:
            find_run(folder)
        assert_one_line(str(info.value))


def test_find_run_orders_by_step(tmp_path: Path) -> None:
    _, states = _states(t=3)
    folder = tmp_path / "run"
    folder.mkdir()
    for step, s in zip((100, 5, 20), states, strict=True):
        save_file(s, str(folder / f"step_{step:07d}.safetensors"))
    assert [p.name for p in find_run(folder).checkpoints] == [
        "step_0000005.safetensors",
        "step_0000020.safetensors",
        "step_0000100.safetensors",
    ]


def test_pca_errors(tmp_path: Path) -> None:
    final, states = _states(t=4)
    with pytest.raises(LosslandError, match="at least 3 checkpoints"):
        pca_directions(final, states[:2])
    with pytest.raises(LosslandError, match="fewer than two directions"):
        pca_directions(final, [final, final, final])
    wrong = [{**s, "w": torch.zeros(4, 3, dtype=torch.float64)} for s in states]
    with pytest.raises(LosslandError, match="another model") as info:
        pca_directions(final, wrong)
    assert_one_line(str(info.value))
    missing = [{k: v for k, v in s.items() if k != "b"} for s in states]
    with pytest.raises(LosslandError, match="b missing"):
        pca_directions(final, missing)
    bad = _save_run(tmp_path / "nan", [*states[:2], {**states[2], "b": torch.full((5,), np.nan)}])
    with pytest.raises(LosslandError, match="NaN") as info:
        pca_directions(final, sorted(bad.iterdir()))
    assert_one_line(str(info.value))


# --- the CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_runs(fashion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Adam and SGD runs of the small model (width 0.25) from one start, 5 checkpoints each."""
    from lossland.cli import main

    folder = tmp_path_factory.mktemp("runs")
    common = [
        "--data-dir",
        str(fashion_dir),
        "--limit",
        "160",
        "--batch-size",
        "40",
        "--width",
        "0.25",
        "--save-every",
        "1",
        "--no-progress",
    ]
    adam = folder / "adam.safetensors"
    assert main(["train", *common, "-o", str(adam)]) == 0
    sgd = folder / "sgd.safetensors"
    start = folder / "adam_trajectory" / "step_0000000.safetensors"
    assert (
        main(
            [
                "train",
                *common,
                "-o",
                str(sgd),
                "--optimizer",
                "sgd",
                "--lr",
                "0.1",
                "--init",
                str(start),
            ]
        )
        == 0
    )
    return {
        "adam": adam,
        "sgd": sgd,
        "adam_run": folder / "adam_trajectory",
        "sgd_run": folder / "sgd_trajectory",
        "folder": folder,
    }


def test_cli_trajectory_surface_with_two_runs(
    trained_runs: dict[str, Path],
    fashion_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "traj.h5"
    code, stdout, err = run_cli(
        [
            "surface",
            trained_runs["adam"],
            "--trajectory",
            trained_runs["adam_run"],
            "--trajectory",
            trained_runs["sgd_run"],
            "--data-dir",
            fashion_dir,
            "--samples",
            "32",
            "--x",
            "auto:5",
            "--y",
            "auto:4",
            "-o",
            out,
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    assert "PCA of 10 checkpoints" in err
    assert "sharpness" in stdout and "curvature at the centre" in stdout
    s = Surface.load(out)
    assert s.shape == (4, 5) and s.complete
    assert set(s.trajectories) == {"adam_trajectory", "sgd_trajectory"}
    adam = s.trajectories["adam_trajectory"]
    np.testing.assert_allclose(adam[-1], [0.0, 0.0], atol=1e-9)  # the final checkpoint
    # Both runs start from the same weights: the same point on the plane.
    np.testing.assert_allclose(adam[0], s.trajectories["sgd_trajectory"][0], atol=1e-6)
    for points in s.trajectories.values():  # auto ranges: every path inside the grid
        assert s.x[0] <= points[:, 0].min() and points[:, 0].max() <= s.x[-1]
        assert s.y is not None and s.y[0] <= points[:, 1].min() and points[:, 1].max() <= s.y[-1]
    labels = s.attrs["axis_labels"]
    assert labels[0].startswith("PC1 (") and labels[1].startswith("PC2 (")
    assert s.attrs["directions_kind"] == "pca"
    assert s.attrs["sharpness"]["curvature_xx"] is not None

    # The directions file restores the paths and labels when reused.
    again = tmp_path / "again.h5"
    code, _, err = run_cli(
        [
            "surface",
            trained_runs["adam"],
            "--directions",
            f"{out}.directions.safetensors",
            "--data-dir",
            fashion_dir,
            "--samples",
            "32",
            "--x",
            "auto:3",
            "--y",
            "auto:3",
            "-o",
            again,
            "--no-progress",
            "--bn",
            "recompute",
        ],
        capsys,
    )
    assert code == 0, err
    reused = Surface.load(again)
    assert reused.attrs["axis_labels"] == labels
    np.testing.assert_allclose(reused.trajectories["adam_trajectory"], adam)


def test_cli_trajectory_errors(
    trained_runs: dict[str, Path],
    fashion_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lossland.io import ModelSpec, save_checkpoint
    from lossland.zoo import build_model

    other = tmp_path / "other_run"
    spec = ModelSpec("small", {"width": 0.5})
    other.mkdir()
    with torch.random.fork_rng():
        for i in range(3):
            save_checkpoint(build_model(spec), other / f"step_{i:07d}.safetensors", spec=spec)
    (tmp_path / "empty").mkdir()
    base = [
        "surface",
        trained_runs["adam"],
        "--data-dir",
        fashion_dir,
        "--samples",
        "16",
        "-o",
        tmp_path / "x.h5",
        "--no-progress",
    ]
    cases = [
        (["--trajectory", tmp_path / "missing"], "not found"),
        (["--trajectory", tmp_path / "empty"], "holds no checkpoints"),
        (["--trajectory", other], "another model"),
        (["--trajectory", trained_runs["adam_run"], "--pca-runs", "2"], "not there"),
        (["--trajectory", trained_runs["adam_run"], "--to", trained_runs["sgd"]], "--to"),
        (["--trajectory", trained_runs["adam_run"], "--x", "auto:2"], "at least 3 points"),
        (["--pca-runs", "1"], "needs --trajectory"),
    ]
    for extra, words in cases:
        code, _, err = run_cli([*base, *extra], capsys)
        assert code == 2, (extra, err)
        assert words in err, (extra, err)
        assert_one_line(err)


def test_trajectory_surface_api(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    from lossland.run import trajectory_surface

    g = torch.Generator().manual_seed(0)
    data = (torch.rand(24, 1, 28, 28, generator=g), torch.randint(0, 10, (24,), generator=g))
    s = trajectory_surface(
        trained_runs["adam"],
        [trained_runs["adam_run"]],
        data,
        x="auto:5",
        y="auto:5",
        out=tmp_path / "api.h5",
        progress=False,
    )
    assert s.complete and "adam_trajectory" in s.trajectories
    assert Surface.load(tmp_path / "api.h5").attrs["axis_labels"] == s.attrs["axis_labels"]


def test_refused_trajectory_rerun_leaves_the_surface_directions_be(
    trained_runs: dict[str, Path],
    fashion_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "s.h5"
    common = ["--data-dir", fashion_dir, "--samples", "16", "-o", out, "--no-progress"]
    beside = Path(f"{out}.directions.safetensors")
    first = ["surface", trained_runs["adam"], "--x", "-1:1:3", "--save-directions", beside]
    code, _, err = run_cli([*first, *common], capsys)
    assert code == 0, err
    saved = beside.read_bytes()
    # A PCA plane of other directions into the same file is refused, and must not have replaced
    # the directions that the existing surface was computed with.
    args = ["surface", trained_runs["adam"], "--trajectory", trained_runs["adam_run"], *common]
    code, _, err = run_cli([*args, "--x", "auto:3", "--y", "auto:3"], capsys)
    assert code == 2 and "other settings" in err, err
    assert beside.read_bytes() == saved
