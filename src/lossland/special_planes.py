"""The CLI's planes beyond random ones: training-trajectory PCA and Hessian eigenvectors.

``lossland surface`` calls :func:`special_plane` first; it returns None for the other kinds
(random directions, ``--to`` checkpoints, a directions file of another kind), which
:mod:`lossland.landscape` handles itself.

* ``--trajectory RUN [--trajectory RUN2 ...] [--pca-runs 1,2]``: PCA plane of the runs'
  checkpoints around CHECKPOINT (the final point), paths projected, "PC1 (xx.x %)" labels;
  omitted ranges (or ``auto``, ``auto:NUM``) fit the paths with a margin;
* ``--directions hessian``: the plane of the top two Hessian eigenvectors at CHECKPOINT on the
  surface's own sample set (BatchNorm in eval mode), unit norm; omitted ranges (or ``auto``)
  are ±√(2/λ₁) on both axes, where the quadratic model rises by 1 along the sharpest
  direction. (A line along v1: ``lossland hessian --k 1 --save-directions F`` then
  ``lossland surface --directions F``.)
* ``--directions FILE`` holding PCA directions written by an earlier trajectory run: its
  stored paths and labels come back with it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor, nn

from lossland.directions import Directions
from lossland.errors import LosslandError
from lossland.trajectory import auto_range, grid_with_zero, is_auto, trajectory_setup

if TYPE_CHECKING:
    from lossland.config import InterpolateConfig, SurfaceConfig
    from lossland.surface_file import Surface

HESSIAN = "hessian"
HESSIAN_RISE = 1.0  # auto range for Hessian planes: where ½·λ₁·r² reaches this loss rise


@dataclass(frozen=True)
class SpecialPlane:
    """Directions, the grid ranges to use, extra surface attributes and trajectories."""

    directions: Directions
    x: str
    y: str | None
    directions_file: Path | None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    trajectories: Mapping[str, np.ndarray] = field(default_factory=dict)


def wants_hessian(directions: Path | str | None) -> bool:
    return directions is not None and str(directions) == HESSIAN


def _default_x(config: SurfaceConfig) -> str | None:
    """None when --x was not given (its default stands for "choose for me" here)."""
    from lossland.config import SurfaceSettings

    return None if config.x == SurfaceSettings.x else config.x


def special_plane(
    config: SurfaceConfig,
    model: nn.Module,
    state: Mapping[str, Tensor],
    data: tuple[Tensor, Tensor],
    out: Path,
) -> SpecialPlane | None:
    """The plane for ``--trajectory`` / ``--directions hessian`` / a PCA directions file."""
    trajectory = list(getattr(config, "trajectory", []) or [])
    if trajectory:
        return _trajectory_plane(config, model, state, trajectory, out)
    if config.pca_runs != "all":
        raise LosslandError("--pca-runs needs --trajectory: give the run folders")
    if wants_hessian(config.directions):
        return _hessian_plane(config, model, data, out)
    if config.directions is not None and not config.to:
        loaded = Directions.load(config.directions)
        if loaded.kind == "pca" and "trajectories" in loaded.info:
            return _stored_pca_plane(config, model, loaded)
    return None


def _without_paths(directions: Directions) -> Directions:
    """The paths live in the surface file's own datasets: not again in its attributes."""
    info = {k: v for k, v in directions.info.items() if k != "trajectories"}
    return replace(directions, info=info)


def _save(directions: Directions, config: SurfaceConfig, out: Path) -> Path:
    from lossland.landscape import save_directions

    return save_directions(directions, config, out)


def _trajectory_plane(
    config: SurfaceConfig,
    model: nn.Module,
    state: Mapping[str, Tensor],
    runs: Sequence[Path],
    out: Path,
) -> SpecialPlane:
    if config.to:
        raise LosslandError("--trajectory and --to both set: choose one kind of plane")
    if config.directions is not None:
        raise LosslandError(
            "--trajectory and --directions both set: the trajectories define the directions"
        )
    if config.scheme != "li":
        raise LosslandError(
            f"--trajectory planes use scheme li, not {config.scheme}: drop --scheme"
        )
    started = time.perf_counter()
    names = [n for n, _ in model.named_parameters()]
    setup = trajectory_setup(
        state, runs, names=names, x=_default_x(config), y=config.y, pca_runs=config.pca_runs
    )
    # The paths and labels travel with the directions file, so --directions FILE restores them.
    info = {
        **dict(setup.directions.info),
        "trajectories": {k: np.asarray(v).tolist() for k, v in setup.trajectories.items()},
        "axis_labels": list(setup.attrs["axis_labels"]),
    }
    directions = replace(setup.directions, info=info)
    ratio = info["explained_variance_ratio"]
    print(
        f"PCA of {info['pca_checkpoints']} checkpoints: PC1 {100 * ratio[0]:.1f} %, "
        f"PC2 {100 * ratio[1]:.1f} % of the variance ({time.perf_counter() - started:.1f} s)",
        file=sys.stderr,
    )
    for name, off in setup.attrs["trajectory_off_plane"].items():
        if off > 0.5:
            print(
                f"note: run {name} lies far off the plane (up to {100 * off:.0f} % of its "
                "largest distance from the final point): its drawn path is a shadow",
                file=sys.stderr,
            )
    return SpecialPlane(
        directions=_without_paths(directions),
        x=setup.x,
        y=setup.y,
        directions_file=_save(directions, config, out),
        attrs=setup.attrs,
        trajectories=setup.trajectories,
    )


