"""Directions in weight space: random (filter/layer-normalized), orthogonalized, saved, reloaded.

A direction is a dict ``{name: tensor}`` keyed like the model's parameters (and, for
model-to-model directions, its floating-point buffers). Li et al.'s filter normalization
rescales every output filter (conv) or output row (linear) of a Gaussian direction to the norm
of the same filter of θ*; one-dimensional tensors (biases, BatchNorm γ/β) get a zero direction
under ``ignore="biasbn"``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from lossland.atomic import atomic_path
from lossland.errors import LosslandError
from lossland.plane import rescale_

Norm = Literal["filter", "layer", "none"]
Ignore = Literal["biasbn", "none"]
Kind = Literal["random", "pca", "hessian", "models"]
NORMS: tuple[str, ...] = get_args(Norm)
IGNORES: tuple[str, ...] = get_args(Ignore)
Direction = dict[str, Tensor]


@dataclass(frozen=True)
class Directions:
    """One (1-D) or two (2-D) directions and how they were made.

    ``origin`` is the point the plane is centred on when it is not the model's own weights
    (model-to-model planes start at the first checkpoint).
    """

    x: Direction
    y: Direction | None = None
    kind: Kind = "random"
    norm: Norm = "filter"
    ignore: Ignore = "biasbn"
    seed: int | None = None
    orthogonalized: bool = False
    origin: Direction | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        return 1 if self.y is None else 2

    @property
    def cosine(self) -> float | None:
        """Cosine similarity of the two directions over all tensors (None for 1-D)."""
        return None if self.y is None else cosine(self.x, self.y)

    def metadata(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "norm": self.norm,
            "ignore": self.ignore,
            "seed": self.seed,
            "orthogonalized": self.orthogonalized,
            "cosine": self.cosine,
            "ndim": self.ndim,
            "has_origin": self.origin is not None,
            **dict(self.info),
        }

    def fingerprint(self) -> str:
        """sha256 of the tensors' names and bytes: equal fingerprints mean identical directions."""
        digest = hashlib.sha256()
        for prefix, tensors in self._groups():
            for name in sorted(tensors):
                tensor = tensors[name].detach().to("cpu").contiguous()
                digest.update(f"{prefix}/{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
                digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def _groups(self) -> list[tuple[str, Direction]]:
        groups = [("x", self.x)]
        if self.y is not None:
            groups.append(("y", self.y))
        if self.origin is not None:
            groups.append(("origin", self.origin))
        return groups

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a safetensors file: tensors ``x/<name>``, ``y/<name>``; settings in metadata."""
        from safetensors.torch import save_file

        tensors = {
            f"{prefix}/{name}": t.detach().to("cpu").contiguous()
            for prefix, group in self._groups()
            for name, t in group.items()
        }
        meta = {"lossland": json.dumps(self.metadata(), sort_keys=True, default=str)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Directions:
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise LosslandError(f"directions file {path} not found: check the --directions path")
        try:
            with safe_open(str(path), framework="pt") as handle:
                raw_meta = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
            meta = json.loads(raw_meta.get("lossland", "{}"))
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise LosslandError(
                f"directions file {path} is corrupt or not a safetensors file ({exc}): recreate it"
            ) from None
        groups: dict[str, Direction] = {"x": {}, "y": {}, "origin": {}}
        for key, tensor in tensors.items():
            prefix, _, name = key.partition("/")
            if prefix not in groups or not name:
                raise LosslandError(f"directions file {path} has an unexpected tensor {key!r}")
            groups[prefix][name] = tensor
        if not groups["x"]:
            raise LosslandError(f"directions file {path} holds no x direction")
        known = {"kind", "norm", "ignore", "seed", "orthogonalized", "cosine", "ndim", "has_origin"}
        kind = meta.get("kind", "random")
        norm = meta.get("norm", "filter")
        ignore = meta.get("ignore", "biasbn")
        if kind not in get_args(Kind) or norm not in NORMS or ignore not in IGNORES:
            raise LosslandError(f"directions file {path} has malformed settings {meta}")
        return cls(
            x=groups["x"],
            y=groups["y"] or None,
            kind=kind,
            norm=norm,
            ignore=ignore,
            seed=meta.get("seed"),
            orthogonalized=bool(meta.get("orthogonalized", False)),
            origin=groups["origin"] or None,
            info={k: v for k, v in meta.items() if k not in known},
        )

    def check_fits(self, model: nn.Module, *, source: str = "directions") -> None:
        """Raise a one-line error listing names and shapes that do not match ``model``."""
        targets: dict[str, Tensor] = dict(model.named_parameters())
        targets.update(dict(model.named_buffers()))
        problems: list[str] = []
        for prefix, group in self._groups():
            for name, tensor in group.items():
                if name not in targets:
                    problems.append(f"{prefix}/{name} not in the model")
                elif tuple(targets[name].shape) != tuple(tensor.shape):
                    problems.append(
                        f"{prefix}/{name} shape {tuple(tensor.shape)} vs model "
                        f"{tuple(targets[name].shape)}"
                    )
        if self.y is not None and set(self.y) != set(self.x):
            problems.append("x and y cover different tensors")
        if problems:
            shown = "; ".join(problems[:6]) + (
                f"; and {len(problems) - 6} more" if len(problems) > 6 else ""
            )
            raise LosslandError(
                f"{source} do not fit this model ({len(problems)} mismatches: {shown}): "
                "use directions made for this model, or drop --directions to draw new ones"
            )


def cosine(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    dot = sum(float(torch.sum(a[k].double() * b[k].double())) for k in a)
    na = sum(float(torch.sum(a[k].double() ** 2)) for k in a) ** 0.5
    nb = sum(float(torch.sum(b[k].double() ** 2)) for k in b) ** 0.5
    return dot / (na * nb) if na > 0 and nb > 0 else 0.0


def _segments(t: Tensor) -> Tensor:
    """The tensor as (filters, elements): dim 0 is the output filter of conv and linear weights."""
    return t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(1, -1)


def normalize_(
    direction: Direction, reference: Mapping[str, Tensor], *, norm: Norm, ignore: Ignore
) -> Direction:
    """Rescale ``direction`` in place, tensor by tensor, to ``reference``'s filter/layer norms."""
    for name, d in direction.items():
        ref = reference[name].detach().to(d.dtype)
        if d.dim() <= 1:
            if ignore == "biasbn":
                d.zero_()
            elif norm != "none":
                rescale_(d.view(1, -1), ref.reshape(1, -1), "layer")
        elif norm != "none":
            rescale_(_segments(d), _segments(ref), norm)
    return direction


def _gaussian_like(params: Iterable[tuple[str, Tensor]], generator: torch.Generator) -> Direction:
    # Drawn on the CPU in float32 so a seed gives the same directions on every device.
    return {
        name: torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.dtype)
        for name, p in params
    }


