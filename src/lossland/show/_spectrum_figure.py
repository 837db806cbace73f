"""The Hessian's spectral density as a figure: the curve with its ± 2 SE band across probes.

Draws from plain data, the JSON-ready form of a spectrum (``SpectralDensity.as_dict()``, or
the ``density`` entry of a ``lossland hessian --density`` file): ``grid`` (G,), ``density``
(G,), ``density_se`` (G,; None entries or absent: no band), and ``probes``, ``steps``,
``sigma`` for the title. No pyplot and no global state: the figure is a
:class:`matplotlib.figure.Figure` of its own (matplotlib imported lazily).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lossland.errors import LosslandError, arg
from lossland.io import atomic_path
from lossland.show._text import draws_text, glyph_notes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FLOOR_OF_PEAK = 1e-7  # the default log-scale floor, relative to the peak density
FIGSIZE = (6.0, 4.0)  # inches


def _array(values: Any) -> np.ndarray:
    """A float array from a list that may hold None (JSON's NaN)."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


@draws_text
def density_figure(
    spectrum: Mapping[str, Any],
    ax: Axes | None = None,
    *,
    log: bool = True,
    floor: float | None = None,
) -> Axes:
    """Draw the density of ``spectrum`` (module doc) with a ± 2 SE band across probes into
    ``ax``, or into a new Figure; returns the Axes (its ``.figure`` to save). ``log``: a log
    y-scale as PyHessian draws it, clipped below at ``floor`` (default 1e-7 × the peak)."""
    x, y = _array(spectrum["grid"]), _array(spectrum["density"])
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise LosslandError(
            f"a spectral density needs grid and density of one equal length ≥ 2, got "
            f"{x.shape} and {y.shape}"
        )
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=FIGSIZE, layout="constrained").add_subplot()
    se = spectrum.get("density_se")
    band = np.zeros_like(y) if se is None else np.nan_to_num(_array(se), nan=0.0)
    lower, upper = y - 2 * band, y + 2 * band
    if log:
        peak = float(np.max(y)) if np.max(y) > 0 else 1.0
        low = FLOOR_OF_PEAK * peak if floor is None else floor
        if not low > 0:
            raise LosslandError(f"{arg('floor')} must be positive on a log scale, got {floor}")
        y, lower, upper = np.maximum(y, low), np.maximum(lower, low), np.maximum(upper, low)
        ax.set_yscale("log")
    if np.any(band > 0):  # one probe: no band
        ax.fill_between(x, lower, upper, alpha=0.3, linewidth=0, label="± 2 SE across probes")
    ax.plot(x, y, linewidth=1.2, label="density")
    ax.axvline(0.0, color="0.6", linewidth=0.6, zorder=0)
    ax.set_xlim(float(x[0]), float(x[-1]))
    if log:  # the floor at the bottom, room above the band's top for the legend
        top = float(np.max(upper))
        ax.set_ylim(low, top * (top / low) ** 0.08)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("spectral density")
    ax.set_title(_title(spectrum), fontsize="medium")
    ax.legend(loc="upper right", fontsize="small")
    return ax


def _title(spectrum: Mapping[str, Any]) -> str:
    parts = []
    if "probes" in spectrum and "steps" in spectrum:
        parts.append(f"{spectrum['probes']} probes × {spectrum['steps']} steps")
    if spectrum.get("sigma") is not None:
        parts.append(f"σ = {float(spectrum['sigma']):.3g}")
    return "Hessian spectrum (SLQ)" + (": " + ", ".join(parts) if parts else "")


def save_density_figure(
    spectrum: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    log: bool = True,
    dpi: int = 150,
) -> Path:
    """Write :func:`density_figure` to ``path`` atomically (format from the suffix: png, pdf,
    svg)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE, layout="constrained")
    density_figure(spectrum, figure.add_subplot(), log=log)
    out = Path(path)
    with glyph_notes(out.name), atomic_path(out) as tmp:
        figure.savefig(tmp, format=out.suffix.lstrip(".") or "png", dpi=dpi)
    return out
