"""The evaluation engine: the hot loop, the evaluation contract and the evaluation set,
per-point statistics, precision and memory formats, BatchNorm modes."""

from lossland.engine._batchnorm import call_order, dataset_statistics
from lossland.engine._compile import check_compile_cache
from lossland.engine._contract import (
    IGNORE_INDEX,
    Accuracy,
    Evaluator,
    Forward,
    Loss,
    LossFn,
    accumulate,
    resolve_evaluator,
)
from lossland.engine._copy import (
    BNMode,
    batchnorms,
    bind_flat,
    cast_copy,
    check_dtypes,
    working_copy,
)
from lossland.engine._data import (
    CACHE_FRACTION,
    Batch,
    DataMode,
    EvalData,
    eval_data,
    known_samples,
    select_samples,
    subset,
    subset_index,
)
from lossland.engine._engine import Block, Engine, EngineOptions
from lossland.engine._failures import DataReadError, user_failure
from lossland.engine._precision import (
    Precision,
    check_precision,
    layout_channels_last,
    network_dtype,
    one_point_only,
    precision_mode,
    use_channels_last,
)
from lossland.engine._presets import (
    PRESETS,
    causal_lm,
    image_classification,
    own_loss,
    regression,
    seq2seq_lm,
    sequence_classification,
    token_classification,
)
from lossland.engine._shard import shard_refusal
from lossland.engine._state import ModelState
from lossland.engine._suffix import stacks

__all__ = [
    "CACHE_FRACTION",
    "IGNORE_INDEX",
    "PRESETS",
    "Accuracy",
    "BNMode",
    "Batch",
    "Block",
    "DataMode",
    "DataReadError",
    "Engine",
    "EngineOptions",
    "EvalData",
    "Evaluator",
    "Forward",
    "Loss",
    "LossFn",
    "ModelState",
    "Precision",
    "accumulate",
    "batchnorms",
    "bind_flat",
    "call_order",
    "cast_copy",
    "causal_lm",
    "check_compile_cache",
    "check_dtypes",
    "check_precision",
    "dataset_statistics",
    "eval_data",
    "image_classification",
    "known_samples",
    "layout_channels_last",
    "network_dtype",
    "one_point_only",
    "own_loss",
    "precision_mode",
    "regression",
    "resolve_evaluator",
    "select_samples",
    "seq2seq_lm",
    "sequence_classification",
    "shard_refusal",
    "stacks",
    "subset",
    "subset_index",
    "token_classification",
    "use_channels_last",
    "user_failure",
    "working_copy",
]


def __dir__() -> list[str]:
    return list(__all__)
