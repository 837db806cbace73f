"""The viewer of a recording: the page of its last step, with a step slider.

The page embeds every recorded step's slice (a plane: the viewer draws planes), its λ_max and
the run so far projected onto that step's plane (``Recording.paths``: θ_t is the origin, the
earlier records lead to it); moving the slider swaps the surface, the current point and the
trajectory drawn. The optimizer controls work on whichever step is shown.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lossland.analysis import surface_grid
from lossland.errors import LosslandError
from lossland.io import Recording, Surface, check_output
from lossland.show.viewer import (
    ViewerPage,
    _grid_json,
    _point_data,
    _points,
    page_data,
    render_page,
)

RUN = "run so far"


def step_surface(recording: Recording, index: int) -> Surface:
    """The slice of ``steps[index]``, with the run so far as its trajectory."""
    from dataclasses import replace

    surface = recording.surface(index)
    if recording.paths is None:
        return surface
    return replace(surface, trajectories={RUN: recording.paths[index, : index + 1]})


def _steps(recording: Recording) -> list[dict[str, Any]]:
    out = []
    for k in range(len(recording)):
        one = step_surface(recording, k)
        values = one.values()
        drawable = bool(values.finite.any())
        lam = float(recording.scalars["lambda_max"][k])
        out.append(
            {
                "step": int(recording.steps[k]),
                "z": _grid_json(surface_grid(one).loss if drawable else values.loss),
                **_point_data(one, values),
                "lambda_max": lam if np.isfinite(lam) else None,
                "path": _points(one.trajectories[RUN]) if RUN in one.trajectories else [],
                "positive": values.positive,
                "drawable": drawable,
            }
        )
    return out


def recording_page_data(recording: Recording, *, title: str, log: bool = False) -> dict[str, Any]:
    """:func:`page_data` of the last step, with ``steps`` (each step's grid, notes, λ_max and
    path) and ``step_index`` (the step shown first: the last)."""
    if not len(recording):
        raise LosslandError("the recording holds no step yet: nothing to view")
    if recording.y is None:
        raise LosslandError(
            "the viewer draws planes and this recording's slices are lines: plot it with "
            "lossland plot (record with a y axis to view it)"
        )
    last = len(recording) - 1
    data = page_data(step_surface(recording, last), title=title, log=log)
    steps = _steps(recording)
    data["steps"] = steps
    data["step_index"] = last
    if not all(s["positive"] for s in steps):
        data["log_allowed"] = False
        data["log_reason"] = "the log scale needs positive losses at every step"
    return data


def write_recording_viewer(
    recording: Recording,
    out: str | os.PathLike[str],
    *,
    title: str,
    log: bool = False,
    overwrite: bool = False,
) -> Path:
    """The viewer page of ``recording`` with a step slider, written to ``out`` atomically."""
    check_output(Path(out), overwrite=overwrite)
    page = ViewerPage(render_page(recording_page_data(recording, title=title, log=log)))
    return page.save(out)
