"""Files: surface files (HDF5), checkpoints (safetensors), exports, atomic writes.

Depends only on :mod:`lossland.core` and :mod:`lossland.errors`. Every value read from a file
is parsed as data and validated by type; nothing read from a file is ever imported or called.
"""

from lossland.io._atomic import (
    atomic_path,
    atomic_write_bytes,
    check_output,
    check_writable,
    make_folder,
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
from lossland.io._export import FORMATS, ExportFormat, export, export_format, heights, read_npz
from lossland.io._metadata import (
    Check,
    check_schema,
    is_number,
    is_numbers,
    is_optional,
    is_pair_of_texts,
    is_points,
    is_texts,
    parse_json,
    parse_json_object,
)
from lossland.io._surface_file import (
    FORMAT,
    FORMAT_VERSION,
    RESERVED_ATTRS,
    SETTINGS_ATTR,
    TOPOLOGY_ATTR,
    SeedStack,
    Surface,
    SurfaceReadError,
    check_contents,
    log_loss,
    replace_infinite,
)
from lossland.io._values import SurfaceValues, is_flat

__all__ = [
    "FORMAT",
    "FORMATS",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "RESERVED_ATTRS",
    "SETTINGS_ATTR",
    "TOPOLOGY_ATTR",
    "Check",
    "Checkpoint",
    "ExportFormat",
    "ModelSpec",
    "SeedStack",
    "Surface",
    "SurfaceReadError",
    "SurfaceValues",
    "atomic_path",
    "atomic_write_bytes",
    "check_contents",
    "check_output",
    "check_schema",
    "check_writable",
    "export",
    "export_format",
    "heights",
    "is_flat",
    "is_number",
    "is_numbers",
    "is_optional",
    "is_pair_of_texts",
    "is_points",
    "is_safetensors",
    "is_texts",
    "load_checkpoint",
    "load_state_into",
    "log_loss",
    "make_folder",
    "mismatch_report",
    "parse_json",
    "parse_json_object",
    "read_npz",
    "replace_infinite",
    "save_checkpoint",
    "sha256_file",
    "state_of",
]
