"""Training trajectories: PCA planes from a run's checkpoints, and the run's path on that plane.

Li et al. (2018, §7) take the checkpoints θ_0 … θ_T of a run, form d_t = θ_t − θ_final and use
the first two principal components of the d_t as the plane's directions; the path is drawn by
projecting every d_t onto the plane. Here:

* the principal components come from the T×T Gram matrix G = D·Dᵀ (D: checkpoints ×
  parameters), built chunk by chunk from the safetensors files (sliced reads, never a
  T × P matrix in memory) and decomposed in float64; a component is u = Dᵀ·v / √λ, assembled
  by streaming the files once more. Like sklearn's PCA in Li et al.'s code, the d_t are
  centred (``center=True``), so the explained variances are the usual ones;
* projections solve the 2×2 least-squares problem with the Gram matrix of the two stored
  directions, so points of the plane are recovered exactly even when the directions are not
  orthogonal (PCA directions are, but stored in float32, or user directions may not be);
* only parameters move by default (``names``): BatchNorm running statistics stay those of the
  final model (``--bn eval``); pass ``--bn recompute`` to recompute them at every point.

Several runs (e.g. Adam and SGD from one ``--init``) share one plane: the PCA runs over the
union of their checkpoints (or over the runs chosen with ``pca_runs``) relative to one final
point, and every run is projected onto it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from lossland.directions import Directions
from lossland.errors import LosslandError

if TYPE_CHECKING:
    from lossland.surface_file import Surface

State = Mapping[str, Tensor]
Source = State | Path  # a state dict in memory, or a checkpoint file read lazily
MAX_CHUNK_BYTES = 256 * 2**20  # float64 rows of all T checkpoints held at once while streaming
AUTO_POINTS = 51
AUTO_MARGIN = 0.2  # fraction of the projections' span added on each side of auto ranges


# --- reading checkpoints piece by piece ---------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    """Rows ``start:stop`` (first dimension) of tensor ``name``, i.e. its flat elements
    ``flat:flat + numel``; a 0-dim tensor is one piece with rows 0:1."""

    name: str
    start: int
    stop: int
    flat: int
    numel: int

    @classmethod
    def whole(cls, name: str, tensor: Tensor) -> _Piece:
        return cls(name, 0, _n_rows(tensor), 0, tensor.numel())


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _label(source: Source) -> str:
    return str(source) if isinstance(source, Path) else "state"


def _read(source: Source, pieces: Sequence[_Piece]) -> list[Tensor]:
    """The pieces of one checkpoint as flat tensors; safetensors files are sliced, not loaded."""
    if isinstance(source, Path) and _is_safetensors(source):
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(source), framework="pt") as handle:
                out = []
                for p in pieces:
                    sliced = handle.get_slice(p.name)
                    if len(sliced.get_shape()) == 0:
                        out.append(handle.get_tensor(p.name).reshape(-1))
                    else:
                        out.append(sliced[p.start : p.stop].reshape(-1))
                return out
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise LosslandError(
                f"checkpoint {source} is corrupt or truncated ({str(exc).splitlines()[0]}): "
                "re-save it or remove it from the run folder"
            ) from None
    state = _load_state(source)
    return [_rows(state[p.name], p.start, p.stop) for p in pieces]


def _rows(tensor: Tensor, start: int, stop: int) -> Tensor:
    return tensor.reshape(-1) if tensor.dim() == 0 else tensor[start:stop].reshape(-1)


def _load_state(source: Source) -> State:
    if isinstance(source, Path):
        from lossland.checkpoint import load_checkpoint

        return load_checkpoint(source).state_dict
    return source


def _shapes(source: Source, names: Sequence[str]) -> dict[str, tuple[int, ...] | None]:
    """Shapes of ``names`` in a checkpoint (None where missing), from the header only."""
    if isinstance(source, Path):
        if not source.is_file():
            raise LosslandError(f"checkpoint {source} not found: check the run folder")
        if _is_safetensors(source):
            from safetensors import SafetensorError, safe_open

            try:
                with safe_open(str(source), framework="pt") as handle:
                    keys = set(handle.keys())
                    return {
                        n: tuple(handle.get_slice(n).get_shape()) if n in keys else None
                        for n in names
                    }
            except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
                raise LosslandError(
                    f"checkpoint {source} is corrupt or truncated ({str(exc).splitlines()[0]}): "
                    "re-save it or remove it from the run folder"
                ) from None
    state = _load_state(source)
    return {n: tuple(state[n].shape) if n in state else None for n in names}


def check_compatible(sources: Sequence[Source], reference: State, names: Sequence[str]) -> None:
    """One-line error when a checkpoint lacks a tensor of ``reference`` or has another shape."""
    for source in sources:
        shapes = _shapes(source, names)
        bad = [
            f"{n} {'missing' if shapes[n] is None else shapes[n]} vs {tuple(reference[n].shape)}"
            for n in names
            if shapes[n] != tuple(reference[n].shape)
        ]
        if bad:
            raise LosslandError(
                f"checkpoint {_label(source)} holds another model than the final checkpoint "
                f"({len(bad)} tensors differ, e.g. {bad[0]}): use checkpoints of one architecture"
            )


def _chunks(reference: State, names: Sequence[str], rows_budget: int) -> Iterator[list[_Piece]]:
    """Groups of pieces with at most ``rows_budget`` elements each (one row may exceed it)."""
    group: list[_Piece] = []
    size = 0
    for name in names:
        t = reference[name]
        n_rows = 1 if t.dim() == 0 else t.shape[0]
        row = max(1, t.numel() // max(n_rows, 1))
        start = 0
        while start < n_rows:
            take = max(1, min(n_rows - start, (rows_budget - size) // row))
            if size and size + take * row > rows_budget:
                yield group
                group, size = [], 0
                continue
            group.append(_Piece(name, start, start + take, start * row, take * row))
            size += take * row
            start += take
    if group:
        yield group


def _deltas(sources: Sequence[Source], reference: State, pieces: Sequence[_Piece]) -> np.ndarray:
    """(T, c) float64 rows θ_t − θ_ref for one chunk of the tensors."""
    ref = torch.cat([_rows(reference[p.name], p.start, p.stop) for p in pieces]).double()
    out = np.empty((len(sources), ref.numel()), dtype=np.float64)
    for t, source in enumerate(sources):
        out[t] = (torch.cat(_read(source, pieces)).double() - ref).numpy()
    return out


# --- PCA -----------------------------------------------------------------------------------------


def default_names(state: State) -> list[str]:
    """Floating-point tensors that are not BatchNorm statistics (the model's weights)."""
    return [
        k
        for k, v in state.items()
        if v.is_floating_point() and k.rsplit(".", 1)[-1] not in ("running_mean", "running_var")
    ]


def pca_directions(
    final_state: State,
    checkpoints: Sequence[State] | Sequence[Path] | Sequence[Source],
    *,
    names: Sequence[str] | None = None,
    center: bool = True,
    max_chunk_bytes: int = MAX_CHUNK_BYTES,
) -> Directions:
    """The first two principal components of θ_t − θ_final over ``checkpoints``.

    Directions are unit vectors (norm "none") on the tensors ``names`` (default: the weights,
    not BatchNorm statistics); ``info`` holds the explained variance ratios. Checkpoints given as
    paths are streamed: memory is the two directions plus ``max_chunk_bytes``.
    """
    sources = [Path(s) if isinstance(s, (str, os.PathLike)) else s for s in checkpoints]
    names = list(names) if names is not None else default_names(final_state)
    if not names:
        raise LosslandError("the final checkpoint holds no floating-point weights to analyse")
    missing = [n for n in names if n not in final_state]
    if missing:
        raise LosslandError(f"the final checkpoint lacks {missing[0]}: pass the matching model")
    if len(sources) < (3 if center else 2):
        raise LosslandError(
            f"a PCA plane needs at least {3 if center else 2} checkpoints, got {len(sources)}: "
            "train with a smaller --save-every"
        )
    check_compatible(sources, final_state, names)
    n = len(sources)
    budget = max(1, max_chunk_bytes // (8 * n))
    chunks = list(_chunks(final_state, names, budget))

    gram = np.zeros((n, n), dtype=np.float64)
    for pieces in chunks:
        d = _deltas(sources, final_state, pieces)
        gram += d @ d.T
    if not np.all(np.isfinite(gram)):
        bad = int(np.flatnonzero(~np.isfinite(np.diag(gram)))[0])
        raise LosslandError(
            f"checkpoint {_label(sources[bad])} holds NaN or inf: the run diverged; remove it"
        )
    h = np.eye(n) - 1.0 / n if center else np.eye(n)
    centred = h @ gram @ h
    values, vectors = np.linalg.eigh((centred + centred.T) / 2)
    order = np.argsort(values)[::-1]
    values, vectors = np.maximum(values[order], 0.0), vectors[:, order]
    total = float(values.sum())
    if total <= 0 or values[1] <= 1e-12 * values[0]:
        raise LosslandError(
            "the checkpoints span fewer than two directions (identical weights?): "
            "save more checkpoints while training (--save-every) or pick another run"
        )
    # u_k = Dcᵀ v_k / √λ_k with Dc = H·D, so coefficients on the rows of D are H·v_k / √λ_k.
    coef = (h @ vectors[:, :2]) / np.sqrt(values[:2])
    # Sign: the first checkpoint (the start of training) lies at negative coordinates;
    # its coordinates relative to θ_final are d_0·u_k = (G·coef)_0k.
    coef *= np.where((gram @ coef)[0] > 0, -1.0, 1.0)

    x = {k: _empty(final_state[k]) for k in names}
    y = {k: _empty(final_state[k]) for k in names}
    for pieces in chunks:
        d = _deltas(sources, final_state, pieces)
        comps = torch.from_numpy(coef.T @ d)  # (2, c)
        offset = 0
        for p in pieces:
            for target, comp in ((x, comps[0]), (y, comps[1])):
                flat = target[p.name].view(-1)  # contiguous (see _empty): a view
                flat[p.flat : p.flat + p.numel].copy_(comp[offset : offset + p.numel])
            offset += p.numel
    ratio = (values[:2] / total).tolist()
    info = {
        "explained_variance_ratio": ratio,
        "explained_variance": (values[:2] / max(n - 1, 1)).tolist(),
        "pca_checkpoints": n,
        "pca_centered": center,
    }
    return Directions(x=x, y=y, kind="pca", norm="none", ignore="none", info=info)


def _empty(like: Tensor) -> Tensor:
    # Contiguous on the CPU whatever the reference's memory format, so flat views work.
    return torch.empty(tuple(like.shape), dtype=like.dtype)


# --- projection ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """Least-squares coordinates of points on the plane and how far each lies off it."""

    coords: np.ndarray  # (T, ndim)
    residual: np.ndarray  # (T,) ‖d − P·d‖: distance of each point from the plane
    distance: np.ndarray  # (T,) ‖d‖: distance of each point from the origin

    @property
    def off_plane(self) -> float:
        """Largest distance off the plane relative to the largest distance from the origin."""
        scale = float(self.distance.max()) if self.distance.size else 0.0
        return float(self.residual.max()) / scale if scale > 0 else 0.0


def projection(
    states: Sequence[Source] | Sequence[State] | Sequence[Path],
    directions: Directions,
    origin: State,
) -> Projection:
    """Coordinates c minimising ‖(θ_t − origin) − Σ c_k·dir_k‖ for every state, streamed.

    Uses the Gram matrix of the directions (not the cosine shortcut), so a point of the plane
    is recovered exactly whatever the angle between the directions.
    """
    dirs = [directions.x] if directions.y is None else [directions.x, directions.y]
    names = list(directions.x)
    gram = np.array(
        [
            [sum(float(torch.sum(a[k].double() * b[k].double())) for k in names) for b in dirs]
            for a in dirs
        ]
    )
    if abs(np.linalg.det(gram)) <= 1e-300 or np.any(np.diag(gram) <= 0):
        raise LosslandError("the directions are zero or parallel: no plane to project onto")
    sources = [Path(s) if isinstance(s, (str, os.PathLike)) else s for s in states]
    check_compatible(sources, origin, names)
    coords = np.empty((len(sources), len(dirs)))
    off = np.empty(len(sources))
    dist = np.empty(len(sources))
    pieces = [_Piece.whole(name, origin[name]) for name in names]
    for t, source in enumerate(sources):
        rhs = np.zeros(len(dirs))
        norm2 = 0.0
        # One checkpoint's weights at a time; the float64 differences one tensor at a time.
        tensors = _read(source, pieces)
        for name, tensor in zip(names, tensors, strict=True):
            d = tensor.double() - origin[name].reshape(-1).double()
            rhs += [float(torch.dot(d, v[name].reshape(-1).double())) for v in dirs]
            norm2 += float(torch.dot(d, d))
        c = np.linalg.solve(gram, rhs)
        # The residual summed directly (‖d‖² − cᵀGc would cancel catastrophically).
        residual2 = 0.0
        for name, tensor in zip(names, tensors, strict=True):
            r = tensor.double() - origin[name].reshape(-1).double()
            for ck, v in zip(c, dirs, strict=True):
                r -= float(ck) * v[name].reshape(-1).double()
            residual2 += float(torch.dot(r, r))
        coords[t] = c
        off[t] = math.sqrt(residual2)
        dist[t] = math.sqrt(norm2)
    return Projection(coords, off, dist)


def _n_rows(t: Tensor) -> int:
    return 1 if t.dim() == 0 else int(t.shape[0])


def project(
    states: Sequence[Source] | Sequence[State] | Sequence[Path],
    directions: Directions,
    origin: State,
) -> np.ndarray:
    """(T, 2) least-squares coordinates of ``states`` on the plane through ``origin``."""
    return projection(states, directions, origin).coords


# --- runs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A training run's checkpoints (``lossland train --save-every``), in step order."""

    name: str
    folder: Path
    checkpoints: tuple[Path, ...]


def find_run(folder: str | os.PathLike[str]) -> Run:
    """The checkpoints in a run folder: ``step_*.safetensors`` sorted by step, else all
    ``*.safetensors`` / ``*.pt`` / ``*.pth`` files sorted by the number in their name."""
    path = Path(folder)
    if not path.exists():
        raise LosslandError(
            f"trajectory folder {path} not found: train with --save-every N to create it"
        )
    if not path.is_dir():
        raise LosslandError(
            f"--trajectory {path} is not a folder: give the run's checkpoint folder"
        )
    files = sorted(path.glob("step_*.safetensors"))
    if not files:
        files = [p for p in path.iterdir() if p.suffix in (".safetensors", ".pt", ".pth")]
    if not files:
        raise LosslandError(
            f"trajectory folder {path} holds no checkpoints: train with --save-every N"
        )
    files.sort(key=_step_key)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.resolve().name) or "run"
    return Run(name=name, folder=path, checkpoints=tuple(files))


def _step_key(path: Path) -> tuple[int, str]:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


def _unique_names(runs: Sequence[Run]) -> list[Run]:
    seen: dict[str, int] = {}
    out = []
    for run in runs:
        count = seen.get(run.name, 0) + 1
        seen[run.name] = count
        out.append(run if count == 1 else replace(run, name=f"{run.name}_{count}"))
    return out


def parse_pca_runs(text: str | Sequence[int] | None, count: int) -> list[int]:
    """``"all"`` / ``None`` → every run; ``"1,3"`` → those runs (1-based); returns 0-based."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "all"):
        return list(range(count))
    try:
        picked = (
            [int(p) for p in text.split(",") if p.strip()]
            if isinstance(text, str)
            else [int(p) for p in text]
        )
    except ValueError:
        raise LosslandError(
            f"--pca-runs must be 'all' or run numbers like 1 or 1,2, got {text!r}"
        ) from None
    if not picked or any(not 1 <= p <= count for p in picked):
        raise LosslandError(
            f"--pca-runs {text!r} names a run that is not there: choose from 1..{count} or 'all'"
        )
    return sorted({p - 1 for p in picked})


@dataclass(frozen=True)
class TrajectoryPlane:
    """PCA directions through the final point and every run's projected path."""

    directions: Directions
    runs: tuple[Run, ...]
    trajectories: Mapping[str, np.ndarray]
    off_plane: Mapping[str, float]  # see Projection.off_plane, per run
    axis_labels: tuple[str, str]
    pca_runs: tuple[int, ...]

    def attrs(self) -> dict[str, Any]:
        """What a surface file records about the plane (plots read ``axis_labels``)."""
        return {
            "axis_labels": list(self.axis_labels),
            "trajectory_runs": [str(r.folder) for r in self.runs],
            "trajectory_names": [r.name for r in self.runs],
            "trajectory_checkpoints": [len(r.checkpoints) for r in self.runs],
            "pca_runs": [i + 1 for i in self.pca_runs],
            "trajectory_off_plane": dict(self.off_plane),
        }


def trajectory_plane(
    final_state: State,
    runs: Sequence[Run] | Sequence[str | os.PathLike[str]],
    *,
    names: Sequence[str] | None = None,
    pca_runs: str | Sequence[int] | None = None,
    center: bool = True,
) -> TrajectoryPlane:
    """PCA over the checkpoints of the chosen runs (default all) relative to ``final_state``,
    then every run projected onto the plane."""
    found = _unique_names([r if isinstance(r, Run) else find_run(r) for r in runs])
    if not found:
        raise LosslandError("no trajectory given: pass --trajectory RUN_FOLDER")
    chosen = parse_pca_runs(pca_runs, len(found))
    names = list(names) if names is not None else default_names(final_state)
    for run in found:
        check_compatible(run.checkpoints, final_state, names)
    pool = [c for i in chosen for c in found[i].checkpoints]
    directions = pca_directions(final_state, pool, names=names, center=center)
    info = dict(directions.info)
    info["pca_runs"] = [found[i].name for i in chosen]
    directions = replace(directions, info=info)
    trajectories: dict[str, np.ndarray] = {}
    off: dict[str, float] = {}
    for run in found:
        proj = projection(run.checkpoints, directions, final_state)
        trajectories[run.name] = proj.coords
        off[run.name] = proj.off_plane
    ratio = info["explained_variance_ratio"]
    labels = (f"PC1 ({100 * ratio[0]:.1f} %)", f"PC2 ({100 * ratio[1]:.1f} %)")
    return TrajectoryPlane(
        directions=directions,
        runs=tuple(found),
        trajectories=trajectories,
        off_plane=off,
        axis_labels=labels,
        pca_runs=tuple(chosen),
    )


# --- grid ranges ---------------------------------------------------------------------------------


def is_auto(spec: str | None) -> bool:
    return spec is None or str(spec).strip().lower().startswith("auto")


def auto_range(values: np.ndarray, spec: str | None = None, *, margin: float = AUTO_MARGIN) -> str:
    """``min:max:num`` covering ``values`` and 0 with ``margin``·span on each side, with 0 on
    the grid (the final model is a grid point, so the sharpness figures have their centre).

    ``spec`` is ``auto`` or ``auto:NUM`` (default 51 points).
    """
    num = AUTO_POINTS
    if spec is not None and ":" in str(spec):
        try:
            num = int(str(spec).split(":", 1)[1])
        except ValueError:
            raise LosslandError(f"malformed range {spec!r}: write auto or auto:NUM") from None
    if num < 3:
        raise LosslandError(f"range {spec!r} needs at least 3 points: write e.g. auto:51")
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    high = max(0.0, float(finite.max())) if finite.size else 0.0
    if high - low <= 0:
        low, high = -1.0, 1.0
    pad = margin * (high - low)
    return grid_with_zero(low - pad, high + pad, num)


def grid_with_zero(low: float, high: float, num: int) -> str:
    """A ``min:max:num`` spec covering [low, high] (low ≤ 0 ≤ high) with 0.0 exactly on it.

    The step is a dyadic number (4 significant bits, at most 12.5 % above the tightest step),
    so numpy's linspace reproduces k·step exactly and the point at 0 is the model itself, not
    1e-17 away. When the tight step cannot put 0 on the grid, one spare interval is used.
    """
    if num < 3 or not low <= 0.0 <= high or not high > low:
        raise ValueError(f"cannot place a grid of {num} points with 0 on [{low}, {high}]")
    for intervals in (num - 1, num - 2):
        raw = (high - low) / intervals
        quantum = 2.0 ** (math.floor(math.log2(raw)) - 3)
        step = math.ceil(raw / quantum) * quantum
        below = min(math.ceil(-low / step), num - 1)
        if (num - 1 - below) * step >= high:
            break
    # Spare points split evenly between the two sides (a symmetric range stays symmetric).
    spare = num - 1 - below - math.ceil(high / step)
    below += max(spare, 0) // 2
    return f"{-below * step!r}:{(num - 1 - below) * step!r}:{num}"


# --- surfaces ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaneSetup:
    """What the CLI needs for a special plane: directions, ranges, attributes, trajectories."""

    directions: Directions
    x: str
    y: str | None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    trajectories: Mapping[str, np.ndarray] = field(default_factory=dict)


def trajectory_setup(
    final_state: State,
    runs: Sequence[Run] | Sequence[str | os.PathLike[str]],
    *,
    names: Sequence[str] | None = None,
    x: str | None = None,
    y: str | None = None,
    pca_runs: str | Sequence[int] | None = None,
) -> PlaneSetup:
    """The PCA plane plus grid ranges: ``auto``/``None`` ranges fit every projected path."""
    plane = trajectory_plane(final_state, runs, names=names, pca_runs=pca_runs)
    points = np.concatenate(list(plane.trajectories.values()))
    xs = auto_range(points[:, 0], x) if is_auto(x) else str(x)
    ys = auto_range(points[:, 1], y) if is_auto(y) else str(y)
    return PlaneSetup(
        directions=plane.directions,
        x=xs,
        y=ys,
        attrs=plane.attrs(),
        trajectories=plane.trajectories,
    )


def trajectory_surface(
    final_checkpoint: str | os.PathLike[str],
    run_dirs: Sequence[str | os.PathLike[str]],
    data: tuple[Tensor, Tensor],
    *,
    x: str | None = None,
    y: str | None = None,
    pca_runs: str | Sequence[int] | None = None,
    out: str | os.PathLike[str] | None = None,
    **surface_options: Any,
) -> Surface:
    """The loss surface on the PCA plane of ``run_dirs`` around ``final_checkpoint``, with each
    run's projected path in ``surface.trajectories`` and "PC1 (xx.x %)" axis labels.

    ``x``/``y``: ``None`` or ``"auto[:NUM]"`` fit the paths with a margin; else ``min:max:num``.
    ``surface_options`` go to :func:`lossland.landscape.surface` (``bn``, ``device``, ...).
    """
    from lossland.checkpoint import load_model
    from lossland.landscape import surface

    model, checkpoint = load_model(final_checkpoint)
    names = [n for n, _ in model.named_parameters()]
    setup = trajectory_setup(
        checkpoint.state_dict, list(run_dirs), names=names, x=x, y=y, pca_runs=pca_runs
    )
    attrs = {
        "checkpoint": str(final_checkpoint),
        "checkpoint_sha256": checkpoint.sha256 or "",
        **dict(surface_options.pop("attrs", None) or {}),
        **setup.attrs,
    }
    return surface(
        model,
        data,
        x=setup.x,
        y=setup.y,
        directions=setup.directions,
        out=Path(out) if out is not None else None,
        attrs=attrs,
        trajectories=setup.trajectories,
        **surface_options,
    )
