"""What a surface shows: figures, the offline viewer, the notebook display; and the figure of a
Hessian spectral density. Show only draws: the numbers it draws are :mod:`lossland.analysis`'s,
the files it reads are :mod:`lossland.io`'s, and it never evaluates a model or writes a surface.

Figures of a loss surface are matplotlib objects: each function draws into an Axes and returns it.

    ax = contour(surface)                      # a new Figure (never pyplot), ax.figure to show
    fig, axs = plt.subplots(1, 2); contourf(surface, ax=axs[0], log=True, critical_points=True)
    trajectories(ax, surface); paths(ax, optimizer_paths)
    plot(surface, "figures/", style="paper")   # the standard set of files (``lossland.plot``)

Rules shared by every figure:

* The values are :meth:`lossland.io.Surface.values`, as every reader shows them: ±inf losses
  become the largest finite loss (the write-up's rule); points not evaluated (``done`` false) and
  evaluated NaN losses stay blank; ``zmax`` clips the loss from above. :func:`plot` notes (a
  ``LosslandWarning``) what its figures leave blank or replace; a constant surface (up to float
  noise) is one colour, never contour bands of rounding errors.
* ``log=True`` is a logarithmic colour norm on the loss itself: geometric contour levels, colour
  bar and contour labels in loss units (ticks such as 0.1, 0.2, 0.5, 1). The one logarithm that is
  computed, the height of the 3-D plot, is the natural log (as the viewer, the descent and the
  exports use), with z tick labels in loss units. Losses ≤ 0 refuse log with the one-line
  ``LosslandError`` of :meth:`lossland.io.SurfaceValues.drawn`.
* 2-D planes are drawn with equal aspect (both axes are in the same weight-space units) and the
  figure is sized from the plane's aspect, so a 20 × 6 PCA plane comes out wide; ``aspect="auto"``
  fills the axes instead.
* Nothing global changes: no ``matplotlib.use``, no pyplot figures, no rcParams assignments. The
  font embedding options (TrueType in PDF, text as paths in SVG) are set only inside
  ``matplotlib.rc_context`` around each save.
* Optimizer paths take colours from the Okabe–Ito colour-blind-safe cycle by their position in the
  list, so a path has the same colour in every figure; training trajectories are black with a
  marker per run.
* The topology figures (critical points on a contour, the persistence diagram, the merge tree)
  draw :func:`lossland.analysis.surface_topology`: the stored attribute, or computed.

Matplotlib is imported inside the functions: importing this package does not load it.

Modules: ``_style`` (styles, colours, new figures), ``_scales`` (values, colour scales, titles,
labels, captions, frames), ``_maps``, ``_surface3d``, ``_overlays``, ``_lines``,
``_topology_figures``, ``_plotter`` (the standard figures, one table), ``_display`` (notebooks),
``_spectrum_figure``, ``_text`` (text drawn as written) and ``viewer``.
"""

from __future__ import annotations

from lossland.show._display import contour_png
from lossland.show._layer_figures import layers_figure
from lossland.show._plotter import (
    Plotter,
    figure_files,
    plot,
    seeds_figure,
)
from lossland.show._recording_figures import plot_recording, sharpness_figure, write_animation
from lossland.show._scales import axis_labels, loss_values
from lossland.show._spectrum_figure import density_figure, save_density_figure
from lossland.show._style import PlotStyle, StyleName
from lossland.show.viewer import (
    ViewerPage,
    make_server,
    page_data,
    serve,
    write_viewer,
)
from lossland.show.viewer._steps import write_recording_viewer

__all__ = [
    "PlotStyle",
    "Plotter",
    "StyleName",
    "ViewerPage",
    "axis_labels",
    "contour_png",
    "density_figure",
    "figure_files",
    "layers_figure",
    "loss_values",
    "make_server",
    "page_data",
    "plot",
    "plot_recording",
    "save_density_figure",
    "seeds_figure",
    "serve",
    "sharpness_figure",
    "write_animation",
    "write_recording_viewer",
    "write_viewer",
]


def __dir__() -> list[str]:
    return list(__all__)
