"""The basins of a surface as a few lines of terminal text (``lossland info``, ``describe``)."""

from __future__ import annotations

from lossland.analysis._measures import from_text
from lossland.analysis._topology_schema import Minimum, Topology
from lossland.analysis._topology_surface import bounded_topology, paired_errors
from lossland.io import Surface


def summary_lines(topology: Topology, *, top: int = 5) -> list[str]:
    """A few lines for a terminal: the global minimum, then the ``top`` most persistent others.

    e.g. ``3 minima in 1 component (2 significant, k=2); global 0.212 at (0.04, -0.02)``
    (minima of persistence 0, ties on a terrace, are counted apart)
    then ``next: 0.54 at (0.6, 0.7), barrier 0.31 at saddle (0.4, 0.5), significant``.
    """
    if top < 0:
        raise ValueError(f"top must be >= 0, got {top}")
    minima, best = topology.minima, topology.minima[0]
    components = topology.n_components
    # A minimum that dies at its own loss (persistence 0: a terrace, a plateau of equal
    # losses) is a tie of the sweep's order, not a basin: counted apart, never listed.
    persistent = [i for i, m in enumerate(minima) if m.persistence > 0]
    ties = len(minima) - len(persistent)
    parts = [
        f"{_count(len(persistent), 'minimum', 'minima')} in "
        f"{_count(components, 'component', 'components')}"
    ]
    if topology.k is not None:
        parts.append(
            f" ({sum(m.significant is True for m in minima)} significant, k={topology.k:g})"
        )
    if ties:
        parts.append(f", and {_count(ties, 'tie', 'ties')} of persistence 0 not counted")
    lines = ["".join(parts) + f"; global {best.loss:.4g} at ({best.x:.3g}, {best.y:.3g})"]
    others = sorted(persistent[1:], key=lambda i: (-minima[i].persistence, i))
    for index in others[:top]:
        lines.append("next: " + _describe(topology, minima[index]))
    if len(others) > top:
        rest = max(minima[i].persistence for i in others[top:])
        lines.append(f"... {len(others) - top} more minima with barrier <= {rest:.3g}")
    return lines


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _describe(topology: Topology, m: Minimum) -> str:
    text = f"{m.loss:.4g} at ({m.x:.3g}, {m.y:.3g}), "
    if m.merge is None:
        text += "separate component (no path to the global minimum)"
    else:
        s = topology.merges[m.merge]
        text += f"barrier {m.persistence:.3g} at saddle ({s.x:.3g}, {s.y:.3g})"
    if m.significant is not None:
        text += ", significant" if m.significant else ", not significant"
    return text


def topology_lines(surface: Surface) -> list[str]:
    """The basin summary (:func:`summary_lines`) of a 2-D surface; [] when it has none. A grid
    beyond ``MAX_SWEEP_POINTS`` is summarised on every s-th point, and the first line says so."""
    found, stride = bounded_topology(surface)
    if found is None:
        return []
    lines = summary_lines(found)
    lines[0] += from_text(surface)  # minima and saddles may sit at interpolated points
    lines[0] += _errors_text(found, paired_errors(surface) if stride == 1 else {})
    if stride > 1:
        ny, nx = surface.shape
        lines[0] += (
            f" (swept on one point in {stride} per axis, {len(found.y)} × {len(found.x)} of "
            f"{ny} × {nx}, to bound the cost)"
        )
    return lines


def _errors_text(found: Topology, paired: dict[tuple[int, int, int, int], float]) -> str:
    """How the barriers' standard errors behind ``significant`` were computed: paired over
    the shared samples (what ``run`` stores for the most persistent) or independent (an
    overstatement where both points use the same samples)."""
    if found.k is None:
        return ""
    mortal = [m for m in found.minima if m.merge is not None and m.persistence > 0]
    if not mortal:
        return ""
    saddles = [found.merges[m.merge] for m in mortal if m.merge is not None]
    n = sum((m.row, m.col, s.row, s.col) in paired for m, s in zip(mortal, saddles, strict=True))
    return f"; barrier SEs: {n} paired, {len(mortal) - n} independent"
