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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lossland.core import Params, check_needs, dtype_kind, moves, pca_needs, select_params
from lossland.directions._directions import Directions
from lossland.directions._plane import Plane, PlaneRequest
from lossland.errors import LosslandError, arg
from lossland.io import is_safetensors, load_checkpoint

State = Mapping[str, Tensor]
Source = State | Path  # a state dict in memory, or a checkpoint file read lazily
MAX_CHUNK_BYTES = 256 * 2**20  # float64 rows of all T checkpoints held at once while streaming


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


def _label(source: Source) -> str:
    return str(source) if isinstance(source, Path) else "state"


def _read(source: Source, pieces: Sequence[_Piece]) -> list[Tensor]:
    """The pieces of one checkpoint as flat tensors; safetensors files are sliced, not loaded."""
    if isinstance(source, Path) and is_safetensors(source):
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
        return load_checkpoint(source).state_dict
    return source


def _shapes(source: Source, names: Sequence[str]) -> dict[str, tuple[int, ...] | None]:
    """Shapes of ``names`` in a checkpoint (None where missing), from the header only."""
    if isinstance(source, Path):
        if not source.is_file():
            raise LosslandError(f"checkpoint {source} not found: check the run folder")
        if is_safetensors(source):
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
    """The tensors that move (core.moving_dtype) and are not BatchNorm statistics (the
    model's weights)."""
    return [
        k
        for k, v in state.items()
        if moves(k, v.dtype, where="the final checkpoint")
        and k.rsplit(".", 1)[-1] not in ("running_mean", "running_var")
    ]


def _check_real(state: State, names: Sequence[str]) -> None:
    """PCA here is of real weights: complex (or integer) tensors are refused, never cast."""
    for n in names:
        if n in state and dtype_kind(state[n].dtype) != "real":
            raise LosslandError(
                f"the final checkpoint holds {n} as {str(state[n].dtype).removeprefix('torch.')}: "
                "PCA directions are of real floating-point weights only; use random or "
                "model-to-model directions for this model"
            )


def pca_directions(
    final_state: State,
    checkpoints: Sequence[State] | Sequence[Path] | Sequence[Source],
    *,
    names: Sequence[str] | None = None,
    center: bool = True,
    max_chunk_bytes: int = MAX_CHUNK_BYTES,
    allow_large: bool = False,
    params: Params | None = None,
) -> Directions:
    """The first two principal components of θ_t − θ_final over ``checkpoints``.

    Checkpoints given as paths are streamed: memory is the two directions plus
    ``max_chunk_bytes`` plus the T × T Gram matrix.

    Args:
        final_state: θ_final, the state dict the plane is centred on.
        checkpoints: the θ_t: state dicts, or checkpoint files (streamed).
        names: the tensors analysed (default: the weights, not BatchNorm statistics).
        center: subtract the mean of the θ_t − θ_final first (needs 3 checkpoints, else 2).
        max_chunk_bytes: how much of the checkpoints is read at a time.
        allow_large: read more than lossland's limit (1e11 checkpoint bytes, three passes).
        params: keeps the chosen ones of those tensors (:func:`lossland.core.select_params`):
            the PCA of the subset's trajectory.

    Returns:
        Unit :class:`Directions` (norm "none") of kind "pca"; ``info`` holds the explained
        variance ratios.

    Raises:
        LosslandError: too few checkpoints, checkpoints that do not match ``final_state``, a
            Gram matrix that cannot fit the memory, or a read above the limit without
            ``allow_large``.

    Example:
        >>> d = lossland.pca_directions(final.state_dict(), sorted(Path("run/").glob("*.pt")))
    """
    sources = [Path(s) if isinstance(s, (str, os.PathLike)) else s for s in checkpoints]
    names = _chosen(final_state, names, params)
    if not names:
        raise LosslandError("the final checkpoint holds no floating-point weights to analyse")
    missing = [n for n in names if n not in final_state]
    if missing:
        raise LosslandError(f"the final checkpoint lacks {missing[0]}: pass the matching model")
    _check_real(final_state, names)
    if len(sources) < (3 if center else 2):
        raise LosslandError(
            f"a PCA plane needs at least {3 if center else 2} checkpoints, got {len(sources)}: "
            f"train with a smaller {arg('save_every')}"
        )
    check_pca_cost(final_state, names, len(sources), allow_large=allow_large)
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
            f"save more checkpoints while training ({arg('save_every')}) or pick another run"
        )
    # u_k = Dcᵀ v_k / √λ_k with Dc = H·D, so coefficients on the rows of D are H·v_k / √λ_k.
    coef = (h @ vectors[:, :2]) / np.sqrt(values[:2])
    # Sign: the first checkpoint (the start of training) lies at negative coordinates;
    # its coordinates relative to θ_final are d_0·u_k = (G·coef)_0k.
    coef *= np.where((gram @ coef)[0] > 0, -1.0, 1.0)

    x, y = _components(sources, final_state, names, chunks, coef)
    ratio = (values[:2] / total).tolist()
    info = {
        "explained_variance_ratio": ratio,
        "explained_variance": (values[:2] / max(n - 1, 1)).tolist(),
        "pca_checkpoints": n,
        "pca_centered": center,
    }
    subset = None if params is None else tuple(names)
    return Directions(x=x, y=y, kind="pca", norm="none", ignore="none", info=info, params=subset)


def _chosen(state: State, names: Sequence[str] | None, params: Params | None) -> list[str]:
    """``names`` (default: the weights), only those ``params`` chooses when given."""
    names = list(names) if names is not None else default_names(state)
    chosen = select_params(params, [(n, state[n]) for n in names if n in state])
    return names if chosen is None else chosen


