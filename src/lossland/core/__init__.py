"""The numerical core: flat parameter layouts, grid axes, interpolation schemes, fingerprints.

Depends on torch and numpy only (and :mod:`lossland.errors`).
"""

from lossland.core._devices import resolve_device, synchronize
from lossland.core._dtypes import (
    as_real,
    check_dtype,
    check_storable,
    dtype_kind,
    moves,
    moving_dtype,
)
from lossland.core._fingerprint import Digest, fingerprint, tensor_fingerprint, value_digest
from lossland.core._flat import FlatLayout, LayoutEntry
from lossland.core._grid import (
    AUTO_MARGIN,
    AUTO_POINTS,
    MAX_AXIS_POINTS,
    MAX_GRID_POINTS,
    Axis,
    auto_points,
    auto_range,
    axis_text,
    check_grid_size,
    check_spec,
    coordinates,
    grid_with_zero,
    is_auto,
)
from lossland.core._imports import import_object, is_import_path
from lossland.core._json import json_default
from lossland.core._memory import (
    MEMORY_KEYS,
    MemoryProbe,
    host_rss,
    memory_text,
    param_bytes,
    reset_host_peak,
)
from lossland.core._options import (
    AT_LEAST_1,
    FINITE,
    POSITIVE,
    SEEDS,
    Bounds,
    check_fields,
    check_number,
    choices,
    option,
    updated,
)
from lossland.core._progress import progress_bar
from lossland.core._schemes import (
    SCHEMES,
    PlaneVectors,
    Scheme,
    barycentric_point_,
    filter_norms,
    layer_norm,
    li_point_,
    linear2x_point_,
    rescale_,
)

__all__ = [
    "AT_LEAST_1",
    "AUTO_MARGIN",
    "AUTO_POINTS",
    "FINITE",
    "MAX_AXIS_POINTS",
    "MAX_GRID_POINTS",
    "MEMORY_KEYS",
    "POSITIVE",
    "SCHEMES",
    "SEEDS",
    "Axis",
    "Bounds",
    "Digest",
    "FlatLayout",
    "LayoutEntry",
    "MemoryProbe",
    "PlaneVectors",
    "Scheme",
    "as_real",
    "auto_points",
    "auto_range",
    "axis_text",
    "barycentric_point_",
    "check_dtype",
    "check_fields",
    "check_grid_size",
    "check_number",
    "check_spec",
    "check_storable",
    "choices",
    "coordinates",
    "dtype_kind",
    "filter_norms",
    "fingerprint",
    "grid_with_zero",
    "host_rss",
    "import_object",
    "is_auto",
    "is_import_path",
    "json_default",
    "layer_norm",
    "li_point_",
    "linear2x_point_",
    "memory_text",
    "moves",
    "moving_dtype",
    "option",
    "param_bytes",
    "progress_bar",
    "rescale_",
    "reset_host_peak",
    "resolve_device",
    "synchronize",
    "tensor_fingerprint",
    "updated",
    "value_digest",
]
