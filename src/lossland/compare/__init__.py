"""Comparing models: permutation alignment (Ainsworth et al. 2023, "Git Re-Basin") and the
models between two aligned ones.

Imports core, io and engine; imported by cli and the top-level API.
"""

from lossland.compare._align import (
    Alignment,
    AlignMethod,
    AlignOptions,
    align,
    blend,
    recompute_batchnorm,
)
from lossland.compare._curve import (
    Curve,
    CurveKind,
    CurveOptions,
    CurveResult,
    curve,
    curve_weights,
    load_curve_file,
)
from lossland.compare._derive import derive
from lossland.compare._permutation import Axis, Group, Part, Permutation, Site
from lossland.compare._profile import profile, straight

__all__ = [
    "AlignMethod",
    "AlignOptions",
    "Alignment",
    "Axis",
    "Curve",
    "CurveKind",
    "CurveOptions",
    "CurveResult",
    "Group",
    "Part",
    "Permutation",
    "Site",
    "align",
    "blend",
    "curve",
    "curve_weights",
    "derive",
    "load_curve_file",
    "profile",
    "recompute_batchnorm",
    "straight",
]


def __dir__() -> list[str]:
    return list(__all__)
