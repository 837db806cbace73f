"""Paired standard errors of a plane's barriers: saddle − minimum over the same samples.

Every grid point is evaluated on the same samples, so a barrier's two losses share each
sample's difficulty: √(SE_min² + SE_saddle²) overstates the barrier's error (about 5× on a
small MLP) and calls real basins insignificant. At the end of a complete plane, the losses of
every unit (sample or sequence) at the minimum and the saddle of the ``PAIRED_BARRIERS`` most
persistent mortal basins are evaluated again (two grid points' cost each at most) and the
standard error of the difference is computed from them (:func:`lossland.core.paired_se`). They
are stored as the attribute ``barrier_se``, which the topology's significance reads.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lossland.analysis import BARRIER_SE_ATTR, most_persistent, surface_topology
from lossland.core import paired_se
from lossland.engine import Engine
from lossland.io import Surface

PAIRED_BARRIERS = 10


def paired_barriers(engine: Engine, plane: Surface, *, top: int = PAIRED_BARRIERS) -> Surface:
    """``plane`` with ``barrier_se``: for the ``top`` most persistent mortal minima, the
    minimum and saddle grid indices, the paired and the independent standard errors. Unchanged
    for a line, a plane without standard errors or without a mortal minimum."""
    if plane.y is None or not np.isfinite(plane.loss_sem[plane.evaluated]).any():
        return plane
    found = surface_topology(plane, stored=False)
    if found is None:
        return plane
    shown, _ = most_persistent(found, top + 1)
    pairs = [
        (m, found.merges[m.merge])
        for m in shown
        if m.merge is not None and 0 < m.persistence < math.inf
    ][:top]
    if not pairs:
        return plane
    units: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for point in {p for m, s in pairs for p in ((m.row, m.col), (s.row, s.col))}:
        units[point] = engine.unit_losses(float(plane.x[point[1]]), float(plane.y[point[0]]))
    records: list[dict[str, Any]] = []
    for m, s in pairs:
        (a_s, a_n), (b_s, b_n) = units[(m.row, m.col)], units[(s.row, s.col)]
        independent = math.hypot(plane.loss_sem[m.row, m.col], plane.loss_sem[s.row, s.col])
        paired = paired_se(a_s, a_n, b_s, b_n)
        records.append(
            {
                "minimum": [m.row, m.col],
                "saddle": [s.row, s.col],
                "barrier": float(b_s.sum() / b_n.sum() - a_s.sum() / a_n.sum()),
                "paired_se": paired if math.isfinite(paired) else None,
                "independent_se": float(independent) if math.isfinite(independent) else None,
            }
        )
    return plane.with_attrs(**{BARRIER_SE_ATTR: records})
