"""The same surface for several direction seeds, in one file with a leading seed axis; and the
stack itself (:func:`stacked`), which per-layer landscapes (``run/_layers.py``) share.

Each entry of a stack (a seed, a block of the model) is an ordinary surface run (resumable,
distributable) into a hidden file beside the output while it is in progress; finished entries
are folded into the output's ``seeds/`` (``layers/``) stack, whose first entry is also the
output's own surface (readable by any tool). A rerun resumes: finished entries are checked
against their recorded settings and skipped, the unfinished one resumes from its hidden file.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from lossland.analysis import robustness
from lossland.core import FIELDS, FINITE, SEEDS, as_real, check_number, progress_bar
from lossland.directions import cosine, dot, random_directions
from lossland.errors import LosslandError, SurfaceFileError, arg
from lossland.io import SeedStack, Surface
from lossland.run._group import is_main_process
from lossland.run._options import SurfaceOptions
from lossland.run._settings import load_resumable

OneSeed = Callable[[int, Path | None], Surface]  # (seed, in-progress file) → that surface
OneEntry = Callable[[int, Path | None], Surface]  # (entry index, in-progress file) → its surface


def seeded(
    model: nn.Module,
    seeds: Sequence[int],
    options: SurfaceOptions,
    out: Path | None,
    overwrite: bool,
    one_seed: OneSeed,
) -> Surface:
    """Run ``one_seed`` for every seed, then stack the surfaces and measure their agreement."""
    if len(seeds) < 2:
        raise LosslandError(f"{arg('seeds')} compares at least 2 seeds, got {len(seeds)}")
    result = stacked(out, overwrite, lambda k, part: one_seed(seeds[k], part), seeds=seeds)
    result = result.with_attrs(
        robustness=robustness(result, progress=options.progress),
        direction_cosines=_cosines(model, seeds, options),
    )
    return saved(result, out)


def stacked(
    out: Path | None,
    overwrite: bool,
    one: OneEntry,
    *,
    seeds: Sequence[int] = (),
    layers: Sequence[str] = (),
) -> Surface:
    """Run ``one`` for every entry (labelled by ``seeds`` or by ``layers``), each into its
    hidden file (finished entries of an earlier stack in ``out`` restored there first, so their
    runs check and return them), and stack the surfaces; the first entry's is the result's own."""
    earlier = _earlier_stack(out, seeds, layers, overwrite)
    parts = _parts(out, seeds, layers)
    surfaces = []
    for k, part in enumerate(parts):
        finished = earlier is not None and earlier.stack is not None and earlier.stack.done[k].all()
        if part is not None and earlier is not None and finished:
            _restore(earlier, k, part)  # the entry's run then checks its settings and returns
        elif part is not None and overwrite and is_main_process():
            part.unlink(missing_ok=True)
        surfaces.append(one(k, part))
    return replace(surfaces[0], stack=_stack(seeds, layers, surfaces))


def saved(result: Surface, out: Path | None) -> Surface:
    """The stacked ``result`` saved to ``out`` (rank 0), its entries' hidden files removed."""
    if out is not None and is_main_process():
        result.save(out)
        assert result.stack is not None
        for part in _parts(out, result.stack.seeds, result.stack.layers):
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)  # type: ignore[union-attr]
    return result


def check_seed_range(seeds: Any, first: int) -> None:
    """``seeds`` seeds from ``first`` on, all of them valid seeds: checked as a whole before the
    first one is computed."""
    check_number("seeds", seeds, FINITE, whole=True)
    if seeds < 2:
        raise LosslandError(f"{arg('seeds')} compares at least 2 seeds, got {seeds}")
    last, top = first + seeds - 1, int(SEEDS.high or 0)
    if last > top:
        raise LosslandError(
            f"{arg('seeds')} {seeds:,} from {arg('seed')} {first} run up to seed {last}, past the "
            f"largest seed {top}: use a smaller {arg('seed')} (at most {top - seeds + 1}) or fewer "
            f"{arg('seeds')}"
        )


def _parts(out: Path | None, seeds: Sequence[int], layers: Sequence[str]) -> list[Path | None]:
    """The hidden file of each entry's run in progress, beside the output (layers by their
    index: a block's name may hold any character)."""
    names = [f"seed{s}" for s in seeds] or [f"layer{k}" for k in range(len(layers))]
    return [None if out is None else out.with_name(f".{out.name}.{n}.h5") for n in names]


