"""Which tensors of a model move along a direction, and in which dtype: one rule.

The engine's working copy, every producer of directions (random, models, PCA, Hessian) and the
checkpoint loader ask :func:`moving_dtype` / :func:`dtype_kind`, so a tensor is never silently
cast to something that changes its values:

* **real** floating point (float16, bfloat16, float32, float64) moves, in the run's dtype (the
  grid is computed in float32 or float64 whatever the weights are stored in);
* **complex** moves too, as a pair of reals: in the complex dtype of the run's (complex64 for
  float32). Its direction is complex (random directions draw both parts); a real direction
  moves only its real part. Filter norms are the norms of the complex values;
* **integer** and **bool** tensors (step counters, indices, masks) never move and keep their
  dtype;
* anything else (float8 and float4 formats, quantized types) is refused with one line: such
  weights only mean something with scales a state dict does not carry.

A checkpoint's tensor fits a model's only when both are of the same kind (a complex or integer
checkpoint for a float model is refused, never cast); real floats convert to the model's
precision (as ``load_state_dict`` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

from lossland.errors import LosslandError, arg

Kind = Literal["real", "complex", "integer", "bool", "unsupported"]
REAL = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def dtype_kind(dtype: torch.dtype) -> Kind:
    """What lossland can do with tensors of ``dtype`` (see the module docstring)."""
    if dtype in REAL:
        return "real"
    if dtype in (torch.complex32, torch.complex64, torch.complex128):
        return "complex"
    if dtype == torch.bool:
        return "bool"
    if not dtype.is_floating_point and not dtype.is_complex:
        try:
            torch.iinfo(dtype)
        except TypeError:  # quantized and bit types
            return "unsupported"
        return "integer"
    return "unsupported"  # float8, float4, …


def check_dtype(name: str, dtype: torch.dtype, *, where: str = "the model") -> None:
    """Refuse a tensor lossland can neither move nor keep exactly."""
    if dtype_kind(dtype) == "unsupported":
        kind = str(dtype).removeprefix("torch.")
        raise LosslandError(
            f"{where} holds {name} as {kind}, which lossland cannot move along a direction "
            "(low-precision and quantized formats need scales a state dict does not carry): "
            "convert the model to float32 (model.float()) or save its high-precision weights"
        )


def moving_dtype(
    name: str, dtype: torch.dtype, compute: torch.dtype, *, where: str = "the model"
) -> torch.dtype | None:
    """The dtype tensor ``name`` (stored as ``dtype``) moves in on a grid computed in
    ``compute`` (float32 or float64, or bfloat16 for a bf16 network); None: it never moves."""
    check_dtype(name, dtype, where=where)
    kind = dtype_kind(dtype)
    if kind == "real":
        return compute
    if kind == "complex":
        if compute not in COMPLEX:
            raise LosslandError(
                f"the model's {name} is complex and {str(compute).removeprefix('torch.')} has "
                f"no complex counterpart: use {arg('precision')} fp32 for complex models"
            )
        return COMPLEX[compute]
    return None


def moves(name: str, dtype: torch.dtype, *, where: str = "the model") -> bool:
    """Does a tensor of ``dtype`` move along directions (real or complex)? Refuses the
    unsupported ones."""
    return moving_dtype(name, dtype, torch.float32, where=where) is not None


def as_real(tensor: Tensor) -> Tensor:
    """A complex tensor as its reals (..., 2), a view; a real one as it is. Inner products and
    norms over these are those of C^n as R^2n."""
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def check_storable(tensors: Mapping[str, Tensor], *, what: str) -> None:
    """Refuse, before writing, a tensor safetensors cannot store (complex128, complex32)."""
    for name, tensor in tensors.items():
        if tensor.dtype in (torch.complex128, torch.complex32):
            kind = str(tensor.dtype).removeprefix("torch.")
            raise LosslandError(
                f"{what} holds {name} as {kind}, which safetensors cannot store: convert the "
                "model to complex64 (model.to(torch.complex64)) first"
            )
