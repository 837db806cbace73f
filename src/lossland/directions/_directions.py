"""Directions in weight space: random (filter/layer-normalized), orthogonalized, saved, reloaded.

A direction is a dict ``{name: tensor}`` keyed like the model's parameters (and, for
model-to-model directions, its floating-point buffers). Li et al.'s filter normalization
rescales every output filter (conv) or output row (linear) of a Gaussian direction to the norm
of the same filter of θ*; one-dimensional tensors (biases, BatchNorm γ/β) get a zero direction
under ``ignore="biasbn"``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from lossland.core import (
    FlatLayout,
    Kind,
    as_real,
    check_storable,
    dtype_kind,
    fingerprint,
    recorded_kind,
)
from lossland.errors import LosslandError, arg, first_line
from lossland.io import (
    READ_SHARE,
    Check,
    atomic_path,
    check_budget,
    check_schema,
    is_numbers,
    is_optional,
    is_pair_of_texts,
    is_points,
    is_texts,
    not_a_file,
    parse_json_object,
)

Norm = Literal["filter", "layer", "none"]
Ignore = Literal["biasbn", "none"]
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
    # The moving tensors when only a subset of the model moves (``params``); None: all of them.
    params: tuple[str, ...] | None = None

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
            **({} if self.params is None else {"params": list(self.params)}),
            **dict(self.info),
        }

    def restricted(self, names: Sequence[str] | None) -> Directions:
        """These directions on the tensors ``names`` only (the others do not move); None: as
        they are."""
        if names is None:
            return self
        keep = [n for n in self.x if n in set(names)]

        def only(group: Direction | None) -> Direction | None:
            return None if group is None else {n: group[n] for n in keep}

        return replace(
            self,
            x={n: self.x[n] for n in keep},
            y=only(self.y),
            origin=only(self.origin),
            params=tuple(keep),
        )

    def fingerprint(self) -> str:
        """sha256 of the tensors' names and bytes: equal fingerprints mean identical directions."""
        return self._fingerprint

    @functools.cached_property
    def _fingerprint(self) -> str:
        return fingerprint(
            (f"{prefix}/{name}", tensors[name])
            for prefix, tensors in self._groups()
            for name in sorted(tensors)
        )

    def _groups(self) -> list[tuple[str, Direction]]:
        groups = [("x", self.x)]
        if self.y is not None:
            groups.append(("y", self.y))
        if self.origin is not None:
            groups.append(("origin", self.origin))
        return groups

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
        """Write a safetensors file: tensors ``x/<name>``, ``y/<name>``; settings in metadata.

        ``overwrite=False`` refuses an existing ``path`` (see :func:`lossland.io.check_output`).
        """
        from safetensors.torch import save_file

        tensors = {
            f"{prefix}/{name}": t.detach().to("cpu").contiguous()
            for prefix, group in self._groups()
            for name, t in group.items()
        }
        check_storable(tensors, what="the directions")
        meta = {"lossland": json.dumps(self.metadata(), sort_keys=True, default=str)}
        with atomic_path(path, overwrite=overwrite, name="path") as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Directions:
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise LosslandError(
                f"directions file {path} {not_a_file(path)}: check the {arg('directions')} path"
            )

        def fail(problem: str) -> LosslandError:
            return LosslandError(f"directions file {path} {problem}: recreate it")

        size = path.stat().st_size  # safetensors checks that the tensors fit in the file
        check_budget(size * READ_SHARE, source=f"directions file {path}", what=f"{size:,} bytes")
        try:
            with safe_open(str(path), framework="pt") as handle:
                raw_meta = handle.metadata() or {}
                meta = parse_json_object(
                    raw_meta.get("lossland", "{}"), fail, what="lossland metadata"
                )
                check_schema(meta, METADATA_SCHEMA, fail)
                groups = _read_groups(handle, meta, path)
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise LosslandError(
                f"directions file {path} is corrupt or not a safetensors file "
                f"({first_line(exc)[:200]}): recreate it"
            ) from None
        _check_groups(groups, fail)
        known = {"kind", "norm", "ignore", "seed", "orthogonalized"}
        known |= {"cosine", "ndim", "has_origin", "order", "params"}
        return cls(
            x=groups["x"],
            y=groups["y"] or None,
            kind=meta.get("kind", "random"),
            norm=meta.get("norm", "filter"),
            ignore=meta.get("ignore", "biasbn"),
            seed=meta.get("seed"),
            orthogonalized=bool(meta.get("orthogonalized", False)),
            origin=groups["origin"] or None,
            info={k: v for k, v in meta.items() if k not in known},
            params=None if meta.get("params") is None else tuple(meta["params"]),
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
                elif not _dtype_fits(tensor.dtype, targets[name].dtype):
                    problems.append(
                        f"{prefix}/{name} is {_name(tensor.dtype)} but the model's is "
                        f"{_name(targets[name].dtype)}"
                    )
        if self.y is not None and set(self.y) != set(self.x):
            problems.append("x and y cover different tensors")
        if problems:
            shown = "; ".join(problems[:6]) + (
                f"; and {len(problems) - 6} more" if len(problems) > 6 else ""
            )
            raise LosslandError(
                f"{source} do not fit this model ({len(problems)} mismatches: {shown}): "
                f"use directions made for this model, or drop {arg('directions')} to draw new ones"
            )


def _dtype_fits(direction: torch.dtype, target: torch.dtype) -> bool:
    """A direction moves a tensor of the model by the one rule (core.moving_dtype): a real one
    a real or complex tensor (a complex tensor then moves its real part only), a complex one a
    complex tensor; nothing moves integer or bool tensors."""
    kind, own = dtype_kind(direction), dtype_kind(target)
    if own == "complex":
        return kind in ("real", "complex")
    return own == "real" and kind == "real"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dot(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """Σ ⟨a_k, b_k⟩ over all tensors, accumulated in float64.

    Formed a chunk of ~1M elements at a time: a float64 copy of a whole 4096×4096 matrix would
    add hundreds of MB to the peak memory.
    """
    return sum(
        float(torch.sum(as_real(xs).double() * as_real(ys).double()))
        for k in a
        for xs, ys in zip(chunks(a[k]), chunks(b[k]), strict=True)
    )


def chunks(t: Tensor, elements: int = 1 << 20) -> list[Tensor]:
    """Views of ``t`` along dim 0 of about ``elements`` each (any memory layout)."""
    if t.dim() == 0:
        return [t]
    step = max(1, elements // max(1, t[0].numel()))
    return list(torch.split(t, step))


def cosine(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    na, nb = dot(a, a) ** 0.5, dot(b, b) ** 0.5
    return dot(a, b) / (na * nb) if na > 0 and nb > 0 else 0.0


def _is_seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


def _is_trajectories(value: Any) -> bool:
    return isinstance(value, dict) and all(is_points(points) for points in value.values())


# The metadata values a directions file may hold that lossland uses, and what each must be.
METADATA_SCHEMA: dict[str, tuple[Check, str]] = {
    "kind": (lambda v: v in get_args(Kind), " or ".join(get_args(Kind))),
    "norm": (lambda v: v in NORMS, " or ".join(NORMS)),
    "ignore": (lambda v: v in IGNORES, " or ".join(IGNORES)),
    "seed": (is_optional(_is_seed), "a whole number >= 0 or null"),
    "orthogonalized": (lambda v: isinstance(v, bool), "true or false"),
    "order": (is_texts, "a list of tensor names"),
    "draw": (lambda v: isinstance(v, str) and v.startswith("rows-"), "rows-<elements>"),
    "params": (is_optional(is_texts), "a list of tensor names or null"),
    "eigenvalues": (is_numbers, "a list of finite numbers"),
    "explained_variance_ratio": (is_numbers, "a list of finite numbers"),
    "axis_labels": (is_pair_of_texts, "two labels"),
    "trajectories": (_is_trajectories, "an object of [x, y] point lists"),
}

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "C64": torch.complex64,
}


def empty_direction(reference: Mapping[str, Tensor], *, device: str = "cpu") -> Direction:
    """Zeros shaped like ``reference``, as views of one flat vector in lossland's layout
    (:mod:`lossland.flat`, channels_last for 4-D tensors), so the engine needs no copy.
    (``device="meta"``: the layout alone, shapes and strides.)"""
    dtypes = {t.dtype for t in reference.values()}
    if len(dtypes) != 1:  # mixed precision models: plain tensors, the engine copies them
        return {
            name: torch.zeros(t.shape, dtype=t.dtype, device=device)
            for name, t in reference.items()
        }
    layout = FlatLayout.of({n: t.shape for n, t in reference.items()}, channels_last=True)
    return layout.allocate(dtype=dtypes.pop(), device=device)[1]


def _read_groups(handle: Any, meta: Mapping[str, Any], path: Path) -> dict[str, Direction]:
    """The x, y and origin tensors of an open directions file, in the order it records."""
    groups: dict[str, Direction] = {"x": {}, "y": {}, "origin": {}}
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
        # Shapes first, then one tensor at a time into lossland's flat layout:
        # the peak is the directions plus one tensor, not twice the directions.
        reference = {
            n: torch.empty(
                handle.get_slice(k).get_shape(),
                device="meta",
                dtype=_DTYPES.get(handle.get_slice(k).get_dtype(), torch.float32),
            )
            for n, k in zip(group_names, keys, strict=True)
        }
        groups[prefix] = empty_direction(reference)
        for n, k in zip(group_names, keys, strict=True):
            groups[prefix][n].copy_(handle.get_tensor(k))
    return groups


def _check_groups(groups: Mapping[str, Direction], fail: Any) -> None:
    """y and origin, when present, cover exactly x's tensors, shaped as x's (a partial group
    would fail later, naming one tensor at a time)."""
    x = groups["x"]
    if not x:
        raise fail("holds no x direction")
    for prefix in ("y", "origin"):
        group = groups[prefix]
        if not group:
            continue
        missing, extra = sorted(set(x) - set(group)), sorted(set(group) - set(x))
        if missing or extra:
            shown = ", ".join(f"{prefix}/{n}" for n in (missing or extra)[:3])
            what = "lacks" if missing else "has tensors x lacks:"
            raise fail(f"has a partial {prefix}/ group: it {what} {shown} (x has {len(x)})")
        shapes = [n for n in x if group[n].shape != x[n].shape]
        if shapes:
            raise fail(
                f"has {prefix}/{shapes[0]} shaped {tuple(group[shapes[0]].shape)}, "
                f"x/{shapes[0]} {tuple(x[shapes[0]].shape)}"
            )


PARALLEL = 1 - 1e-6  # |cosine(x, y)| above this: the plane is a line, drawn as a surface


def check_usable(directions: Directions, *, norms: dict[str, float] | None = None) -> None:
    """Refuse directions that would draw something false: NaN or inf in them, no tensors, a
    zero direction (every point the same model: a constant surface) or two parallel ones
    (a line drawn as a plane). ``norms``: the directions' norms, computed already where they
    are not stored (lean; finiteness checked there too)."""
    if not directions.x:
        raise LosslandError(
            "the directions hold no tensors (a model without floating-point parameters?): "
            "there is no weight space to explore"
        )
    if norms is None:
        check_finite(directions)
        norms = {"x": dot(directions.x, directions.x) ** 0.5}
        if directions.y is not None:
            norms["y"] = dot(directions.y, directions.y) ** 0.5
    row = recorded_kind(directions.kind)  # directions a user built may name any kind
    for axis, norm in norms.items():
        if norm == 0:
            why = (
                row.why_zero(norm=directions.norm, ignore=directions.ignore)
                if row is not None
                else "recreate the directions"
            )
            raise LosslandError(f"direction {axis} is zero in every tensor: {why}")
    cos = directions.cosine
    if cos is not None and abs(cos) > PARALLEL:
        why = row.parallel_fix if row is not None else "recreate them"
        raise LosslandError(
            f"the two directions are parallel (cosine {cos:+.7f}), so the plane is a line: {why}"
        )


def check_finite(directions: Directions) -> None:
    """NaN or inf in a direction would silently turn every point into NaN."""
    for prefix, group in (("x", directions.x), ("y", directions.y), ("origin", directions.origin)):
        bad = [
            name
            for name, t in (group or {}).items()
            if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all())
        ]
        if bad:
            raise LosslandError(
                f"the directions hold NaN or inf in {prefix}/{bad[0]}"
                + (f" and {len(bad) - 1} more tensors" if len(bad) > 1 else "")
                + ": recreate them"
            )
