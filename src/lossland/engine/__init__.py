"""The evaluation engine: the hot loop, per-point statistics, precision and BatchNorm modes."""

from lossland.engine._copy import (
    BNMode,
    batchnorms,
    bind_flat,
    is_bn_statistic,
    set_bn_mode,
    working_copy,
)
from lossland.engine._engine import Block, Engine, EngineOptions
from lossland.engine._precision import (
    Precision,
    check_precision,
    precision_mode,
    use_channels_last,
)
from lossland.engine._stats import (
    STATS,
    EvalData,
    LossFn,
    finish_stats,
    per_sample_losses,
    point_stats,
    select_samples,
)

__all__ = [
    "STATS",
    "BNMode",
    "Block",
    "Engine",
    "EngineOptions",
    "EvalData",
    "LossFn",
    "Precision",
    "batchnorms",
    "bind_flat",
    "check_precision",
    "finish_stats",
    "is_bn_statistic",
    "per_sample_losses",
    "point_stats",
    "precision_mode",
    "select_samples",
    "set_bn_mode",
    "use_channels_last",
    "working_copy",
]
