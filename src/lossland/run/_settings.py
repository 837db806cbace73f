"""What defines a run, for resuming it: the settings recorded in a surface file, and why a
file cannot be resumed by this run (in the user's terms)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lossland._version import __version__
from lossland.directions import Directions
from lossland.errors import SurfaceFileError, arg
from lossland.io import Surface, SurfaceReadError, check_writable

# What must match for a rerun to resume a file (the rest of the settings only explain a refusal).
RESUME_KEYS = (
    "x",
    "y",
    "scheme",
    "bn",
    "dtype",
    "precision",
    "sem_target",
    "min_batches",
    "refine",
    "directions",
    "model",
    "architecture",
    "data",
    "loss",
    "split",
)


def run_attributes(
    directions: Directions, *, scheme: str, bn: str, dtype: str, samples: int, seed: int
) -> dict[str, Any]:
    cosine = directions.cosine
    return {
        "lossland_version": __version__,
        "torch_version": torch.__version__,
        "directions_kind": directions.kind,
        "directions_sha256": directions.fingerprint(),
        "norm": directions.norm,
        "ignore": directions.ignore,
        "orthogonalized": directions.orthogonalized,
        "cosine": "n/a" if cosine is None else cosine,
        "directions_info": dict(directions.info),
        "scheme": scheme,
        "bn": bn,
        "dtype": dtype,
        "samples": samples,
        "seed": directions.seed if directions.seed is not None else seed,
        # the moving tensors, when a subset moves (from_recipe redraws on them)
        **({} if directions.params is None else {"params": list(directions.params)}),
    }


def start_or_resume(
    out: str | Path | None,
    xs: np.ndarray,
    ys: np.ndarray | None,
    split: str,
    settings: Mapping[str, Any],
    overwrite: bool,
) -> Surface:
    """A fresh result, or the file's when it holds this very run (refusing anything else)."""
    fresh = Surface.empty(xs, ys, split=split)
    if out is None:
        return fresh
    path = check_writable(out)
    if not path.exists() or overwrite:
        return fresh
    fix = f"pass {arg('overwrite')} to replace it or choose another {arg('out')}"
    previous = load_resumable(path, fix)
    old = previous.settings
    if not old:
        raise SurfaceFileError(
            f"{path} exists and holds no lossland run settings (written by another tool?): {fix}"
        )
    differences = setting_differences(old, settings)
    if not differences and (
        previous.split != split
        or previous.shape != fresh.shape
        or not np.array_equal(previous.x, xs)
        or (ys is not None and (previous.y is None or not np.array_equal(previous.y, ys)))
    ):
        differences = ["its coordinates do not match its recorded settings"]
    if differences:
        detail = "; ".join(differences[:4])
        if len(differences) > 4:
            detail += f"; and {len(differences) - 4} more"
        raise SurfaceFileError(f"{path} was computed with other settings ({detail}): {fix}")
    return previous


def load_resumable(path: Path, fix: str) -> Surface:
    """The existing surface file ``path`` that a run would resume; one that cannot be read is
    refused in one line ending in ``fix`` (what to do instead)."""
    try:
        return Surface.load(path)
    except SurfaceReadError as exc:
        raise SurfaceFileError(
            f"{path} exists but cannot be resumed: it {exc.problem}; {fix}"
        ) from None
    except SurfaceFileError as exc:
        raise SurfaceFileError(f"{path} exists but cannot be resumed ({exc}); {fix}") from None


# Resume settings as the user knows them: the option, or what a fingerprint stands for.
# Settings that are not an argument by themselves, as the user knows them.
_DESCRIBED = {"directions_kind": "the kind of directions"}
_FINGERPRINTS = {
    "directions": (
        ("seed", "norm", "ignore", "orthogonalize", "directions_kind", "params"),
        f"other directions (another {arg('directions')} file or other checkpoints)",
    ),
    "data": (("split", "samples", "seed"), "other evaluation data (other data files)"),
    "model": ((), "other model weights (another or retrained checkpoint)"),
    "architecture": ((), f"another model architecture ({arg('model')})"),
}


def setting_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Why a file cannot be resumed by this run, in the user's terms (empty: it can)."""

    def shown(key: str, value: Any) -> str:
        if value is None:
            return "none (a 1-D line)" if key == "y" else "not recorded"
        return str(value)

    def option(key: str) -> str:
        before, now = shown(key, old.get(key)), shown(key, new.get(key))
        return f"{_DESCRIBED.get(key, arg(key))}: file has {before}, this run {now}"

    reported: list[str] = []
    lines: list[str] = []
    for key in RESUME_KEYS:
        if key not in _FINGERPRINTS and old.get(key) != new.get(key):
            reported.append(key)
            lines.append(option(key))
    for key, (causes, meaning) in _FINGERPRINTS.items():
        if old.get(key) == new.get(key):
            continue
        found = [k for k in causes if k in old and old.get(k) != new.get(k)]
        if not found:
            lines.append(meaning)
        for k in found:
            if k not in reported:
                reported.append(k)
                lines.append(option(k))
    return lines


def architecture(model: nn.Module, attrs: Mapping[str, Any] | None) -> str:
    """What network the weights belong to: the CLI's model spec, else the module's structure."""
    spec = (attrs or {}).get("model_spec")
    text = str(spec) if spec else f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