def _stored_pca_plane(
    config: SurfaceConfig, model: nn.Module, directions: Directions
) -> SpecialPlane:
    directions.check_fits(model, source=f"directions in {config.directions}")
    raw = directions.info.get("trajectories")
    trajectories = {
        str(k): np.asarray(v, dtype=np.float64).reshape(-1, 2)
        for k, v in (raw.items() if isinstance(raw, Mapping) else [])
    }
    points = np.concatenate(list(trajectories.values())) if trajectories else np.zeros((0, 2))
    x, y = _default_x(config), config.y
    attrs: dict[str, Any] = {}
    labels = directions.info.get("axis_labels")
    if isinstance(labels, list) and len(labels) == 2:
        attrs["axis_labels"] = [str(v) for v in labels]
    return SpecialPlane(
        directions=_without_paths(directions),
        x=auto_range(points[:, 0], x) if is_auto(x) else str(x),
        y=auto_range(points[:, 1], y) if is_auto(y) else y,
        directions_file=config.directions,
        attrs=attrs,
        trajectories=trajectories,
    )


def hessian_range(eigenvalue: float, spec: str | None, *, num: int = 51) -> str:
    """±√(2·HESSIAN_RISE/λ) (``auto[:NUM]``), or the given ``min:max:num``."""
    if spec is not None and not is_auto(spec):
        return spec
    if spec is not None and ":" in spec:
        try:
            num = int(spec.split(":", 1)[1])
        except ValueError:
            raise LosslandError(f"malformed range {spec!r}: write auto or auto:NUM") from None
    if num < 3:
        raise LosslandError(f"range {spec!r} needs at least 3 points: write e.g. auto:51")
    if not eigenvalue > 0 or not math.isfinite(eigenvalue):
        return f"-1:1:{num}"
    r = math.sqrt(2 * HESSIAN_RISE / eigenvalue)
    return grid_with_zero(-r, r, num)


def _hessian_plane(
    config: SurfaceConfig, model: nn.Module, data: tuple[Tensor, Tensor], out: Path
) -> SpecialPlane:
    from lossland.devices import resolve_device
    from lossland.hessian import DTYPES, hessian_directions
    from lossland.landscape import resolve_loss

    if config.to:
        raise LosslandError("--directions hessian and --to both set: choose one kind of plane")
    if config.scheme != "li":
        raise LosslandError(f"Hessian planes use scheme li, not {config.scheme}: drop --scheme")
    size = sum(p.numel() for p in model.parameters())
    k = 2
    if size < k:
        raise LosslandError(f"the model has {size} parameter: too few for a Hessian plane")
    started = time.perf_counter()
    loss_fn, _ = resolve_loss(config.loss)
    directions = hessian_directions(
        model,
        data,
        k=k,
        loss=loss_fn,
        batch_size=min(config.batch_size, 256),
        device=resolve_device(config.device),
        dtype=DTYPES[config.dtype],
        seed=config.seed,
    )
    values = directions.info["eigenvalues"]
    print(
        "Hessian eigenvalues "
        + ", ".join(f"λ{i + 1} = {v:.4g}" for i, v in enumerate(values))
        + f" (Lanczos, {directions.info['lanczos_iterations']} iterations, "
        f"{time.perf_counter() - started:.1f} s)",
        file=sys.stderr,
    )
    # One range for both axes (from λ₁), so the picture shows how much flatter v2 is.
    return SpecialPlane(
        directions=directions,
        x=hessian_range(values[0], _default_x(config)),
        y=hessian_range(values[0], config.y),
        directions_file=_save(directions, config, out),
        attrs={"axis_labels": [f"v1 (λ1 = {values[0]:.4g})", f"v2 (λ2 = {values[1]:.4g})"]},
        trajectories={},
    )


def interpolate_from_config(config: InterpolateConfig) -> Surface:
    """``lossland interpolate A B [C]``: ``lossland surface A --to B [--to C]`` with ranges
    that start at the checkpoints (0:1) and, for three, the same range on y."""
    import dataclasses

    from lossland.config import SurfaceConfig
    from lossland.landscape import surface_from_config

    paths = list(config.checkpoints)
    if len(paths) not in (2, 3):
        raise LosslandError(
            f"interpolate takes two checkpoints (a line) or three (a plane), got {len(paths)}"
        )
    shared = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(SurfaceConfig)
        if hasattr(config, f.name) and f.name not in ("checkpoint", "to", "y")
    }
    y = (config.y or config.x) if len(paths) == 3 else None
    if len(paths) == 2 and config.y is not None:
        raise LosslandError("--y needs a third checkpoint (a plane): drop --y or add C")
    return surface_from_config(SurfaceConfig(**shared, checkpoint=paths[0], to=paths[1:], y=y))
