"""Checkpoints: safetensors with JSON metadata; plain state dicts only with weights_only=True."""

from __future__ import annotations

import json
import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lossland._version import __version__
from lossland.core import check_storable, dtype_kind
from lossland.errors import CheckpointError, LosslandError, arg, first_line
from lossland.io._atomic import atomic_path, sha256_file
from lossland.io._limits import READ_SHARE, check_budget, check_zip, not_a_file
from lossland.io._metadata import Fail, parse_json, parse_json_object

METADATA_KEY = "lossland"


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a model: a registry name or ``package.module:factory``, plus options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "options": dict(self.options)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        def fail(problem: str) -> LosslandError:
            return LosslandError(f"malformed model spec {text!r}: it {problem}")

        return cls.from_dict(parse_json(text, fail, what="JSON"), fail)

    @classmethod
    def from_dict(cls, raw: Any, fail: Fail) -> ModelSpec:
        """The spec in a file's metadata, checked by type: ``name`` a non-empty string,
        ``options`` an object of keyword arguments (JSON values). Only data: whether the name may
        be built is :func:`lossland.zoo.load_model`'s decision."""
        if not isinstance(raw, dict):
            raise fail(f"has a model spec that is a JSON {type(raw).__name__}, not an object")
        name, options = raw.get("name"), raw.get("options", {})
        if not isinstance(name, str) or not name.strip() or len(name) > 300:
            raise fail(
                f"has a model name {str(name)[:60]!r}, expected a registry name or "
                "package.module:factory"
            )
        if not isinstance(options, dict):
            raise fail(
                f"has model options that are a JSON {type(options).__name__}, expected an object"
            )
        bad = [key for key in options if not key.isidentifier()]
        if bad:
            raise fail(f"has a model option named {bad[0][:60]!r}, not a keyword")
        return cls(name=name, options=dict(options))

    def __str__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in sorted(self.options.items()))
        return f"{self.name}({opts})"


@dataclass(frozen=True)
class Checkpoint:
    """A state dict and what lossland knows about it (model spec, training settings, accuracies)."""

    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    sha256: str | None = None

    @property
    def model_spec(self) -> ModelSpec | None:
        """The model the metadata names (None when it names none), validated as data."""
        if "model" not in self.metadata:
            return None
        return ModelSpec.from_dict(self.metadata["model"], self._fail)

    def _fail(self, problem: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {self.path} {problem}: re-save it")


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached, contiguous CPU copy of the state dict (safetensors needs contiguous tensors)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(
    model: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    spec: ModelSpec | None = None,
    overwrite: bool = True,
    **metadata: Any,
) -> Path:
    """Write ``model``'s state dict atomically as safetensors, with ``spec`` and ``metadata``.

    Args:
        model: a module, or its state dict.
        path: the file to write.
        spec: the model's :class:`ModelSpec`, so that :func:`lossland.load_model` can rebuild it.
        overwrite: ``False`` refuses an existing ``path`` (see :func:`lossland.io.check_output`).
        **metadata: recorded beside the weights as JSON (other values as their ``str``).

    Returns:
        The path written.

    Raises:
        LosslandError: a ``path`` that may not be written, or tensors safetensors cannot
            store.

    Example:
        >>> lossland.save_checkpoint(model, "model.safetensors", spec=lossland.ModelSpec("small"))
    """
    from safetensors.torch import save_file

    tensors = (
        state_of(model)
        if isinstance(model, nn.Module)
        else {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.items()}
    )
    check_storable(tensors, what="the model")
    meta = dict(metadata)
    if spec is not None:
        meta["model"] = {"name": spec.name, "options": dict(spec.options)}
    meta.setdefault("lossland_version", __version__)
    meta.setdefault("torch_version", torch.__version__)
    text = json.dumps(meta, sort_keys=True, default=str)
    with atomic_path(path, overwrite=overwrite, name="path") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", METADATA_KEY: text})
    return Path(path)


def is_safetensors(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a safetensors checkpoint, or a plain state dict saved with ``torch.save``.

    Pickles are opened only with ``weights_only=True``: no code in the file ever runs.

    Args:
        path: the checkpoint file.

    Returns:
        A :class:`Checkpoint`: the state dict, lossland's metadata (model spec, training
        settings), the path and its sha256.

    Raises:
        CheckpointError: a missing, unreadable or malformed file, or one over the size bounds.

    Example:
        >>> ck = lossland.load_checkpoint("model.safetensors")
        >>> model.load_state_dict(ck.state_dict)
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} {not_a_file(path)}: check the path")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty: re-save it")
    if is_safetensors(path):  # offsets checked by safetensors: the tensors fit in the file
        size = path.stat().st_size
        check_budget(size * READ_SHARE, source=f"checkpoint {path}", what=f"{size:,} bytes")
        state, meta = _load_safetensors(path)
    else:
        state, meta = _load_pickle(path), {}
    _check_tensors(path, state)
    bad = [
        k
        for k, v in state.items()
        if dtype_kind(v.dtype) in ("real", "complex") and not torch.isfinite(v).all()
    ]
    if bad:
        names = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(
            f"checkpoint {path} holds NaN or inf in {len(bad)} tensor(s) ({names}): "
            "the training run diverged; use an earlier checkpoint"
        )
    return Checkpoint(state_dict=state, metadata=meta, path=path, sha256=sha256_file(path))


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            raw_meta = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({first_line(exc)}): re-save it"
        ) from None
    meta: dict[str, Any] = {}
    if METADATA_KEY in raw_meta:

        def fail(problem: str) -> CheckpointError:
            return CheckpointError(f"checkpoint {path} {problem}: re-save it")

        meta = parse_json_object(raw_meta[METADATA_KEY], fail, what="lossland metadata")
    return state, meta


