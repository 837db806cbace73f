"""The barrier between two checkpoints, located beyond the grid by a 1-D search on the line.

The grid maximum of L(t) on [0, 1] is only as good as the grid spacing h (a 21-point line
misses a peak between its points by up to the curvature times h²/8). Golden-section search on
the bracket [t_k − h, t_k + h] around the grid argmax t_k, with the engine evaluating θ(t)
exactly (re-anchored from θ* at every point), shrinks it by 0.618 per evaluation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lossland.analysis import barrier
from lossland.core import reduce_sums
from lossland.engine import Engine
from lossland.io import Surface

EVALUATIONS = 10  # the bracket shrinks to 0.618⁸ ≈ 2 % of 2h: well below any grid spacing
_GOLDEN = (math.sqrt(5) - 1) / 2


def refine_barrier(
    engine: Engine, line: Surface, *, evaluations: int = EVALUATIONS
) -> dict[str, Any] | None:
    """The line's maximum loss on [0, 1] refined by golden-section search; ``None`` where the
    line has no interior grid maximum (its barrier is at a checkpoint, or is not defined)."""
    grid = barrier(line)
    if grid is None or not 0 < grid.at < 1:
        return None
    k = int(np.flatnonzero(line.x == grid.at)[0])
    lo, hi = float(line.x[k - 1]), float(line.x[k + 1])

    def loss(t: float) -> tuple[float, float]:
        block = next(engine.rows(np.array([t]), np.zeros(1), np.ones((1, 1), dtype=bool)))
        values = reduce_sums(block.stats)
        return float(values["loss"][0]), float(values["loss_sem"][0])

    seen = {grid.at: (grid.max_loss, float(line.loss_sem[k]))}
    c, d = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fc, fd = loss(c), loss(d)
    seen |= {c: fc, d: fd}
    for _ in range(evaluations - 2):  # keep the bracket around the larger loss
        if fc[0] >= fd[0]:
            hi, d, fd = d, c, fc
            c = hi - _GOLDEN * (hi - lo)
            fc = loss(c)
            seen[c] = fc
        else:
            lo, c, fc = c, d, fd
            d = lo + _GOLDEN * (hi - lo)
            fd = loss(d)
            seen[d] = fd
    at = max(seen, key=lambda t: seen[t][0])
    top, sem = seen[at]
    return {
        "at": at,
        "max_loss": top,
        "max_loss_sem": sem,
        "height": top - max(grid.start_loss, grid.end_loss),
        "grid_at": grid.at,
        "grid_max_loss": grid.max_loss,
        "bracket": [lo, hi],
        "evaluations": evaluations,
    }
