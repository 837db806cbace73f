"""Running a surface: validate, resume, drive the engine in one process or under torchrun,
stop cleanly; one file writer at a time."""

from lossland.run._curves import curve_plane, models_plane, projected
from lossland.run._group import (
    is_main_process,
    launched,
)
from lossland.run._lock import lock_path, run_lock, stale_temporaries
from lossland.run._options import MemoryFormat, SurfaceOptions
from lossland.run._planes import plane_request, trajectory_surface
from lossland.run._recorder import Recorder, RecorderOptions, RecordLogger
from lossland.run._seeds import check_seed_range
from lossland.run._settings import setting_differences
from lossland.run._signals import Interrupted
from lossland.run._surface import check_cost, surface

__all__ = [
    "Interrupted",
    "MemoryFormat",
    "RecordLogger",
    "Recorder",
    "RecorderOptions",
    "SurfaceOptions",
    "check_cost",
    "check_seed_range",
    "curve_plane",
    "is_main_process",
    "launched",
    "lock_path",
    "models_plane",
    "plane_request",
    "projected",
    "run_lock",
    "setting_differences",
    "stale_temporaries",
    "surface",
    "trajectory_surface",
]


def __dir__() -> list[str]:
    return list(__all__)
