"""Running a surface: validate, resume, drive the engine in one process or under torchrun,
stop cleanly; one file writer at a time."""

from lossland.run._curves import curve_plane, models_plane, projected
from lossland.run._driver import drive
from lossland.run._group import (
    DEFAULT_TIMEOUT_S,
    TIMEOUT_ENV,
    Group,
    PeerError,
    assign,
    is_main_process,
    join,
    launched,
    rank,
    rank_device,
    timeout_seconds,
)
from lossland.run._lock import lock_path, run_lock, stale_temporaries
from lossland.run._options import MemoryFormat, SurfaceOptions
from lossland.run._planes import plane_request, trajectory_surface
from lossland.run._seeds import check_seed_range
from lossland.run._settings import RESUME_KEYS, setting_differences, start_or_resume
from lossland.run._signals import Interrupted, held_signals, signal_number, stop_on_signals
from lossland.run._surface import check_cost, surface

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "RESUME_KEYS",
    "TIMEOUT_ENV",
    "Group",
    "Interrupted",
    "MemoryFormat",
    "PeerError",
    "SurfaceOptions",
    "assign",
    "check_cost",
    "check_seed_range",
    "curve_plane",
    "drive",
    "held_signals",
    "is_main_process",
    "join",
    "launched",
    "lock_path",
    "models_plane",
    "plane_request",
    "projected",
    "rank",
    "rank_device",
    "run_lock",
    "setting_differences",
    "signal_number",
    "stale_temporaries",
    "start_or_resume",
    "stop_on_signals",
    "surface",
    "timeout_seconds",
    "trajectory_surface",
]
