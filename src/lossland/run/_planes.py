"""Surfaces on planes that other producers define: what a producer is asked for in a surface
run (:func:`plane_request`), and a training trajectory's PCA plane."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from lossland.core import select_params
from lossland.directions import HessianOptions, PlaneRequest, trajectory_plane
from lossland.engine import Evaluator
from lossland.io import ModelSpec, Surface
from lossland.run._options import SurfaceOptions
from lossland.run._surface import surface
from lossland.zoo import load_model

# A surface run's Hessian batches hold at most the Hessian's default batch size (a surface's
# batches are larger: a forward only, where a Hessian-vector product keeps a double graph).
HESSIAN_BATCH = HessianOptions().batch_size


def plane_request(
    model: nn.Module,
    state: Mapping[str, Tensor],
    data: Any,
    evaluator: Evaluator | None,
    options: SurfaceOptions,
    *,
    x: str | None = None,
    y: str | None = None,
    to: Sequence[str | os.PathLike[str]] = (),
    runs: Sequence[str | os.PathLike[str]] = (),
    pca_runs: str | Sequence[int] | None = None,
) -> PlaneRequest:
    """What a producer of directions gets in a surface run with ``options``: a Hessian is
    computed with the run's seed, device, dtype, limits and progress bar, in batches of at most
    :data:`HESSIAN_BATCH` samples."""
    hessian = HessianOptions(
        batch_size=min(options.batch_size, HESSIAN_BATCH),
        device=options.device,
        dtype=options.dtype,
        seed=options.seed,
        allow_large=options.allow_large,
        progress=options.progress,
        params=options.params,
    )
    return PlaneRequest(
        model=model,
        state=state,
        data=data,
        evaluator=evaluator,
        x=x,
        y=y,
        to=to,
        runs=runs,
        pca_runs=pca_runs,
        seed=options.seed,
        allow_large=options.allow_large,
        hessian=hessian,
        params=options.params,
    )


def trajectory_surface(
    final: nn.Module | str | os.PathLike[str],
    run_dirs: Sequence[str | os.PathLike[str]],
    data: tuple[Tensor, Tensor],
    *,
    x: str | None = None,
    y: str | None = None,
    pca_runs: str | Sequence[int] | None = None,
    out: str | os.PathLike[str] | None = None,
    model: ModelSpec | str | None = None,
    **surface_options: Any,
) -> Surface:
    """The loss surface on the PCA plane of ``run_dirs`` around ``final``.

    Each run's projected path is in ``surface.trajectories``, the axes are labelled
    "PC1 (xx.x %)".

    Args:
        final: the trained model, or its checkpoint file.
        run_dirs: folders of training checkpoints, one per run.
        data: the evaluation set, as for :func:`lossland.surface`.
        x, y: ``None`` or ``"auto[:NUM]"`` fit the paths with a margin; else ``min:max:num``.
        pca_runs: the runs (indices, or a spec such as ``"0,2"``) whose checkpoints make the
            PCA (default: all).
        out: the HDF5 file to write and resume.
        model: the factory of a checkpoint file whose metadata gives an import path (or no
            model): lossland never imports code that a file names (see
            :func:`lossland.load_model`).
        **surface_options: passed to :func:`lossland.surface` (``bn``, ``device``, ...).

    Returns:
        The :class:`lossland.io.Surface` on the PCA plane.

    Raises:
        LosslandError: unreadable or mismatched checkpoints, too few of them for a plane, or
            any refusal of :func:`lossland.surface`.

    Example:
        >>> s = lossland.trajectory_surface("model.safetensors", ["run0/", "run1/"],
        ...                                 (inputs, targets), out="pca.h5")
    """
    attrs = dict(surface_options.pop("attrs", None) or {})
    if isinstance(final, nn.Module):
        network = final
    else:
        network, checkpoint = load_model(final, spec=model)
        attrs = {"checkpoint": str(final), "checkpoint_sha256": checkpoint.sha256 or "", **attrs}
    names = [n for n, _ in network.named_parameters()]
    state = {k: v.detach() for k, v in network.state_dict().items()}
    large = bool(surface_options.get("allow_large") or False)
    chosen = select_params(surface_options.get("params"), network.named_parameters())
    plane = trajectory_plane(
        state,
        list(run_dirs),
        names=names if chosen is None else chosen,
        pca_runs=pca_runs,
        allow_large=large,
    )
    return surface(
        network,
        data,
        x=x,
        y=y,
        directions=plane.directions,
        out=Path(out) if out is not None else None,
        attrs={**attrs, **plane.attrs},
        trajectories=plane.trajectories,
        **surface_options,
    )
