"""Random directions: seeded Gaussians rescaled to θ*'s filter or layer norms (Li et al.).

The rule is the reference implementation's (``normalize_directions_for_weights`` in
tomgoldstein/loss-landscape's ``net_plotter.py``), tensor by tensor, for a Gaussian draw d of
the tensor w of θ*:

* ``d.dim() <= 1`` (biases, BatchNorm γ/β): ``ignore="biasbn"`` sets d = 0 (``d.fill_(0)``);
  ``ignore="none"`` sets d = w, the weights themselves (``d.copy_(w)``), whatever the norm;
* otherwise ``norm="filter"`` rescales every output filter (conv) or output row (linear) of d
  to the norm of the same filter of w, ``norm="layer"`` the whole tensor to ‖w‖, and
  ``norm="none"`` keeps the raw Gaussian.

Every tensor is drawn, 1-D ones included, in ``named_parameters`` order (x first, then y), so
a seed gives the same ≥2-D directions under either ``ignore``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Literal

import torch
from torch import Tensor, nn

from lossland.core import Params, as_real, moves, recorded_kind, rescale_, select_params
from lossland.directions._directions import (
    IGNORES,
    METADATA_SCHEMA,
    NORMS,
    Direction,
    Directions,
    Ignore,
    Norm,
    chunks,
    dot,
    empty_direction,
)
from lossland.errors import LosslandError, arg
from lossland.io import Surface, check_schema, is_texts


def normalize_(
    direction: Direction, reference: Mapping[str, Tensor], *, norm: Norm, ignore: Ignore
) -> Direction:
    """Normalize ``direction`` in place, tensor by tensor, by Li et al.'s rule (module doc):
    1-D tensors become 0 (``ignore="biasbn"``) or ``reference``'s own values (``"none"``);
    the others are rescaled to ``reference``'s filter or layer norms (``norm``).

    Filters are slices along dim 0 (output channels of a conv, output rows of a linear layer).
    """
    for name, d in direction.items():
        ref = reference[name].detach().to(d.dtype)
        if d.dim() <= 1:
            if ignore == "biasbn":
                d.zero_()
            else:
                d.copy_(ref)
        elif norm != "none":
            rescale_(d, ref, norm)
    return direction


def _gaussian_like(reference: Mapping[str, Tensor], generator: torch.Generator) -> Direction:
    # Drawn on the CPU in float32, tensor by tensor in a fixed order, so a seed gives the same
    # directions on every device and in every memory layout. A complex tensor draws both
    # parts (a Gaussian in R^2n, as its reals move).
    direction = empty_direction(reference)
    for d in direction.values():
        if d.is_complex():
            pairs = torch.randn((*d.shape, 2), generator=generator, dtype=torch.float32)
            d.copy_(torch.view_as_complex(pairs))
        elif d.is_contiguous() and d.dtype == torch.float32:
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
    params: Params | None = None,
) -> Directions:
    """Gaussian directions shaped like ``model``'s parameters, normalized as Li et al.

    The x direction depends only on the seed, so a 1-D line is the x axis of the 2-D plane.

    Args:
        model: the network; its floating-point parameters and buffers get a direction each.
        seed: the random seed (the same seed draws the same directions).
        norm: "filter" (each filter scaled to the norm of the model's filter), "layer" or "none".
        ignore: "biasbn" zeroes the directions of biases and BatchNorm parameters; "none".
        ndim: 1 (x only) or 2 (x and y).
        orthogonalize: make y orthogonal to x (and normalize again).
        params: draw on the chosen tensors only (:func:`lossland.core.select_params`), in the
            same order: the others do not move, and the seed's draws go to those alone.

    Returns:
        The :class:`Directions`, with the recipe to draw them again in ``info``.

    Raises:
        LosslandError: an unknown ``norm`` or ``ignore``, or a model with nothing to move.

    Example:
        >>> d = lossland.random_directions(model, seed=1)
        >>> s = lossland.surface(model, data, directions=d, x="-1:1:21", y="-1:1:21")
    """
    if norm not in NORMS:
        raise LosslandError(f"unknown {arg('norm')} {norm!r}: choose one of {', '.join(NORMS)}")
    if ignore not in IGNORES:
        raise LosslandError(
            f"unknown {arg('ignore')} policy {ignore!r}: choose one of {', '.join(IGNORES)}"
        )
    # The tensors that move (core.moving_dtype): not integer or bool ones; complex ones too.
    chosen = select_params(params, model.named_parameters())
    reference = {
        name: p.detach().to("cpu")
        for name, p in model.named_parameters()
        if moves(name, p.dtype) and (chosen is None or name in chosen)
    }
    generator = torch.Generator().manual_seed(seed)
    dx = normalize_(_gaussian_like(reference, generator), reference, norm=norm, ignore=ignore)
    dy = None
    if ndim == 2:
        dy = normalize_(_gaussian_like(reference, generator), reference, norm=norm, ignore=ignore)
    subset = None if chosen is None else tuple(chosen)
    directions = Directions(
        x=dx, y=dy, kind="random", norm=norm, ignore=ignore, seed=seed, params=subset
    )
    return orthogonalized(directions, reference) if orthogonalize and dy is not None else directions


def orthogonalized(directions: Directions, reference: Mapping[str, Tensor]) -> Directions:
    """Gram–Schmidt y against x over all tensors, then normalize y again as it was drawn (random
    directions; other kinds were never normalized and are not).

    Under ``ignore="none"`` the 1-D tensors of x and y are both θ*'s own (normalizing y again
    restores them), so those tensors keep contributing to x·y: the cosine after is small only
    where they hold a small part of the norm.
    """
    if directions.y is None:
        return directions
    x, y = directions.x, directions.y
    xx = dot(x, x)
    coef = dot(x, y) / xx if xx > 0 else 0.0
    y_new = empty_direction(y)
    for k, t in y_new.items():
        for out, ys, xs in zip(chunks(t), chunks(y[k]), chunks(x[k]), strict=True):
            out_real = as_real(out)  # complex tensors: the same arithmetic on their reals
            out_real.copy_(as_real(ys).double() - coef * as_real(xs).double())
    row = recorded_kind(directions.kind)
    if row is not None and row.normalized:  # drawn by Li et al.'s rule: apply it again
        normalize_(y_new, reference, norm=directions.norm, ignore=directions.ignore)
    info = dict(directions.info)
    info["cosine_before_orthogonalization"] = directions.cosine
    return replace(directions, y=y_new, orthogonalized=True, info=info)


RECIPE = ("seed", "norm", "ignore", "orthogonalized")  # what redraws random directions


def _named(names: Sequence[str]) -> Callable[[str, Tensor], bool]:
    """The spec choosing exactly ``names`` (names are not globs: ``[`` may be in one)."""
    wanted = set(names)
    return lambda name, _: name in wanted


def from_recipe(surface: Surface, model: nn.Module) -> Directions:
    """The random directions of ``surface``, drawn again from the recipe its file records
    (seed, norm, ignore, orthogonalization, the moving tensors) for ``model``, the model it
    was computed with: verified against the file's directions fingerprint, so they are the very
    same directions."""
    attrs = surface.attrs
    kind = attrs.get("directions_kind")
    row = recorded_kind(kind)
    if row is None or row.saved != "recipe":
        where = attrs.get("directions_file") or "the directions file saved with the run"
        raise LosslandError(
            f"the surface's directions are of kind {kind!r}, which no recipe redraws: load them "
            f"from {where} (Directions.load)"
        )
    recipe = {"orthogonalized": False, **{k: attrs[k] for k in RECIPE if k in attrs}}

    def fail(problem: str) -> LosslandError:
        return LosslandError(
            f"the surface file's directions recipe is malformed (it {problem}): recompute the "
            "surface"
        )

    absent = [k for k in RECIPE if recipe.get(k) is None]
    if absent:
        raise fail(f"has no {', '.join(absent)}")
    check_schema(recipe, METADATA_SCHEMA, fail)  # as a directions file's recipe is checked
    subset = attrs.get("params")
    if subset is not None and not is_texts(subset):
        raise fail("names its moving tensors (params) in something not a list of names")
    directions = random_directions(
        model,
        seed=recipe["seed"],
        norm=recipe["norm"],
        ignore=recipe["ignore"],
        ndim=1 if surface.y is None else 2,
        orthogonalize=recipe["orthogonalized"],
        params=None if subset is None else _named(subset),
    )
    if directions.fingerprint() != attrs.get("directions_sha256"):
        raise LosslandError(
            f"the directions drawn for this {arg('model')} differ from the surface's (their "
            "fingerprint does not match): pass the model (checkpoint) the surface was computed "
            "with"
        )
    return directions
