"""The kinds of directions, one row each (gpt-fast's ``from_name`` style): every fact about a
kind that more than one layer reads, so the figures, the command line, the run and the
producers agree.

A row is data: its producer is named by ``"module:function"`` (resolved with
:func:`lossland.core.import_object` when a plane is made), so core imports no producer. Code
that reads a file (figures, ``info``) looks its kind up with :func:`recorded_kind`, which
answers None for a kind this version does not know; :func:`kind` is for names the program
chose itself, and refuses an unknown one.

Adding a kind is one producer module in ``directions/`` plus one row here: a producer is a
function ``(request: PlaneRequest) -> (Plane, new directions or None)`` (see
:mod:`lossland.directions._plane`), and ``lossland surface --directions NAME`` then makes the
kind's plane, saves its directions as the row says and prints its notes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from lossland.core._grid import auto_points, auto_range, grid_with_zero
from lossland.core._schemes import Scheme
from lossland.core._text import printable
from lossland.errors import LosslandError, arg

Kind = Literal["random", "pca", "hessian", "models"]

# (the directions' info, the range asked for: None or auto[:NUM], trajectory points (N, 2),
# axis 0 or 1) → the min:max:num spec of that axis
RangeRule = Callable[[Mapping[str, Any], "str | None", np.ndarray, int], str]
# (norm, ignore) of zero directions → why they are zero, and the fix (one line's tail)
ZeroFix = Callable[[str, str], str]
# (the directions' info, the plane's attrs, seconds it took) → the notes the CLI prints
Notes = Callable[[Mapping[str, Any], Mapping[str, Any], float], list[str]]
# Where a plane's new directions live: "recipe": redrawn from the seed, norm and ignore the
# surface file records (saved only when asked); "beside": saved beside the surface by default
# (they cannot be redrawn cheaply); "inputs": read from the files the user gave.
Saved = Literal["recipe", "beside", "inputs"]

AXIS_LABELS = ("x (direction δ)", "y (direction η)")  # a file's own attrs["axis_labels"] win
NORM_TEXT = {"filter": "filter norm", "layer": "layer norm", "none": "not normalized"}
HESSIAN_RISE = 1.0  # auto range of Hessian planes: where ½·λ₁·r² reaches this loss rise


@dataclass(frozen=True, kw_only=True)
class DirectionKind:
    """Everything about one kind of directions that is not its producer's arithmetic."""

    name: str
    title: str  # the figure title after the loss: "train loss · <title>"
    title_1d: str | None = None  # a line's title where it differs: "random direction"
    norm_in_title: bool = False  # "(filter norm)" after the title
    axis_labels: tuple[str, str] = AXIS_LABELS
    default_range: RangeRule  # the grid of an axis asked for as None or auto[:NUM]
    y_by_default: bool  # a plane unless a line is asked for
    saved: Saved
    normalized: bool = False  # Li et al.'s normalization, applied again after orthogonalizing
    schemes: tuple[Scheme, ...] = get_args(Scheme)  # the interpolation schemes it allows
    between_models: bool = False  # a barrier (and its 1-D refinement), node losses, BN note
    zero_fix: ZeroFix | None = None  # None: "recreate the directions"
    parallel_fix: str = "recreate them"
    producer: str | None = None  # "lossland.directions._pca:pca_plane_for"; None: the run draws
    summary: str = ""  # what a plane of this kind is, for the command line's help
    notes: Notes | None = None

    def heading(self, *, ndim: int, norm: object = None) -> str:
        """The kind's part of a figure title: ``random directions (filter norm)``; ``norm`` is
        the surface's recorded norm (anything: only the known ones are shown)."""
        text = self.title_1d if ndim == 1 and self.title_1d is not None else self.title
        shown = NORM_TEXT.get(str(norm)) if self.norm_in_title else None
        return f"{text} ({shown})" if shown else text

    def why_zero(self, *, norm: str, ignore: str) -> str:
        """Why a direction of this kind is zero in every tensor, and the fix."""
        return "recreate the directions" if self.zero_fix is None else self.zero_fix(norm, ignore)


# --- default ranges -------------------------------------------------------------------------


def fixed(low: float, high: float, num: int) -> RangeRule:
    """``low:high:num`` (``auto:NUM`` keeps the range with NUM points)."""

    def rule(info: Mapping[str, Any], spec: str | None, points: np.ndarray, axis: int) -> str:
        asked = num if spec is None or ":" not in spec else auto_points(spec, name="xy"[axis])
        return f"{low:g}:{high:g}:{asked}"

    return rule


def around_points(info: Mapping[str, Any], spec: str | None, points: np.ndarray, axis: int) -> str:
    """A range around the projected trajectories (PCA planes)."""
    return auto_range(points[:, axis] if len(points) else np.zeros(0), spec, name="xy"[axis])


