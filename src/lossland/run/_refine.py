"""Adaptive refinement: evaluate a coarse grid, then only the points that interpolation cannot
be trusted to give within ``tol`` in ln(loss), level by level down to the full grid.

Level 0 is the lattice of every ``s``-th index per axis (``s`` a power of two leaving at least
MIN_POINTS per axis, the last index always included). Level k halves the stride: each new
point's ln(loss) is predicted from the coarser lattice by 4-point (tensor-product) Lagrange
interpolation, and also linearly and by the two one-sided quadratics; where these disagree by
more than ``tol``/2 — a margin of two on that local error estimate — or a stencil is incomplete
or non-finite, the point is evaluated, else it takes the cubic prediction. Features narrower
than the coarsest spacing (a spike, a kink between lattice points) can be missed: the estimate
only sees what the lattice resolves. So tol is not a guaranteed bound: at the end a sample of
the interpolated points is evaluated and the error measured (``refine_check``), and the
neighbourhoods of those off by more than tol are evaluated too. Decisions depend only on
values already known (the sample is seeded), so a level is a plain set of pending points:
resuming, or sharing it over torchrun, works as for any grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
from scipy.ndimage import binary_dilation

from lossland.core import share_upper
from lossland.io import Surface

MIN_POINTS = 9  # per axis on the coarsest lattice: features wider than its spacing are seen


def coarsest_stride(n: int) -> int:
    """The largest power of two leaving at least MIN_POINTS lattice points on an axis of n."""
    stride = 1
    while (n - 1) // (stride * 2) >= MIN_POINTS - 1:
        stride *= 2
    return stride


def lattice(n: int, stride: int) -> np.ndarray:
    """Indices 0, stride, 2·stride, … and always n − 1."""
    return np.unique(np.append(np.arange(0, n, stride), n - 1))


def strides(shape: tuple[int, ...]) -> Iterator[int]:
    """The levels' strides, coarsest first, ending with 1."""
    stride = min(coarsest_stride(n) for n in shape)
    while stride >= 1:
        yield stride
        stride //= 2


def level_mask(shape: tuple[int, ...], stride: int) -> np.ndarray:
    """The points of the lattice of ``stride`` (on every axis)."""
    mask = np.zeros(shape, dtype=bool)
    mask[np.ix_(*[lattice(n, stride) for n in shape])] = True
    return mask


# Stencils (points, shift) of the predictions compared: cubic (the one kept), linear, and the
# two one-sided quadratics, which disagree across a kink that the others smooth over.
STENCILS = ((4, 0), (2, 0), (3, -1), (3, 1))


def predict(values: np.ndarray, coords: list[np.ndarray], stride: int) -> list[np.ndarray]:
    """Predictions (one per STENCILS entry) of every point of the lattice of ``stride`` from
    the values on the lattice of ``2·stride``; NaN where a stencil is incomplete or
    non-finite."""
    coarse = [lattice(len(c), stride * 2) for c in coords]
    fine = [lattice(len(c), stride) for c in coords]
    known = values[np.ix_(*coarse)]
    out = []
    for order, shift in STENCILS:
        weights = [
            _weights(c, k, f, order=order, shift=shift)
            for c, k, f in zip(coords, coarse, fine, strict=True)
        ]
        full = np.full(values.shape, np.nan)
        full[np.ix_(*fine)] = _apply(known, weights)
        out.append(full)
    return out