def _stack(seeds: Sequence[int], layers: Sequence[str], surfaces: Sequence[Surface]) -> SeedStack:
    """The entries' surfaces as one stack: each stacked row of FIELDS with a leading axis
    (not held when an entry's surface does not hold it)."""
    values: dict[str, np.ndarray | None] = {}
    for row in (r for r in FIELDS if r.stacked):
        held = [v for s in surfaces if (v := s.field(row.name)) is not None]
        values[row.name] = np.stack(held) if len(held) == len(surfaces) else None
    done = np.stack([s.done for s in surfaces])
    attrs = (dict(s.attrs) for s in surfaces)
    return SeedStack.of(seeds, values, done, attrs, layers=layers)


def _earlier_stack(
    out: Path | None, seeds: Sequence[int], layers: Sequence[str], overwrite: bool
) -> Surface | None:
    """The output when it is a stack of these entries (to resume); other files are refused
    unless ``overwrite``."""
    if out is None or overwrite or not out.exists():
        return None
    fix = f"pass {arg('overwrite')} to replace it or choose another {arg('out')}"
    earlier = load_resumable(out, fix)
    held = earlier.stack
    if held is None or list(held.seeds) != list(seeds) or list(held.layers) != list(layers):
        if held is None:
            found = "one seed" if seeds else "one surface"
        else:
            found = f"seeds {list(held.seeds)}" if held.seeds else f"layers {list(held.layers)}"
        asked = f"{arg('seeds')} {list(seeds)}" if seeds else f"layers {list(layers)}"
        raise SurfaceFileError(f"{out} holds {found}, this run {asked}: {fix}")
    return earlier


def _restore(earlier: Surface, k: int, part: Path) -> None:
    """Write the finished seed ``k`` back as its own file, so that its run can check it."""
    assert earlier.stack is not None
    if not is_main_process():
        return
    stack = earlier.stack
    surface = Surface.empty(earlier.x, earlier.y, split=earlier.split, attrs=stack.attrs[k])
    held = {row.name: stack.field(row.name) for row in FIELDS if row.stacked}
    surface.store(Ellipsis, {name: v[k] for name, v in held.items() if v is not None})
    surface.save(part)


def _cosines(model: nn.Module, seeds: Sequence[int], options: SurfaceOptions) -> dict[str, Any]:
    """Cosines of all pairs among the 2·N random directions (x and y of every seed), with a
    progress bar over the directions drawn and the pairs compared (N² of them)."""
    n = 2 * len(seeds)
    bar = progress_bar(
        len(seeds) + n * (n - 1) // 2,
        desc="comparing directions",
        unit="",
        enabled=options.progress,
    )
    flat: list[Mapping[str, Tensor]] = []
    for seed in seeds:
        pair = random_directions(
            model,
            seed=seed,
            norm=options.norm,
            ignore=options.ignore,
            ndim=2,
            orthogonalize=options.orthogonalize,
            params=options.params,
        )
        flat += [d for d in (pair.x, pair.y) if d is not None]
        _advance(bar, 1)
    values, spreads = [], []
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            values.append(cosine(flat[i], flat[j]))
            spreads.append(_cosine_spread(flat[i], flat[j]))
        _advance(bar, len(flat) - i - 1)
    if bar is not None:
        bar.close()
    return {
        "pairs": len(values),
        "max_abs": float(np.max(np.abs(values))),
        "values": values,
        "expected": float(np.mean(spreads)),
    }


def _advance(bar: Any, n: int) -> None:
    if bar is not None:
        bar.update(n)


def _cosine_spread(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """The standard deviation of cos(a, b) for independent zero-mean draws with a's and b's
    element scales: √(Σ a²b²) / (‖a‖·‖b‖). It is 1/√n for n equal scales; filter
    normalization gives big filters more weight, fewer effective dimensions, a wider spread."""
    squares = sum(
        float((as_real(x).double() ** 2 * as_real(b[k]).double() ** 2).sum()) for k, x in a.items()
    )
    norms = dot(a, a) * dot(b, b)
    return math.sqrt(squares / norms) if norms > 0 else 0.0
