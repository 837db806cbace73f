"""Every producer of a :class:`Directions` value: random, between models, PCA of a training
trajectory, Hessian eigenvectors; :class:`Plane`, what a surface is computed on, and
:func:`make_plane`, which makes the plane of a kind (a row of :data:`lossland.core.KINDS`)
from a :class:`PlaneRequest`; and the Hessian's spectrum (density by stochastic Lanczos
quadrature, per-group top eigenvalues) with :class:`HessianOptions`."""

from lossland.directions._directions import (
    Direction,
    Directions,
    Ignore,
    Norm,
    check_usable,
    cosine,
    dot,
    empty_direction,
)
from lossland.directions._hessian import (
    Eigenpairs,
    HessianOperator,
    HessianOptions,
    HessianReport,
    TraceEstimate,
    Which,
    hessian_cost,
    hessian_directions,
    hessian_eigen,
    hessian_report,
    hutchinson,
    lanczos,
    save_eigen_directions,
)
from lossland.directions._hessian_plane import hessian_plane
from lossland.directions._models import model_directions
from lossland.directions._pca import (
    Projection,
    Run,
    find_run,
    parse_pca_runs,
    pca_directions,
    projection,
    trajectory_plane,
)
from lossland.directions._plane import Plane, PlaneRequest, grid_specs, make_plane
from lossland.directions._random import (
    CURRENT,
    from_recipe,
    lean_directions,
    normalize_,
    orthogonalized,
    random_by_rule,
    random_directions,
)
from lossland.directions._spectrum import (
    SUMMARY_GRID_POINTS,
    Estimate,
    GroupBy,
    GroupEigen,
    GroupSpectra,
    HessianSpectrum,
    ParameterGroup,
    SpectralDensity,
    check_spectrum_arguments,
    group_eigenvalues,
    hessian_spectrum,
    parameter_groups,
    rademacher_probes,
    spectral_density,
    spectrum_cost,
)

__all__ = [
    "CURRENT",
    "SUMMARY_GRID_POINTS",
    "Direction",
    "Directions",
    "Eigenpairs",
    "Estimate",
    "GroupBy",
    "GroupEigen",
    "GroupSpectra",
    "HessianOperator",
    "HessianOptions",
    "HessianReport",
    "HessianSpectrum",
    "Ignore",
    "Norm",
    "ParameterGroup",
    "Plane",
    "PlaneRequest",
    "Projection",
    "Run",
    "SpectralDensity",
    "TraceEstimate",
    "Which",
    "check_spectrum_arguments",
    "check_usable",
    "cosine",
    "dot",
    "empty_direction",
    "find_run",
    "from_recipe",
    "grid_specs",
    "group_eigenvalues",
    "hessian_cost",
    "hessian_directions",
    "hessian_eigen",
    "hessian_plane",
    "hessian_report",
    "hessian_spectrum",
    "hutchinson",
    "lanczos",
    "lean_directions",
    "make_plane",
    "model_directions",
    "normalize_",
    "orthogonalized",
    "parameter_groups",
    "parse_pca_runs",
    "pca_directions",
    "projection",
    "rademacher_probes",
    "random_by_rule",
    "random_directions",
    "save_eigen_directions",
    "spectral_density",
    "spectrum_cost",
    "trajectory_plane",
]


def __dir__() -> list[str]:
    return list(__all__)