def random_directions(
    model: nn.Module,
    *,
    seed: int = 0,
    norm: Norm = "filter",
    ignore: Ignore = "biasbn",
    ndim: Literal[1, 2] = 2,
    orthogonalize: bool = False,
) -> Directions:
    """Gaussian directions shaped like ``model``'s parameters, normalized as Li et al.

    The x direction depends only on the seed, so a 1-D line is the x axis of the 2-D plane.
    """
    if norm not in NORMS:
        raise LosslandError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")
    if ignore not in IGNORES:
        raise LosslandError(f"unknown ignore policy {ignore!r}: choose one of {', '.join(IGNORES)}")
    reference = {name: p.detach().to("cpu") for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    dx = normalize_(
        _gaussian_like(reference.items(), generator), reference, norm=norm, ignore=ignore
    )
    dy = None
    if ndim == 2:
        dy = normalize_(
            _gaussian_like(reference.items(), generator), reference, norm=norm, ignore=ignore
        )
    directions = Directions(x=dx, y=dy, kind="random", norm=norm, ignore=ignore, seed=seed)
    return orthogonalized(directions, reference) if orthogonalize and dy is not None else directions


def orthogonalized(directions: Directions, reference: Mapping[str, Tensor]) -> Directions:
    """Gram–Schmidt y against x over all tensors, then normalize y again as before."""
    if directions.y is None:
        return directions
    x, y = directions.x, directions.y
    dot = sum(float(torch.sum(x[k].double() * y[k].double())) for k in x)
    xx = sum(float(torch.sum(x[k].double() ** 2)) for k in x)
    coef = dot / xx if xx > 0 else 0.0
    y_new = {k: (y[k].double() - coef * x[k].double()).to(y[k].dtype) for k in y}
    if directions.norm != "none":
        normalize_(y_new, reference, norm=directions.norm, ignore=directions.ignore)
    info = dict(directions.info)
    info["cosine_before_orthogonalization"] = directions.cosine
    return replace(directions, y=y_new, orthogonalized=True, info=info)


def model_directions(
    start: Mapping[str, Tensor],
    *ends: Mapping[str, Tensor],
    include_buffers: bool = True,
) -> Directions:
    """Directions from one model to others: x = θ₂ − θ₁ (and y = θ₃ − θ₁), origin θ₁.

    Floating-point buffers (BatchNorm running statistics) are interpolated with the weights
    when ``include_buffers``; integer buffers (``num_batches_tracked``) are never moved.
    """
    if not 1 <= len(ends) <= 2:
        raise LosslandError("model-to-model directions need two or three checkpoints")
    names = [
        k
        for k, v in start.items()
        if v.is_floating_point() and (include_buffers or not _is_buffer_name(k))
    ]
    for end in ends:
        missing = [k for k in names if k not in end or end[k].shape != start[k].shape]
        if missing:
            raise LosslandError(
                f"checkpoints hold different models ({len(missing)} tensors differ, e.g. "
                f"{missing[0]}): compare checkpoints of one architecture"
            )
    origin = {k: start[k].detach().clone() for k in names}
    deltas = [{k: (end[k].detach().to(start[k].dtype) - start[k]) for k in names} for end in ends]
    return Directions(
        x=deltas[0],
        y=deltas[1] if len(deltas) == 2 else None,
        kind="models",
        norm="none",
        ignore="none",
        origin=origin,
    )


def _is_buffer_name(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ("running_mean", "running_var")
