"""The numerical core: flat parameter layouts, grid axes, interpolation schemes, fingerprints,
and the tables every layer reads: what a grid point stores (``FIELDS``), the kinds of directions
(``KINDS``).

Depends on torch and numpy only (and :mod:`lossland.errors`).
"""

from lossland.core._cost import (
    LIMITS,
    SAVE_SHARE,
    Need,
    available_memory,
    check_needs,
    descent_needs,
    hessian_needs,
    pca_needs,
    spectrum_needs,
    surface_needs,
)
from lossland.core._devices import DTYPES, DType, resolve_device, synchronize, torch_dtype
from lossland.core._dtypes import (
    as_real,
    check_storable,
    dtype_kind,
    moves,
    moving_dtype,
)
from lossland.core._fields import (
    FIELD,
    FIELDS,
    SUM,
    SUMS,
    Field,
    Shown,
    Sum,
    Values,
    reduce_sums,
)
from lossland.core._fingerprint import Digest, fingerprint, tensor_fingerprint, value_digest
from lossland.core._flat import FlatLayout, LayoutEntry, row_blocks, rows
from lossland.core._grid import (
    Axis,
    auto_range,
    axis_text,
    check_grid_size,
    check_spec,
    coordinates,
    is_auto,
)
from lossland.core._imports import import_object, is_import_path
from lossland.core._json import json_default
from lossland.core._kinds import (
    AXIS_LABELS,
    KINDS,
    DirectionKind,
    Kind,
    RangeRule,
    kind,
    recorded_kind,
)
from lossland.core._memory import (
    MEMORY_KEYS,
    MemoryProbe,
    bytes_text,
    host_available,
    host_rss,
    memory_text,
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
    options_from,
    updated,
)
from lossland.core._params import TRAINABLE, Params, select_params
from lossland.core._progress import progress_bar
from lossland.core._schemes import (
    PlaneVectors,
    Scheme,
    barycentric_point_,
    li_point_,
    li_rounded_,
    linear2x_point_,
    rescale_,
    scratch_like,
)
from lossland.core._text import printable
from lossland.core._uncertainty import (
    LEVEL,
    interval,
    paired_se,
    plus_minus,
    share_upper,
    t_quantile,
)

__all__ = [
    "AT_LEAST_1",
    "AXIS_LABELS",
    "DTYPES",
    "FIELD",
    "FIELDS",
    "FINITE",
    "KINDS",
    "LEVEL",
    "LIMITS",
    "MEMORY_KEYS",
    "POSITIVE",
    "SAVE_SHARE",
    "SEEDS",
    "SUM",
    "SUMS",
    "TRAINABLE",
    "Axis",
    "Bounds",
    "DType",
    "Digest",
    "DirectionKind",
    "Field",
    "FlatLayout",
    "Kind",
    "LayoutEntry",
    "MemoryProbe",
    "Need",
    "Params",
    "PlaneVectors",
    "RangeRule",
    "Scheme",
    "Shown",
    "Sum",
    "Values",
    "as_real",
    "auto_range",
    "available_memory",
    "axis_text",
    "barycentric_point_",
    "bytes_text",
    "check_fields",
    "check_grid_size",
    "check_needs",
    "check_number",
    "check_spec",
    "check_storable",
    "choices",
    "coordinates",
    "descent_needs",
    "dtype_kind",
    "fingerprint",
    "hessian_needs",
    "host_available",
    "host_rss",
    "import_object",
    "interval",
    "is_auto",
    "is_import_path",
    "json_default",
    "kind",
    "li_point_",
    "li_rounded_",
    "linear2x_point_",
    "memory_text",
    "moves",
    "moving_dtype",
    "option",
    "options_from",
    "paired_se",
    "pca_needs",
    "plus_minus",
    "printable",
    "progress_bar",
    "recorded_kind",
    "reduce_sums",
    "rescale_",
    "resolve_device",
    "row_blocks",
    "rows",
    "scratch_like",
    "select_params",
    "share_upper",
    "spectrum_needs",
    "surface_needs",
    "synchronize",
    "t_quantile",
    "tensor_fingerprint",
    "torch_dtype",
    "updated",
    "value_digest",
]


def __dir__() -> list[str]:
    return list(__all__)
