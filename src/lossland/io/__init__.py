"""Files: surface files (HDF5), checkpoints (safetensors), exports, optimizer paths (CSV, JSON),
atomic writes.

Depends only on :mod:`lossland.core` and :mod:`lossland.errors`. Every value read from a file
is parsed as data and validated by type; nothing read from a file is ever imported or called.
"""

from lossland.io._atomic import (
    atomic_path,
    atomic_write_bytes,
    check_length,
    check_output,
    check_writable,
    make_folder,
    path_length_problem,
    sha256_file,
)
from lossland.io._checkpoint import (
    METADATA_KEY,
    Checkpoint,
    ModelSpec,
    is_safetensors,
    load_checkpoint,
    load_state_into,
    mismatch_report,
    save_checkpoint,
    state_of,
)
from lossland.io._curve_file import load_curve, save_curve
from lossland.io._export import ExportFormat, export, export_format, heights, read_npz
from lossland.io._hdf5 import open_hdf5
from lossland.io._limits import (
    MAX_RATIO,
    READ_SHARE,
    check_budget,
    check_ratio,
    check_zip,
    not_a_file,
)
from lossland.io._metadata import (
    Check,
    check_schema,
    is_number,
    is_numbers,
    is_optional,
    is_pair_of_texts,
    is_points,
    is_texts,
    parse_json_object,
)
from lossland.io._paths import (
    MAX_STEPS,
    OptimizerPath,
    path_file_kind,
    read_paths,
    write_paths,
)
from lossland.io._recording import (
    RECORDING_FORMAT,
    SCALARS,
    TIMING,
    Recording,
    RecordingReadError,
    is_recording,
)
from lossland.io._surface_file import (
    MEMORY_ATTR,
    RESERVED_ATTRS,
    SETTINGS_ATTR,
    TOPOLOGY_ATTR,
    SeedStack,
    StackAxis,
    Surface,
    SurfaceReadError,
    check_contents,
    log_loss,
)
from lossland.io._values import SurfaceValues, is_flat

__all__ = [
    "MAX_RATIO",
    "MAX_STEPS",
    "MEMORY_ATTR",
    "METADATA_KEY",
    "READ_SHARE",
    "RECORDING_FORMAT",
    "RESERVED_ATTRS",
    "SCALARS",
    "SETTINGS_ATTR",
    "TIMING",
    "TOPOLOGY_ATTR",
    "Check",
    "Checkpoint",
    "ExportFormat",
    "ModelSpec",
    "OptimizerPath",
    "Recording",
    "RecordingReadError",
    "SeedStack",
    "StackAxis",
    "Surface",
    "SurfaceReadError",
    "SurfaceValues",
    "atomic_path",
    "atomic_write_bytes",
    "check_budget",
    "check_contents",
    "check_length",
    "check_output",
    "check_ratio",
    "check_schema",
    "check_writable",
    "check_zip",
    "export",
    "export_format",
    "heights",
    "is_flat",
    "is_number",
    "is_numbers",
    "is_optional",
    "is_pair_of_texts",
    "is_points",
    "is_recording",
    "is_safetensors",
    "is_texts",
    "load_checkpoint",
    "load_curve",
    "load_state_into",
    "log_loss",
    "make_folder",
    "mismatch_report",
    "not_a_file",
    "open_hdf5",
    "parse_json_object",
    "path_file_kind",
    "path_length_problem",
    "read_npz",
    "read_paths",
    "save_checkpoint",
    "save_curve",
    "sha256_file",
    "state_of",
    "write_paths",
]


def __dir__() -> list[str]:
    return list(__all__)
