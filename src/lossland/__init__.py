"""lossland: fast neural-network loss landscapes on PyTorch.

The typed public API::

    s = lossland.surface(model, (inputs, targets), x="-1:1:51", y="-1:1:51", norm="filter")
    s.save("surface.h5");  s = lossland.load("surface.h5")
    lossland.plot(s, "figures/", log=True);  lossland.view(s, "viewer.html")
    lossland.plot.contour(s, ax=ax, log=True)   # one figure into your Axes (also .contourf,
                                                # .heatmap, .surface3d, .line, .paths, ...)
    lossland.view(s)                            # in a notebook: the viewer inline
    print(lossland.describe(s))                 # the text summary (``lossland info``)

In Jupyter a ``Surface`` displays as a summary table with a small contour.

The layers, each a subpackage (see docs/design.md): ``core`` (layouts, grids, schemes),
``engine`` (the hot loop), ``directions`` (random, models, PCA, Hessian), ``run`` (surface
runs: resume, torchrun), ``io`` (files), ``analysis`` (topology, sharpness, descent), ``show``
(figures, viewer), ``compare`` (permutation alignment), ``zoo`` (datasets, models, training)
and ``cli``. Plotting and browser libraries are imported only when a figure or page is made.
"""

from __future__ import annotations

from lossland import presets
from lossland._version import __version__
from lossland.analysis import descend, describe, sharpness
from lossland.compare import Alignment, AlignOptions, CurveOptions, Permutation, align, curve
from lossland.directions import (
    Directions,
    HessianOperator,
    HessianOptions,
    Plane,
    hessian_directions,
    hessian_plane,
    hessian_report,
    hessian_spectrum,
    model_directions,
    pca_directions,
    projection,
    random_directions,
    trajectory_plane,
)
from lossland.engine import Evaluator
from lossland.errors import LosslandError, LosslandWarning
from lossland.io import (
    ModelSpec,
    Recording,
    Surface,
    export,
    load_checkpoint,
    read_npz,
    read_paths,
    save_checkpoint,
    write_paths,
)
from lossland.run import (
    Recorder,
    RecorderOptions,
    SurfaceOptions,
    surface,
    trajectory_surface,
)
from lossland.show import PlotStyle, plot
from lossland.show import write_viewer as view
from lossland.zoo import (
    TrainOptions,
    build_model,
    load_cifar10,
    load_fashion_mnist,
    load_model,
    train,
)


def load(path: str) -> Surface:
    """Read a surface file (HDF5) written by lossland or by the reference implementation.

    Args:
        path: the ``.h5`` file.

    Returns:
        The :class:`Surface` (complete or not; a resumable run's file too).

    Raises:
        SurfaceFileError: a missing, corrupt or malformed file, one over the size bounds, or
            values that fail its checks; one line naming the file and the problem.

    Example:
        >>> s = lossland.load("surface.h5")
        >>> print(lossland.describe(s))
    """
    return Surface.load(path)


__all__ = [
    "AlignOptions",
    "Alignment",
    "CurveOptions",
    "Directions",
    "Evaluator",
    "HessianOperator",
    "HessianOptions",
    "LosslandError",
    "LosslandWarning",
    "ModelSpec",
    "Permutation",
    "Plane",
    "PlotStyle",
    "Recorder",
    "RecorderOptions",
    "Recording",
    "Surface",
    "SurfaceOptions",
    "TrainOptions",
    "__version__",
    "align",
    "build_model",
    "curve",
    "descend",
    "describe",
    "export",
    "hessian_directions",
    "hessian_plane",
    "hessian_report",
    "hessian_spectrum",
    "load",
    "load_checkpoint",
    "load_cifar10",
    "load_fashion_mnist",
    "load_model",
    "model_directions",
    "pca_directions",
    "plot",
    "presets",
    "projection",
    "random_directions",
    "read_npz",
    "read_paths",
    "save_checkpoint",
    "sharpness",
    "surface",
    "train",
    "trajectory_plane",
    "trajectory_surface",
    "view",
    "write_paths",
]


def __dir__() -> list[str]:
    return list(__all__)
