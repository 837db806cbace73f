"""Directions in weight space: random (filter/layer-normalized), orthogonalized, saved, reloaded.

A direction is a dict ``{name: tensor}`` keyed like the model's parameters (and, for
model-to-model directions, its floating-point buffers). Li et al.'s filter normalization
rescales every output filter (conv) or output row (linear) of a Gaussian direction to the norm
of the same filter of θ*; one-dimensional tensors (biases, BatchNorm γ/β) get a zero direction
under ``ignore="biasbn"``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from lossland.atomic import atomic_path
from lossland.errors import LosslandError
from lossland.flat import FlatLayout
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

    # Directions are values: computed once per instance (each is a full pass over the tensors,
    # and a surface run asks for them several times).
    @functools.cached_property
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
            "order": list(self.x),
            **dict(self.info),
        }

    def fingerprint(self) -> str:
        """sha256 of the tensors' names and bytes: equal fingerprints mean identical directions."""
        return self._fingerprint

    @functools.cached_property
    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for prefix, tensors in self._groups():
            for name in sorted(tensors):
                tensor = tensors[name].detach().to("cpu")
                if not tensor.is_contiguous():  # channels_last views: hash in NCHW order
                    tensor = tensor.contiguous()
                digest.update(f"{prefix}/{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
                digest.update(tensor.view(-1).view(torch.uint8).numpy().data)  # no copy
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
        groups: dict[str, Direction] = {"x": {}, "y": {}, "origin": {}}
        try:
            with safe_open(str(path), framework="pt") as handle:
                raw_meta = handle.metadata() or {}
                meta = json.loads(raw_meta.get("lossland", "{}"))
                names: dict[str, list[str]] = {prefix: [] for prefix in groups}
                for key in handle.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                    prefix, _, name = key.partition("/")
                    if prefix not in groups or not name:
                        raise LosslandError(
                            f"directions file {path} has an unexpected tensor {key!r}: recreate it"
                        )
                    names[prefix].append(name)
                order = {n: i for i, n in enumerate(meta.get("order", []))}
                for prefix, group_names in names.items():
                    if not group_names:
                        continue
                    group_names.sort(key=lambda n: (order.get(n, len(order)), n))
                    keys = [f"{prefix}/{n}" for n in group_names]
                    dtype = handle.get_slice(keys[0]).get_dtype()
                    # Shapes first, then one tensor at a time into lossland's flat layout:
                    # the peak is the directions plus one tensor, not twice the directions.
                    reference = {
                        n: torch.empty(
                            handle.get_slice(k).get_shape(),
                            device="meta",
                            dtype=_DTYPES.get(dtype, torch.float32),
                        )
                        for n, k in zip(group_names, keys, strict=True)
                    }
                    groups[prefix] = empty_direction(reference)
                    for n, k in zip(group_names, keys, strict=True):
                        groups[prefix][n].copy_(handle.get_tensor(k))
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise LosslandError(
                f"directions file {path} is corrupt or not a safetensors file ({exc}): recreate it"
            ) from None
        if not groups["x"]:
            raise LosslandError(f"directions file {path} holds no x direction")
        known = {
            "kind",
            "norm",
            "ignore",
            "seed",
            "orthogonalized",
            "cosine",
            "ndim",
            "has_origin",
            "order",
        }
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


def dot(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """Σ ⟨a_k, b_k⟩ over all tensors, accumulated in float64.

    Formed a chunk of ~1M elements at a time: a float64 copy of a whole 4096×4096 matrix would
    add hundreds of MB to the peak memory.
    """
    return sum(
        float(torch.sum(xs.double() * ys.double()))
        for k in a
        for xs, ys in zip(_chunks(a[k]), _chunks(b[k]), strict=True)
    )


def _chunks(t: Tensor, elements: int = 1 << 20) -> list[Tensor]:
    """Views of ``t`` along dim 0 of about ``elements`` each (any memory layout)."""
    if t.dim() == 0:
        return [t]
    step = max(1, elements // max(1, t[0].numel()))
    return list(torch.split(t, step))


def cosine(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    na, nb = dot(a, a) ** 0.5, dot(b, b) ** 0.5
    return dot(a, b) / (na * nb) if na > 0 and nb > 0 else 0.0


def normalize_(
    direction: Direction, reference: Mapping[str, Tensor], *, norm: Norm, ignore: Ignore
) -> Direction:
    """Rescale ``direction`` in place, tensor by tensor, to ``reference``'s filter/layer norms.

    Filters are slices along dim 0 (output channels of a conv, output rows of a linear layer).
    """
    for name, d in direction.items():
        ref = reference[name].detach().to(d.dtype)
        if d.dim() <= 1:
            if ignore == "biasbn":
                d.zero_()
            elif norm != "none":
                rescale_(d, ref, "layer")
        elif norm != "none":
            rescale_(d, ref, norm)
    return direction


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def empty_direction(reference: Mapping[str, Tensor]) -> Direction:
    """Zeros shaped like ``reference``, as views of one flat vector in lossland's layout
    (:mod:`lossland.flat`, channels_last for 4-D tensors), so the engine needs no copy."""
    dtypes = {t.dtype for t in reference.values()}
    if len(dtypes) != 1:  # mixed precision models: plain tensors, the engine copies them
        return {name: torch.zeros(t.shape, dtype=t.dtype) for name, t in reference.items()}
    layout = FlatLayout.of({n: t.shape for n, t in reference.items()}, channels_last=True)
    return layout.allocate(dtype=dtypes.pop())[1]


def _gaussian_like(reference: Mapping[str, Tensor], generator: torch.Generator) -> Direction:
    # Drawn on the CPU in float32, tensor by tensor in a fixed order, so a seed gives the same
    # directions on every device and in every memory layout.
    direction = empty_direction(reference)
    for d in direction.values():
        if d.is_contiguous() and d.dtype == torch.float32:
            torch.randn(d.shape, generator=generator, out=d)  # no temporary for big matrices
        else:
            d.copy_(torch.randn(d.shape, generator=generator, dtype=torch.float32))
    return direction


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
    dx = normalize_(_gaussian_like(reference, generator), reference, norm=norm, ignore=ignore)
    dy = None
    if ndim == 2:
        dy = normalize_(_gaussian_like(reference, generator), reference, norm=norm, ignore=ignore)
    directions = Directions(x=dx, y=dy, kind="random", norm=norm, ignore=ignore, seed=seed)
    return orthogonalized(directions, reference) if orthogonalize and dy is not None else directions


def orthogonalized(directions: Directions, reference: Mapping[str, Tensor]) -> Directions:
    """Gram–Schmidt y against x over all tensors, then normalize y again as before."""
    if directions.y is None:
        return directions
    x, y = directions.x, directions.y
    xx = dot(x, x)
    coef = dot(x, y) / xx if xx > 0 else 0.0
    y_new = empty_direction(y)
    for k, t in y_new.items():
        for out, ys, xs in zip(_chunks(t), _chunks(y[k]), _chunks(x[k]), strict=True):
            out.copy_(ys.double() - coef * xs.double())
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