def _weights(
    coords: np.ndarray, coarse: np.ndarray, fine: np.ndarray, *, order: int, shift: int = 0
) -> np.ndarray:
    """(len(fine), len(coarse)) Lagrange weights of ``order`` coarse points around each fine
    index (moved by ``shift``; at the edges one fewer is allowed for even orders); a row of
    NaN where the stencil does not fit."""
    out = np.zeros((len(fine), len(coarse)))
    xs = coords[coarse]
    for row, index in enumerate(fine):
        hit = np.flatnonzero(coarse == index)
        if len(hit):  # on the coarse lattice: its own value
            out[row, hit[0]] = 1.0
            continue
        upper = int(np.searchsorted(coarse, index))
        # The nearest coarse points around the index: for an odd order, one more on the side
        # ``shift`` points to (left: l−1, l, u; right: l, u, u+1).
        start = upper - order // 2 if order % 2 == 0 else upper - (2 if shift < 0 else 1)
        stop = start + order
        start, stop = max(start, 0), min(stop, len(coarse))
        if stop - start < (order if order % 2 else max(2, order - 1)):
            out[row] = np.nan
            continue
        nodes = xs[start:stop]
        x = coords[index]
        for k in range(len(nodes)):  # Lagrange basis polynomial k at x
            others = np.delete(nodes, k)
            out[row, start + k] = np.prod((x - others) / (nodes[k] - others))
    return out


