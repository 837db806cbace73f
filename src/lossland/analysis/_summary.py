"""The text summary of a surface (``lossland info``): settings, shape, progress, min/max/argmin
and the basins of a plane, one line each."""

from __future__ import annotations

import numpy as np

from lossland.analysis._compare import comparison_lines
from lossland.analysis._layers import layer_lines
from lossland.analysis._measures import interpolated_among, refine_line
from lossland.analysis._topology_surface import BARRIER_SE_ATTR
from lossland.analysis._topology_text import topology_lines
from lossland.core import FIELDS, memory_text, printable
from lossland.io import MEMORY_ATTR, SETTINGS_ATTR, TOPOLOGY_ATTR, Surface


def describe(surface: Surface) -> str:
    """A human summary of a surface, one fact a line (what ``lossland info`` prints).

    Settings, shape, progress, min/max/argmin of the loss, a line per shown row of
    :data:`lossland.core.FIELDS` (accuracy), the non-finite losses, the basins of a plane and
    the file's attributes; text from the file is escaped (:func:`lossland.core.printable`).

    Args:
        surface: any surface, complete or not.

    Returns:
        The lines, joined by newlines.

    Example:
        >>> print(lossland.describe(lossland.load("surface.h5")))
        2-D surface, train split, shape (21, 21)
        ...
    """
    lines = [f"{surface.ndim}-D surface, {printable(surface.split)} split, shape {surface.shape}"]
    lines.append(f"x: {surface.x[0]:g} .. {surface.x[-1]:g} ({len(surface.x)} points)")
    if surface.y is not None:
        lines.append(f"y: {surface.y[0]:g} .. {surface.y[-1]:g} ({len(surface.y)} points)")
    values = surface.values()
    lines.append(f"done: {values.counts()}")
    if values.low is not None and values.high is not None:
        ax, ay, _ = surface.argmin()
        where = f"x={ax:g}" + ("" if ay is None else f", y={ay:g}")
        lowest = np.unravel_index(
            np.argmin(np.where(values.finite, values.raw, np.inf)), surface.shape
        )
        lines.append(
            f"loss: min {values.low:.6g} at ({where}), max {values.high:.6g}"
            + ("; the min interpolated by refine" if interpolated_among(surface, lowest) else "")
        )
    elif values.done.any():
        lines.append("loss: no finite value")
    evaluated = bool(values.done.any())
    for row in FIELDS:  # the shown rows this surface holds: "accuracy: min 9.50 %, max 71.25 %"
        held = values.shown.get(row.name)
        if row.shown is not None and held is not None:
            line = row.shown.line(held, evaluated=evaluated)
            lines += [] if line is None else [line]
    holes = values.holes()
    if holes:
        lines.append(f"non-finite losses: {holes}")
    # The stored topology when valid, else computed: so older files get the summary too.
    basins = topology_lines(surface)
    lines += [f"topology: {text}" for text in basins[:1]]
    lines += [f"  {text}" for text in basins[1:]]
    lines += comparison_lines(surface.attrs)  # the profiles: their barriers, not the arrays
    lines += layer_lines(surface)  # a stack of per-layer surfaces: one line per block
    for key in sorted(surface.attrs):
        if key in (SETTINGS_ATTR, TOPOLOGY_ATTR, "comparison"):
            continue
        shown = _shown(surface, key)
        # Names and values are the file's: one line each, whatever they hold.
        value = printable(surface.attrs[key] if shown is None else shown)
        lines.append(f"{printable(key)}: {value}")
    for name, points in surface.trajectories.items():
        lines.append(f"trajectory {printable(name)}: {len(points)} points")
    return "\n".join(lines)


def _shown(surface: Surface, key: str) -> str | None:
    """The line of an attribute lossland wrote as a record (memory, refine's check, the paired
    barrier errors); None: print the value as it is."""
    value = surface.attrs[key]
    if key == MEMORY_ATTR:
        return memory_text(value)
    if key == "refine_check" and isinstance(value, dict):
        return refine_line(surface, value)
    if key == BARRIER_SE_ATTR and isinstance(value, list):
        ratios = [
            r["independent_se"] / r["paired_se"]
            for r in value
            if isinstance(r, dict)
            and isinstance(r.get("paired_se"), float)
            and isinstance(r.get("independent_se"), float)
            and r["paired_se"] > 0
        ]
        if ratios:
            return (
                f"paired standard errors of {len(value)} barriers, a median "
                f"{float(np.median(ratios)):.3g}× smaller than independent ones"
            )
    return None