def hessian_range(eigenvalue: float, spec: str | None, *, axis: int = 0) -> str:
    """±√(2·HESSIAN_RISE/λ) with ``auto:NUM`` points: where the quadratic model rises by 1."""
    num = auto_points(spec, name="xy"[axis])
    if not eigenvalue > 0 or not math.isfinite(eigenvalue):
        return f"-1:1:{num}"
    r = math.sqrt(2 * HESSIAN_RISE / eigenvalue)
    return grid_with_zero(-r, r, num)


def from_curvature(info: Mapping[str, Any], spec: str | None, points: np.ndarray, axis: int) -> str:
    """One range for both axes, from λ₁, so the picture shows how much flatter v2 is."""
    values = info.get("eigenvalues") or [math.nan]
    return hessian_range(float(values[0]), spec, axis=axis)


# --- fixes ----------------------------------------------------------------------------------


def _random_zero(norm: str, ignore: str) -> str:
    if ignore == "biasbn":
        return (
            f"every parameter of this model is 1-D (biases, norm scales), which {arg('ignore')} "
            f"biasbn leaves still; pass {arg('ignore')} none (each then moves along itself)"
        )
    if norm != "none":
        return (
            f"the model's weights are zero and {arg('norm')} {norm} scales the "
            f"directions to them; pass {arg('norm')} none"
        )
    return "recreate the directions"


def _same_models(norm: str, ignore: str) -> str:
    return "the checkpoints hold the same weights; compare different checkpoints"


# --- notes: what the command line prints once a plane is made -------------------------------


def _pca_notes(info: Mapping[str, Any], attrs: Mapping[str, Any], seconds: float) -> list[str]:
    """The variance the plane explains, and the runs whose drawn path is only a shadow."""
    ratio = info["explained_variance_ratio"]
    lines = [
        f"PCA of {info['pca_checkpoints']} checkpoints: PC1 {100 * ratio[0]:.1f} %, "
        f"PC2 {100 * ratio[1]:.1f} % of the variance ({seconds:.1f} s)"
    ]
    lines += [
        f"note: run {printable(name)} lies far off the plane (up to {100 * off:.0f} % of its "
        "largest distance from the final point): its drawn path is a shadow"
        for name, off in attrs["trajectory_off_plane"].items()
        if off > 0.5
    ]
    return lines


def _hessian_notes(info: Mapping[str, Any], attrs: Mapping[str, Any], seconds: float) -> list[str]:
    """The eigenvalues that span the plane, and what finding them took."""
    values = ", ".join(f"λ{i + 1} = {v:.4g}" for i, v in enumerate(info["eigenvalues"]))
    return [
        f"Hessian eigenvalues {values} (Lanczos, {info['lanczos_iterations']} iterations, "
        f"{seconds:.1f} s)"
    ]


# --- the table ------------------------------------------------------------------------------

KINDS: Mapping[str, DirectionKind] = {
    row.name: row
    for row in (
        DirectionKind(
            name="random",
            title="random directions",
            title_1d="random direction",
            norm_in_title=True,
            default_range=fixed(-1, 1, 51),
            y_by_default=False,
            saved="recipe",
            normalized=True,
            zero_fix=_random_zero,
        ),
        DirectionKind(
            name="pca",
            title="PCA of the training trajectory",
            default_range=around_points,
            y_by_default=True,
            saved="beside",
            schemes=("li",),
            producer="lossland.directions._pca:pca_plane_for",
            summary="the PCA plane of training runs around the checkpoint, their paths drawn",
            notes=_pca_notes,
        ),
        DirectionKind(
            name="hessian",
            title="Hessian eigenvectors",
            title_1d="top Hessian eigenvector",
            default_range=from_curvature,
            y_by_default=True,
            saved="beside",
            schemes=("li",),
            producer="lossland.directions._hessian_plane:hessian_plane_for",
            summary="the plane of the top two Hessian eigenvectors at the checkpoint (unit norm; "
            "default range ±sqrt(2/λ1))",
            notes=_hessian_notes,
        ),
        DirectionKind(
            name="models",
            title="between checkpoints",
            axis_labels=("x (θ₂ − θ₁)", "y (θ₃ − θ₁)"),
            default_range=fixed(0, 1, 21),
            y_by_default=True,
            saved="inputs",
            between_models=True,
            zero_fix=_same_models,
            parallel_fix=(
                "the second and third checkpoints lie on one line through the first (the same "
                "checkpoint twice?)"
            ),
            producer="lossland.directions._models:models_plane_for",
            summary="the line (or plane) from the checkpoint to one (or two) others",
        ),
    )
}


def kind(name: str) -> DirectionKind:
    """The row of a kind the program names itself; an unknown name is a one-line error."""
    row = KINDS.get(name)
    if row is None:
        raise LosslandError(
            f"unknown kind of directions {name!r}: choose one of {', '.join(KINDS)}"
        )
    return row


def recorded_kind(value: object) -> DirectionKind | None:
    """The row of the kind a file records (``attrs["directions_kind"]``: any value at all), or
    None where it is not a kind this version knows."""
    return KINDS.get(value) if isinstance(value, str) else None