def _check_tensors(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    """Weights must be real data in dense CPU tensors: a meta-device tensor has no values, and a
    sparse or quantized one is not a state dict that lossland can move along a direction."""
    for key, value in state.items():
        if value.is_meta:
            raise CheckpointError(
                f"checkpoint {path} holds tensor {key} on the meta device (no values): save the "
                "state dict of a model whose weights exist"
            )
        if value.device.type != "cpu" or value.layout != torch.strided or value.is_quantized:
            raise CheckpointError(
                f"checkpoint {path} holds tensor {key} as {value.layout} {value.dtype} on "
                f"{value.device}, not dense CPU weights: save model.state_dict()"
            )


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} {problem}: re-save it")

    if zipfile.is_zipfile(path):  # torch's format: a zip whose records may be deflated
        try:
            with zipfile.ZipFile(path) as archive:
                check_zip(archive, path.stat().st_size, fail, source=f"checkpoint {path}")
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise fail(f"is not a readable zip ({first_line(exc)[:120]})") from None
    try:
        with warnings.catch_warnings():
            # torch warns about foreign pickle protocols before refusing them; the error says it.
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"checkpoint {path} holds pickled Python objects, not just tensors; lossland loads "
            "pickles only with weights_only=True and never runs their code: save "
            "model.state_dict() or use safetensors"
        ) from None
    except Exception as exc:  # truncated zip, text, garbage: whatever torch.load trips on
        raise CheckpointError(
            f"checkpoint {path} is neither safetensors nor a readable torch file "
            f"({first_line(exc)[:120]}): re-save it"
        ) from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(
            f"checkpoint {path} is not a state dict of named tensors: save model.state_dict()"
        )
    return dict(obj)


def mismatch_report(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Every way ``state`` does not fit ``model``: missing keys, unexpected keys, wrong shapes."""
    expected = model.state_dict()
    problems = [f"missing {k} {tuple(v.shape)}" for k, v in expected.items() if k not in state]
    problems += [f"unexpected {k} {tuple(v.shape)}" for k, v in state.items() if k not in expected]
    problems += [
        f"shape of {k}: checkpoint {tuple(state[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    return problems


def dtype_report(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Every tensor of ``state`` that ``load_state_dict`` would cast to another kind of number
    (core.dtype_kind: complex to real, integers or bools to floats, …) or that lossland cannot
    use (float8, quantized): real floats of another precision convert, the rest never."""
    problems = []
    for key, target in model.state_dict().items():
        if key not in state:
            continue
        ours, theirs = dtype_kind(target.dtype), dtype_kind(state[key].dtype)
        if ours != theirs or "unsupported" in (ours, theirs):
            problems.append(f"{key}: checkpoint {_dtype(state[key])}, model {_dtype(target)}")
    return problems


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def load_state_into(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Copy ``state`` into ``model`` strictly; a mismatch raises an error listing them all (names
    and shapes first, then dtypes that would change kind: never cast silently)."""
    problems = mismatch_report(model, state)
    if problems:
        shown = "; ".join(problems[:8]) + (
            f"; and {len(problems) - 8} more" if len(problems) > 8 else ""
        )
        raise CheckpointError(
            f"{source} does not fit the model ({len(problems)} mismatches: {shown}): "
            f"pick the model it was trained with ({arg('model')})"
        )
    kinds = dtype_report(model, state)
    if kinds:
        shown = "; ".join(kinds[:4]) + (f"; and {len(kinds) - 4} more" if len(kinds) > 4 else "")
        raise CheckpointError(
            f"{source} holds {len(kinds)} tensor(s) of another kind than the model's ({shown}); "
            "lossland never casts complex to real, integers or bools to floats, or float8: "
            "save the checkpoint from this model (model.state_dict()), or convert the model"
        )
    model.load_state_dict(dict(state), strict=True)