def check_pca_cost(
    final_state: State, names: Sequence[str], checkpoints: int, *, allow_large: bool
) -> None:
    """A PCA plane over ``checkpoints`` checkpoints of the tensors ``names``: its Gram matrix
    must fit the memory, its reads lossland's limit (see :func:`lossland.core.pca_needs`)."""
    tensors = [final_state[n] for n in names if n in final_state]
    params = sum(t.numel() for t in tensors)
    itemsize = max((t.element_size() for t in tensors), default=4)
    needs = pca_needs(checkpoints=checkpoints, params=params, itemsize=itemsize)
    check_needs(needs, allow_large=allow_large)


def _components(
    sources: Sequence[Source],
    final_state: State,
    names: Sequence[str],
    chunks: Sequence[Sequence[_Piece]],
    coef: np.ndarray,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The two components u_k = Dᵀ·coef[:, k], streamed chunk by chunk over the checkpoints."""
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
    return x, y


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

    Args:
        states: the θ_t: state dicts or checkpoint files.
        directions: the plane's directions.
        origin: the plane's origin (θ*).

    Returns:
        A :class:`Projection`: the coordinates (T, ndim), and how far each state lies off the
        plane and from the origin.

    Raises:
        LosslandError: states that do not hold the directions' tensors.

    Example:
        >>> p = lossland.projection(checkpoints, d, final.state_dict())
        >>> p.coords[:, 0], p.off_plane
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
            f"trajectory folder {path} not found: train with {arg('save_every')} N to create it"
        )
    if not path.is_dir():
        raise LosslandError(
            f"{arg('runs')} {path} is not a folder: give the run's checkpoint folder"
        )
    files = sorted(path.glob("step_*.safetensors"))
    if not files:
        files = [p for p in path.iterdir() if p.suffix in (".safetensors", ".pt", ".pth")]
    if not files:
        raise LosslandError(
            f"trajectory folder {path} holds no checkpoints: train with {arg('save_every')} N"
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
            f"{arg('pca_runs')} must be 'all' or run numbers like 1 or 1,2, got {text!r}"
        ) from None
    if not picked or any(not 1 <= p <= count for p in picked):
        raise LosslandError(
            f"{arg('pca_runs')} {text!r} names a run that is not there: choose from 1..{count} or "
            "'all'"
        )
    return sorted({p - 1 for p in picked})


def trajectory_plane(
    final_state: State,
    runs: Sequence[Run] | Sequence[str | os.PathLike[str]],
    *,
    names: Sequence[str] | None = None,
    pca_runs: str | Sequence[int] | None = None,
    center: bool = True,
    allow_large: bool = False,
    params: Params | None = None,
) -> Plane:
    """The PCA plane of training runs around ``final_state``, with every run projected onto it.

    Args:
        final_state: θ_final, the state dict the plane is centred on.
        runs: folders of checkpoints (or :class:`Run` values), one per training run.
        names, center, allow_large: as for :func:`pca_directions`.
        pca_runs: the runs whose checkpoints make the PCA (indices or a spec such as
            ``"1,3"``; default: all); every run is projected.

    Returns:
        A :class:`Plane` whose ``trajectories`` are the runs' coordinates and whose ``attrs``
        record the runs and the "PC1 (xx.x %)" axis labels.

    Raises:
        LosslandError: no run, an unreadable or mismatched checkpoint, or any refusal of
            :func:`pca_directions`.

    Example:
        >>> plane = lossland.trajectory_plane(final.state_dict(), ["run0/", "run1/"])
    """
    found = _unique_names([r if isinstance(r, Run) else find_run(r) for r in runs])
    if not found:
        raise LosslandError(f"no trajectory given: pass {arg('runs')} RUN_FOLDER")
    chosen = parse_pca_runs(pca_runs, len(found))
    names = _chosen(final_state, names, params)
    pool = [c for i in chosen for c in found[i].checkpoints]
    check_pca_cost(final_state, names, len(pool), allow_large=allow_large)  # before any read
    for run in found:
        check_compatible(run.checkpoints, final_state, names)
    directions = pca_directions(
        final_state, pool, names=names, center=center, allow_large=allow_large, params=params
    )
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
    return Plane(
        directions=directions,
        trajectories=trajectories,
        attrs={
            "axis_labels": list(labels),
            "trajectory_runs": [str(r.folder) for r in found],
            "trajectory_names": [r.name for r in found],
            "trajectory_checkpoints": [len(r.checkpoints) for r in found],
            "pca_runs": [i + 1 for i in chosen],
            "trajectory_off_plane": off,
        },
    )


def pca_plane_for(request: PlaneRequest) -> tuple[Plane, Directions]:
    """The producer of kind "pca": the plane of ``request.runs`` around the checkpoint (its
    parameters move). The directions the surface uses record the axis labels; the ones saved
    beside it also carry the projected paths, so a surface on them (reused as a directions
    file) draws the paths again."""
    names = [n for n, _ in request.model.named_parameters()]
    chosen = select_params(request.params, request.model.named_parameters())
    plane = trajectory_plane(
        request.state,
        list(request.runs),
        names=names if chosen is None else chosen,
        pca_runs=request.pca_runs,
        allow_large=request.allow_large,
    )
    plane = replace(plane, directions=plane.directions.restricted(chosen))  # records the subset
    labels = list(plane.attrs["axis_labels"])
    info = dict(plane.directions.info)
    used = replace(plane.directions, info={**info, "axis_labels": labels})
    paths = {k: np.asarray(v).tolist() for k, v in plane.trajectories.items()}
    saved = replace(plane.directions, info={**info, "trajectories": paths, "axis_labels": labels})
    return replace(plane, directions=used, x=request.x, y=request.y), saved
