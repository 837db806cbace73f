"""The text summary of a surface (``lossland info``): settings, shape, progress, min/max/argmin
and the basins of a plane, one line each."""

from __future__ import annotations

import numpy as np

from lossland.analysis._compare import comparison_lines
from lossland.analysis._topology_text import topology_lines
from lossland.core import memory_text, printable
from lossland.io import MEMORY_ATTR, SETTINGS_ATTR, TOPOLOGY_ATTR, Surface


def describe(surface: Surface) -> str:
    """A human summary: settings, shape, progress, min/max/argmin, the basins of a plane."""
    lines = [f"{surface.ndim}-D surface, {printable(surface.split)} split, shape {surface.shape}"]
    lines.append(f"x: {surface.x[0]:g} .. {surface.x[-1]:g} ({len(surface.x)} points)")
    if surface.y is not None:
        lines.append(f"y: {surface.y[0]:g} .. {surface.y[-1]:g} ({len(surface.y)} points)")
    values = surface.values()
    lines.append(f"done: {values.counts()}")
    if values.low is not None and values.high is not None:
        ax, ay, _ = surface.argmin()
        where = f"x={ax:g}" + ("" if ay is None else f", y={ay:g}")
        lines.append(f"loss: min {values.low:.6g} at ({where}), max {values.high:.6g}")
    elif values.done.any():
        lines.append("loss: no finite value")
    acc = values.acc[np.isfinite(values.acc)]
    if acc.size:
        lines.append(f"accuracy: min {acc.min():.2f} %, max {acc.max():.2f} %")
    elif values.done.any():
        lines.append("accuracy: not recorded")
    holes = values.holes()
    if holes:
        lines.append(f"non-finite losses: {holes}")
    # The stored topology when valid, else computed: so older files get the summary too.
    basins = topology_lines(surface)
    lines += [f"topology: {text}" for text in basins[:1]]
    lines += [f"  {text}" for text in basins[1:]]
    lines += comparison_lines(surface.attrs)  # the profiles: their barriers, not the arrays
    for key in sorted(surface.attrs):
        if key in (SETTINGS_ATTR, TOPOLOGY_ATTR, "comparison"):
            continue
        shown = memory_text(surface.attrs[key]) if key == MEMORY_ATTR else None
        # Names and values are the file's: one line each, whatever they hold.
        value = printable(surface.attrs[key] if shown is None else shown)
        lines.append(f"{printable(key)}: {value}")
    for name, points in surface.trajectories.items():
        lines.append(f"trajectory {printable(name)}: {len(points)} points")
    return "\n".join(lines)
