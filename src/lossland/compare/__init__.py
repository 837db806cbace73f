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
from lossland.compare._derive import derive
from lossland.compare._permutation import Axis, Group, Part, Permutation, Site

__all__ = [
    "AlignMethod",
    "AlignOptions",
    "Alignment",
    "Axis",
    "Group",
    "Part",
    "Permutation",
    "Site",
    "align",
    "blend",
    "derive",
    "recompute_batchnorm",
]


def __dir__() -> list[str]:
    return list(__all__)