def _apply(values: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    """Tensor-product interpolation: contract each axis of ``values`` with its weights. A NaN
    weight or a non-finite value used with a non-zero weight gives NaN."""
    out = values
    for axis, w in enumerate(weights):
        finite_w = np.nan_to_num(w)
        moved = np.moveaxis(out, axis, -1)
        bad = ~np.isfinite(moved)
        result = np.tensordot(np.where(bad, 0.0, moved), finite_w.T, axes=([-1], [0]))
        spoiled = np.tensordot(bad.astype(float), (finite_w != 0).T.astype(float), axes=([-1], [0]))
        result = np.where(spoiled > 0, np.nan, result)
        result[..., np.isnan(w).any(axis=1)] = np.nan
        out = np.moveaxis(result, -1, axis)
    return out


def decide(
    values: np.ndarray, coords: list[np.ndarray], stride: int, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """For the level of ``stride``: (points to evaluate, cubic predictions for the others; the
    first level evaluates its whole lattice).

    ``values`` holds ln(loss) where known (evaluated or interpolated), NaN elsewhere; the
    points of the coarser lattice must all be known."""
    if stride == max(strides(values.shape)):
        return level_mask(values.shape, stride), np.full(values.shape, np.nan)
    new = level_mask(values.shape, stride) & ~level_mask(values.shape, stride * 2)
    cubic, linear, *sided = predict(values, coords, stride)
    # The one-sided quadratics only count where they fit (not at the lattice's edges).
    spread = np.abs(cubic - linear)
    for p in sided:
        spread = np.where(np.isfinite(p), np.maximum(spread, np.abs(p - cubic)), spread)
    trusted = np.isfinite(spread) & (spread <= tol / 2)
    return new & ~trusted, np.where(new & trusted, cubic, np.nan)


def refined(
    result: Surface,
    evaluate: Callable[[Surface, np.ndarray, str], Surface],
    tol: float,
    *,
    measured: np.ndarray | None = None,
) -> Surface:
    """Drive ``evaluate`` (which computes a mask of points, its progress bar named by the
    third argument: the level) level by level; evaluate ``measured`` (the points the sharpness
    measures read); check a sample of the interpolated points against tol (:func:`_verify`);
    then fill the points left out with their predictions, marked in ``interpolated``."""
    shape = result.shape
    coords = [result.x] if result.y is None else [result.y, result.x]
    known = np.full(shape, np.nan)
    filled = np.zeros(shape, dtype=bool)
    levels = len(list(strides(shape)))
    for level, stride in enumerate(strides(shape)):
        need, predicted = decide(known, coords, stride, tol)
        pending = need & ~result.evaluated
        if pending.any():
            label = f"refine {level + 1}/{levels}"
            result = evaluate(result, pending.reshape(-1, len(result.x)), label)
        trusted = np.isfinite(predicted)
        known[trusted], filled[trusted] = predicted[trusted], True
        # Evaluated points (of this level, or already in a resumed file) use their values.
        known = np.where(result.evaluated, _log(result.loss), known)
    if measured is not None and (measured & ~result.evaluated).any():
        result = evaluate(
            result, (measured & ~result.evaluated).reshape(-1, len(result.x)), "refine centre"
        )
    result, check = _verify(result, evaluate, known, filled, tol)
    interpolated = filled & ~result.evaluated
    result.loss[interpolated] = np.exp(known[interpolated])
    result.done[interpolated] = True
    flags = np.zeros(shape, dtype=bool) if result.interpolated is None else result.interpolated
    flags[interpolated] = True
    return replace(result, interpolated=flags).with_attrs(
        evaluated_fraction=float(np.mean(~flags)), refine_check=check
    )


CHECK_SHARE = 0.03  # of the interpolated points, sampled in each round of the check
CHECK_POINTS = (30, 400)  # at least (or a third of the interpolated), at most, a round
CHECK_ROUNDS = 3


def _verify(
    result: Surface,
    evaluate: Callable[[Surface, np.ndarray, str], Surface],
    predicted: np.ndarray,
    filled: np.ndarray,
    tol: float,
) -> tuple[Surface, dict[str, Any]]:
    """TOL bounds a local error *estimate*; this measures the error itself. Each round
    evaluates a seeded random sample of the points still interpolated and compares the
    evaluated ln(loss) with the prediction; around each point off by more than tol, every
    interpolated point within half the coarsest spacing is evaluated, and another round
    samples what is left. The last round's sample is what is reported (``refine_check``): its
    largest error, how many exceeded tol, and a 95 % upper bound on the share of the
    remaining interpolated points that do (exact binomial)."""
    rng = np.random.default_rng(0)
    width = max(1, max(strides(result.shape)) // 2)
    rounds: list[dict[str, Any]] = []
    for round_ in range(CHECK_ROUNDS):
        left = np.flatnonzero(filled & ~result.evaluated)
        if not len(left):
            break
        low, high = CHECK_POINTS
        # A third at most: on a small grid the check must not evaluate everything.
        n = min(max(1, len(left) // 3), max(low, min(high, math.ceil(CHECK_SHARE * len(left)))))
        picked = np.sort(rng.choice(left, size=n, replace=False))
        mask = np.zeros(result.shape, dtype=bool)
        mask.flat[picked] = True
        result = evaluate(result, mask.reshape(-1, len(result.x)), f"refine check {round_ + 1}")
        errors = np.abs(_log(result.loss).flat[picked] - predicted.flat[picked])
        bad = ~(errors <= tol)  # a NaN (non-finite loss) counts as off
        rounds.append(_round(len(left), errors, int(bad.sum())))
        if not bad.any():
            break
        off = np.zeros(result.shape, dtype=bool)
        off.flat[picked[bad]] = True
        near = binary_dilation(off, np.ones((2 * width + 1,) * off.ndim, dtype=bool))
        near &= filled & ~result.evaluated
        if near.any():
            result = evaluate(result, near.reshape(-1, len(result.x)), f"refine fix {round_ + 1}")
    last = (
        {}
        if not rounds
        else {
            "points": [_coordinates(result, int(i)) for i in picked],
            "predicted": np.exp(predicted.flat[picked]).tolist(),
            "errors": [float(e) if math.isfinite(e) else None for e in errors],
        }
    )
    return result, {"tol": tol, "rounds": rounds, "window": width, **last}


def _coordinates(result: Surface, flat: int) -> list[float]:
    """[x] or [x, y] of a flat grid index."""
    if result.y is None:
        return [float(result.x[flat])]
    i, j = divmod(flat, len(result.x))
    return [float(result.x[j]), float(result.y[i])]


def _round(interpolated: int, errors: np.ndarray, exceeded: int) -> dict[str, Any]:
    """One round of the check, JSON-ready."""
    finite = errors[np.isfinite(errors)]
    return {
        "interpolated": interpolated,
        "checked": len(errors),
        "max_error": float(finite.max()) if finite.size else None,
        "median_error": float(np.median(finite)) if finite.size else None,
        "exceeded": exceeded,
        "exceeded_share_upper95": share_upper(exceeded, len(errors)),
    }


def _log(loss: np.ndarray) -> np.ndarray:
    """ln(loss); a loss that is not positive or not finite makes its neighbours evaluated."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            np.isfinite(loss) & (loss > 0), np.log(np.where(loss > 0, loss, 1.0)), np.nan
        )
