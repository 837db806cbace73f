"""How a ``Surface`` shows itself in a notebook: a small contour image and a summary table,
drawn for its display hooks (``Surface._repr_png_``, ``_repr_html_``) when a notebook calls
them."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import replace

import numpy as np

from lossland.analysis import topology_lines
from lossland.errors import LosslandError
from lossland.io import Surface, SurfaceValues
from lossland.show._lines import line
from lossland.show._maps import contour, heatmap
from lossland.show._scales import loss_values
from lossland.show._style import SAVE_RC, PlotStyle, _figure_of, _root
from lossland.show._text import glyph_notes


def contour_png(surface: Surface, *, dpi: int = 80, log: bool | None = None) -> bytes:
    """A small PNG of the surface (contour lines; the line for 1-D, the heat map for a grid of
    one row or column) for notebooks. ``log=None`` picks log when the positive losses span more
    than a factor of 10."""
    style = replace(PlotStyle.paper(), cmap=PlotStyle.default().cmap, format="png")
    values = loss_values(surface)
    if log is None:
        finite = values[np.isfinite(values)]
        log = bool(finite.min() > 0 and finite.max() > 10 * finite.min())
    if surface.y is None:
        ax = line(surface, log=log, title="", style=style)
    elif min(surface.loss.shape) < 2:
        ax = heatmap(surface, log=log, title="", style=style)
    else:
        ax = contour(surface, log=log, title="", style=style, levels=15)
    buffer = io.BytesIO()
    import matplotlib

    with matplotlib.rc_context(dict(SAVE_RC)), glyph_notes("the contour"):
        _root(_figure_of(ax)).savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def summary_html(surface: Surface) -> str:
    """A compact HTML table of the surface with a small inline contour (for ``_repr_html_``)."""
    rows = _summary_rows(surface)
    table = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    try:
        data = base64.b64encode(contour_png(surface, dpi=72)).decode("ascii")
        image = f"<img src='data:image/png;base64,{data}' alt='loss contour' style='width:240px'>"
    except LosslandError as exc:  # nothing drawable yet: say why instead of a picture
        image = f"<p><i>{html.escape(str(exc))}</i></p>"
    return (
        "<div class='lossland-surface' style='display:flex;gap:1.5em;align-items:flex-start'>"
        f"<table>{table}</table>{image}</div>"
    )


def _summary_rows(surface: Surface) -> list[tuple[str, str]]:
    attrs = surface.attrs
    values = surface.values()
    rows = [
        ("surface", f"{surface.ndim}-D, " + " × ".join(str(n) for n in surface.shape[::-1])),
        ("split", surface.split),
        ("evaluated", values.counts()),
    ]
    x, y, low = surface.argmin()
    if math.isfinite(low):
        where = f"x={x:.4g}" + ("" if y is None else f", y={y:.4g}")
        rows.append(("min loss", f"{low:.5g} at {where}"))
    holes = values.holes()
    if holes:
        rows.append(("non-finite losses", holes))
    rows.append(_centre_row(surface, values))
    basins = topology_lines(surface) if math.isfinite(low) else []
    if basins:
        rows.append(("basins", basins[0]))
    for key, name in (("directions_kind", "directions"), ("norm", "norm"), ("samples", "samples")):
        if key in attrs:
            rows.append((name, str(attrs[key])))
    return rows


def _centre_row(surface: Surface, values: SurfaceValues) -> tuple[str, str]:
    """The loss at (0, 0), the trained model, or at the middle grid point when 0 is not on it:
    its value, or why it has none ("not evaluated", "evaluated, loss NaN")."""
    # In the arrays' index order: (x,) for a line, (y, x) for a plane.
    axes = {"x": surface.x} if surface.y is None else {"y": surface.y, "x": surface.x}
    zeros = {name: np.flatnonzero(axis == 0.0) for name, axis in axes.items()}
    origin = all(len(z) for z in zeros.values())
    at = {name: int(zeros[name][0]) if origin else len(axis) // 2 for name, axis in axes.items()}
    where = ", ".join(f"{name}={axes[name][at[name]]:.4g}" for name in sorted(axes))
    name = "loss at (0, 0)" if origin else f"loss at centre ({where})"
    return name, values.text_at(tuple(at.values()))
