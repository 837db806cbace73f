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

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Literal

import torch
from torch import Tensor, nn

from lossland.core import (
    DRAW_BLOCK,
    Digest,
    Factor,
    FactorBuilder,
    Params,
    Regenerator,
    as_real,
    draw_blocks,
    draw_rule,
    gaussian,
    moves,
    recorded_kind,
    rescale_,
    rows,
    rule_limit,
    select_params,
    trim_host,
)
from lossland.directions._directions import (
    IGNORES,
    METADATA_SCHEMA,
    NORMS,
    Direction,
    Directions,
    Ignore,
    Norm,
    check_usable,
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


def drawn(
    reference: Mapping[str, Tensor],
    generator: torch.Generator,
    *,
    norm: Norm,
    ignore: Ignore,
    limit: int | None,
    layout: Mapping[str, Tensor] | None = None,
) -> tuple[Direction | None, Regenerator]:
    """One direction over ``reference``'s tensors by the block rule (:mod:`lossland.core._draw`):
    tensor k drawn a block of rows at a time, then multiplied by Li et al.'s factor computed from
    the norms of its blocks as they lie in the direction's layout. Stored (the direction, views
    of one flat vector) unless ``layout`` gives that layout as meta tensors: then only one block
    is held at a time and the direction is None. Either way the :class:`Regenerator` redraws it
    (a complex tensor is drawn whole and has no regenerator factor: lean refuses it)."""
    direction = empty_direction(reference) if layout is None else None
    shapes = {n: tuple(t.shape) for n, t in reference.items()}
    states, factors, dtypes = [], [], []
    for name, ref in reference.items():
        like = (direction or layout or {})[name]
        states.append(generator.get_state())
        dtypes.append(like.dtype)
        if like.is_complex():  # both parts, whole (a Gaussian in R^2n, as its reals move)
            assert direction is not None  # (lean refuses complex tensors)
            pairs = torch.randn((*like.shape, 2), generator=generator, dtype=torch.float32)
            like.copy_(torch.view_as_complex(pairs))
            normalize_({name: like}, {name: ref}, norm=norm, ignore=ignore)
            factors.append(Factor("raw"))
            continue
        builder = FactorBuilder(ref, norm=norm, ignore=ignore, dtype=like.dtype)
        blocks = draw_blocks(shapes[name], limit)
        for block in blocks:
            g = gaussian(shapes[name], block, like.dtype, generator)
            view = (
                rows(like, block)
                if direction is not None
                else torch.empty_strided(
                    rows(like, block).shape, rows(like, block).stride(), dtype=like.dtype
                )
            )
            view.copy_(g)
            if builder.needs_blocks:
                builder.add(view)
        factor = builder.factor()
        factors.append(factor)
        if direction is not None:
            for block in blocks:
                factor.apply_(rows(like, block), block, builder.reference)
    regenerator = Regenerator(
        shapes=tuple(shapes.values()),
        dtypes=tuple(dtypes),
        states=tuple(states),
        factors=tuple(factors),
        limit=limit,
    )
    return direction, regenerator


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
    reference, chosen = _reference(model, params, "cpu")
    return _random(reference, seed, norm, ignore, ndim, orthogonalize, chosen, DRAW_BLOCK)


CURRENT = -1  # the draw rule random_directions follows today (DRAW_BLOCK)


def random_by_rule(
    model: nn.Module,
    *,
    seed: int,
    norm: Norm,
    ignore: Ignore,
    ndim: int,
    orthogonalize: bool,
    params: Params | None,
    limit: int | None,
) -> Directions:
    """:func:`random_directions` drawn by the rule ``limit`` names (a file's recorded rule:
    None, whole tensors; :data:`CURRENT`: today's), so a resumed run redraws its file's."""
    reference, chosen = _reference(model, params, "cpu")
    limit = DRAW_BLOCK if limit == CURRENT else limit
    return _random(reference, seed, norm, ignore, ndim, orthogonalize, chosen, limit)


def _reference(
    model: nn.Module, params: Params | None, device: str | None
) -> tuple[dict[str, Tensor], list[str] | None]:
    """θ*'s tensors that move (core.moving_dtype: not integer or bool ones; complex ones too)
    among those ``params`` chooses (on ``device``; None: where they are), and the choice."""
    chosen = select_params(params, model.named_parameters())
    reference = {
        name: p.detach() if device is None else p.detach().to(device)
        for name, p in model.named_parameters()
        if moves(name, p.dtype) and (chosen is None or name in chosen)
    }
    return reference, chosen


def _random(
    reference: Mapping[str, Tensor],
    seed: int,
    norm: Norm,
    ignore: Ignore,
    ndim: int,
    orthogonalize: bool,
    chosen: Sequence[str] | None,
    limit: int | None,
) -> Directions:
    """random_directions on ``reference``'s tensors, drawn by the rule ``limit`` names."""
    generator = torch.Generator().manual_seed(seed)
    dx, _ = drawn(reference, generator, norm=norm, ignore=ignore, limit=limit)
    dy = None
    if ndim == 2:
        dy, _ = drawn(reference, generator, norm=norm, ignore=ignore, limit=limit)
    assert dx is not None
    trim_host()  # the float32 blocks each tensor was drawn in: not kept in the resident set
    subset = None if chosen is None else tuple(chosen)
    rule = draw_rule([t.shape for t in reference.values()], limit)
    directions = Directions(
        x=dx,
        y=dy,
        kind="random",
        norm=norm,
        ignore=ignore,
        seed=seed,
        params=subset,
        info={} if rule is None else {"draw": rule},
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
    info = attrs.get("directions_info")
    rule = info.get("draw") if isinstance(info, dict) else None
    try:  # the draw rule it records (none: whole tensors, as lossland drew before rules)
        limit = rule_limit(rule) if rule is None or isinstance(rule, str) else rule_limit(str(rule))
    except ValueError:
        raise fail(f"names an unknown draw rule {rule!r}") from None
    reference, chosen = _reference(model, None if subset is None else _named(subset), "cpu")
    directions = _random(
        reference,
        recipe["seed"],
        recipe["norm"],
        recipe["ignore"],
        1 if surface.y is None else 2,
        recipe["orthogonalized"],
        chosen,
        limit,
    )
    if directions.fingerprint() != attrs.get("directions_sha256"):
        raise LosslandError(
            f"the directions drawn for this {arg('model')} differ from the surface's (their "
            "fingerprint does not match): pass the model (checkpoint) the surface was computed "
            "with"
        )
    return directions


def lean_directions(
    model: nn.Module,
    *,
    seed: int,
    norm: Norm,
    ignore: Ignore,
    ndim: Literal[1, 2],
    params: Params | None = None,
    limit: int | None = CURRENT,
) -> tuple[Directions, list[Regenerator]]:
    """random_directions' directions for ``memory="lean"``, never stored: their
    :class:`Regenerator` per axis (one setup pass draws every block once, for Li et al.'s factors
    and each tensor's generator state), and a :class:`Directions` of meta tensors (shapes and
    dtypes) whose fingerprint and cosine are those of the stored directions (computed block by
    block). Refuses complex tensors in one line."""
    reference, chosen = _reference(model, params, None)
    complex_ = [n for n, t in reference.items() if t.is_complex()]
    if complex_:
        raise LosslandError(
            f"{arg('memory')} lean regenerates real directions only, and {complex_[0]} is "
            f"complex: use {arg('memory')} normal"
        )
    limit = DRAW_BLOCK if limit == CURRENT else limit
    layout = empty_direction({n: t.to("meta") for n, t in reference.items()}, device="meta")
    generator = torch.Generator().manual_seed(seed)
    axes = [drawn(reference, generator, norm=norm, ignore=ignore, limit=limit, layout=layout)[1]]
    if ndim == 2:
        axes.append(
            drawn(reference, generator, norm=norm, ignore=ignore, limit=limit, layout=layout)[1]
        )
    meta = [{n: layout[n] for n in reference} for _ in axes]
    rule = draw_rule([t.shape for t in reference.values()], limit)
    directions = Directions(
        x=meta[0],
        y=meta[1] if ndim == 2 else None,
        kind="random",
        norm=norm,
        ignore=ignore,
        seed=seed,
        params=None if chosen is None else tuple(chosen),
        info={} if rule is None else {"draw": rule},
    )
    _streamed_checks(directions, axes, list(reference.values()))
    trim_host()  # the setup's block temporaries: not kept in the resident set
    return directions, axes


def _streamed_checks(
    directions: Directions, axes: Sequence[Regenerator], theta: Sequence[Tensor]
) -> None:
    """The stored directions' fingerprint (sha256 over names in sorted order, x then y) and
    cosine, and check_usable's refusals, computed a block at a time (the peak is a block, not a
    tensor); the first two are set on ``directions`` (what a stored copy computes)."""
    names = list(directions.x)
    digest = Digest()
    dots = {"xx": 0.0, "yy": 0.0, "xy": 0.0}
    finite = [True]

    def seen(prefix: str, k: int, reference: Tensor) -> Iterator[Tensor]:
        own = axes[0 if prefix == "x" else 1].tensor(k, reference)
        other = axes[0].tensor(k, reference) if prefix == "y" else None
        for _, block in own:
            finite[0] = finite[0] and bool(torch.isfinite(block).all())
            wide = block.double()
            dots[prefix * 2] += float(torch.sum(wide * wide))
            if other is not None:
                dots["xy"] += float(torch.sum(wide * next(other)[1].double()))
            yield block

    for prefix, axis in zip("xy", axes, strict=False):
        for k in sorted(range(len(names)), key=lambda k: names[k]):
            blocks = seen(prefix, k, theta[k].to("cpu"))
            digest.add_blocks(f"{prefix}/{names[k]}", axis.dtypes[k], axis.shapes[k], blocks)
    directions.__dict__["_fingerprint"] = digest.hexdigest()
    nx, ny = dots["xx"] ** 0.5, dots["yy"] ** 0.5
    cosine = None if len(axes) == 1 else (dots["xy"] / (nx * ny) if nx > 0 and ny > 0 else 0.0)
    directions.__dict__["cosine"] = cosine
    if not finite[0]:
        raise LosslandError("the directions hold NaN or inf (θ* does?): check the model's weights")
    check_usable(directions, norms={"x": nx, **({"y": ny} if len(axes) == 2 else {})})
