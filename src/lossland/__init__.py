"""lossland: fast neural-network loss landscapes on PyTorch.

The typed public API::

    s = lossland.surface(model, (inputs, targets), x="-1:1:51", y="-1:1:51", norm="filter")
    s.save("surface.h5");  s = lossland.load("surface.h5")
    lossland.plot(s, "figures/", log=True);  lossland.view(s, "viewer.html")

Plotting and browser libraries are imported only when a figure or page is made.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Bound here on purpose: ``plot``, ``train`` and ``view`` are also submodule names, and these
# imports make the package attributes the functions (a later ``import lossland.plot`` does not
# rebind them).
from lossland.config import SurfaceSettings, TrainConfig
from lossland.directions import Directions, random_directions
from lossland.errors import LosslandError
from lossland.landscape import surface
from lossland.plot import plot
from lossland.surface_file import Surface
from lossland.train import train
from lossland.view import write_viewer as view


def load(path: str) -> Surface:
    """Read a surface file (HDF5) written by lossland or by the reference implementation."""
    return Surface.load(path)


__all__ = [
    "Directions",
    "LosslandError",
    "Surface",
    "SurfaceSettings",
    "TrainConfig",
    "__version__",
    "load",
    "plot",
    "random_directions",
    "surface",
    "train",
    "view",
]
