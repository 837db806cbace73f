"""What a run will cost, estimated before it starts, and the one decision on it.

Every kind of run (a surface or a line, a seed stack, refinement, the Hessian report and its
density, optimizer paths, a PCA plane) lists what it needs as :class:`Need` rows, from numbers
known before any data is loaded, any lock is taken or any file is written:

* **memory**: the bytes its arrays and state hold at once, on the host or the device;
* **disk**: the bytes its files take in a folder (a file being rewritten: twice);
* **work**, in the units the user controls (sample evaluations, grid points, seeds, optimizer
  steps, checkpoint bytes read).

:func:`check_needs` refuses what cannot fit this machine (memory, disk) and asks for
``allow_large`` above :data:`LIMITS`, in one line with the numbers and the fix. The per-point
figures below were measured on the project's machine (2-core AMD EPYC, numpy 2, h5py 3);
``tests/test_trust_cost.py`` checks the file and array figures against real surfaces.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lossland.core._memory import bytes_text, host_available
from lossland.errors import LosslandError, arg

# Work above these needs ``allow_large``: a day or more of a small CPU model, or a request that
# is usually a typo (an extra digit). README.md documents them (Safety: "A run's size is checked").
LIMITS: dict[str, float] = {
    # forward passes of one sample: points × samples (× seeds); a Hessian-vector product
    # counts HVP_EVALUATIONS per sample. 1e9 is about a day for the small model on 2 CPU cores.
    "sample evaluations": 1e9,
    # points of one surface, or of all seeds of a stack (refinement: the full grid). 1e7
    # points are a 330 MB file and about 1.2 GB of arrays while it is written.
    "grid points": 1e7,
    # seeds of a stack: every pair is compared (N² correlations of the surfaces, 2N² cosines
    # of the directions), each seed is a run with its own file.
    "seeds": 100,
    # steps of all optimizer paths together: about 1 ms and 100 bytes of file each (1e6: about
    # 20 minutes here).
    "optimizer steps": 1e6,
    # checkpoint bytes a PCA plane reads (three passes over every checkpoint).
    "checkpoint bytes read": 1e11,
}
HVP_EVALUATIONS = 8  # a Hessian-vector product per sample ≈ 8 forward passes (5.5–10.6 measured)
# Host bytes per grid point while a surface runs: its arrays (loss, acc, sem, samples: float64;
# done), the in-memory image of a checkpoint and the basins computed at the end (117 measured
# on 2000²); refinement adds its interpolation levels (147 + 44 measured).
SURFACE_BYTES = 128
REFINE_BYTES = 200
SEED_BYTES = 128  # each seed of a stack: its arrays, the stack, its image, the comparisons (122)
PAIR_BYTES = 32  # a cosine (and its expected spread) of two directions: Python floats in lists
FILE_BYTES = 34  # per point in a surface file: four float64 datasets, done (33.3 measured)
FILE_OVERHEAD = 32e3  # and per file: coordinates, headers, attributes (28 kB measured)
# A stack's attributes: each seed's run (about 3 kB) and the N² cosines and correlations (about
# 60 bytes a pair of seeds as JSON): 105 kB measured for 20 seeds.
SEED_ATTR_BYTES, PAIR_ATTR_BYTES = 4e3, 60
SEED_FILE_BYTES = 29  # per point and seed in a stack's seeds/ group (28.5 measured)
ENGINE_COPIES = 4  # parameter-sized copies a run holds: working copy, 2 directions, θ*
POINT_COPIES = 3  # more per extra point of a batched forward (K > 1)
SAVE_SHARE = 0.1  # a checkpoint may take this share of a run's time (see run._driver)

Kind = Literal["memory", "disk", "work"]


@dataclass(frozen=True)
class Need:
    """One resource a run needs: ``amount`` (bytes for memory and disk, ``unit`` for work) for
    ``what`` (with the numbers that make it up), and ``fix``, how to need less. ``place`` is
    where: "host" or a torch device for memory, a folder for disk."""

    kind: Kind
    amount: float
    what: str
    fix: str
    unit: str = "bytes"
    place: str = "host"


def memory(amount: float, what: str, fix: str, *, place: str = "host") -> Need:
    return Need("memory", amount, what, fix, place=place)


def disk(amount: float, folder: Path, what: str, fix: str) -> Need:
    return Need("disk", amount, what, fix, place=str(folder))


def work(amount: float, unit: str, what: str, fix: str) -> Need:
    if unit not in LIMITS:
        raise ValueError(f"unknown unit of work {unit!r}")
    return Need("work", amount, what, fix, unit=unit)


def check_needs(needs: Iterable[Need], *, allow_large: bool = False) -> None:
    """Refuse, in one line with the numbers and the fix, a run that cannot fit this machine's
    memory or disk, or (unless ``allow_large``) whose work is above :data:`LIMITS`."""
    rows = list(needs)
    for place in dict.fromkeys(n.place for n in rows if n.kind == "memory"):
        _check_place(
            [n for n in rows if n.kind == "memory" and n.place == place],
            available_memory(place),
            f"{_place_name(place)} memory",
            "available",
        )
    for folder in dict.fromkeys(n.place for n in rows if n.kind == "disk"):
        _check_place(
            [n for n in rows if n.kind == "disk" and n.place == folder],
            free_disk(Path(folder)),
            f"disk space in {folder}",
            "free",
            prefix="disk full: ",
            fix="free space there, or ",
        )
    for unit in dict.fromkeys(n.unit for n in rows if n.kind == "work"):
        same = [n for n in rows if n.kind == "work" and n.unit == unit]
        total, limit = sum(n.amount for n in same), LIMITS[unit]
        if total > limit and not allow_large:
            top = max(same, key=lambda n: n.amount)
            amount = f"{count_text(total)} {unit}"
            raise LosslandError(
                f"this run is large: {f'{top.what} is {amount}' if top.what else amount}, more "
                f"than the {count_text(limit)} lossland runs without {arg('allow_large')}: "
                f"{top.fix}, or pass {arg('allow_large')} if you mean it"
            )


def _check_place(
    rows: list[Need],
    have: float | None,
    resource_name: str,
    state: str,
    *,
    prefix: str = "",
    fix: str = "",
) -> None:
    total = sum(n.amount for n in rows)
    if have is None or total <= have:
        return
    top = max(rows, key=lambda n: n.amount)
    needs = f"needs about {bytes_text(total)} of {resource_name}"
    said = f"{top.what} {needs}" if len(rows) == 1 else f"this run {needs} ({top.what}: about "
    said += "" if len(rows) == 1 else f"{bytes_text(top.amount)})"
    raise LosslandError(
        f"{prefix}{said}, and {bytes_text(max(have, 0))} is {state}: {fix}{top.fix}"
    )


def _place_name(place: str) -> str:
    return "host" if place in ("host", "cpu") else place


# --- the estimates, one per kind of run ------------------------------------------------------


def surface_needs(
    *,
    nx: int,
    ny: int | None,
    samples: int | None,
    param_bytes: int,
    seeds: int = 1,
    refine: bool = False,
    points_per_batch: int = 1,
    place: str = "host",
    out: Path | None = None,
    engine_copies: int = ENGINE_COPIES,
) -> list[Need]:
    """A surface or line of ``nx`` (× ``ny``) points over ``samples`` samples (None: not known
    yet), for ``seeds`` direction seeds, written to ``out``; the engine holds ``engine_copies``
    parameter-sized copies (lean memory: the working copy alone)."""
    points = nx * (ny or 1)
    total = points * seeds
    grid = f"a {nx:,} x {ny:,} grid" if ny is not None else f"a line of {nx:,} points"
    grid = grid if seeds == 1 else f"{seeds:,} seeds of {grid}"
    upto = "up to " if refine else ""
    fewer = f"use fewer points on {arg('x')}" + (f" or {arg('y')}" if ny is not None else "")
    rows = [work(total, "grid points", grid, fewer)]
    if samples is not None:
        what = f"{upto}{grid} x {samples:,} samples"
        fix = f"{fewer}, or a smaller {arg('samples')}"
        rows.append(work(total * samples, "sample evaluations", what, fix))
    per_point = REFINE_BYTES if refine else SURFACE_BYTES
    arrays = points * per_point + (total * SEED_BYTES if seeds > 1 else 0)
    rows.append(memory(arrays, f"the arrays of {grid} at {per_point} bytes a point", fewer))
    copies = engine_copies + POINT_COPIES * (points_per_batch - 1)
    engine_fix = (
        f"use a smaller {arg('points_per_batch')}"
        if points_per_batch > 1
        else f"free memory or choose another {arg('device')}"
    )
    copy = "copy" if copies == 1 else "copies"
    what = f"{copies:,} working {copy} of the model's {bytes_text(param_bytes)}"
    rows.append(memory(copies * param_bytes, what, engine_fix, place=place))
    if seeds > 1:
        fix = f"use fewer {arg('seeds')}"
        rows.append(work(seeds, "seeds", "", fix))
        what = f"the directions of {seeds:,} seeds and their comparisons"
        compared = 2 * seeds * param_bytes + (2 * seeds) ** 2 * PAIR_BYTES
        rows.append(memory(compared, what, fix))
        fewer += f", or fewer {arg('seeds')}"
    if out is not None:
        rows.append(_file_need(out, points, seeds, grid, fewer))
    return rows


def _file_need(out: Path, points: int, seeds: int, grid: str, fix: str) -> Need:
    """The surface file (and a stack's per-seed files), rewritten through a temporary copy."""
    one = points * FILE_BYTES + FILE_OVERHEAD
    old = out.stat().st_size if out.is_file() else 0
    stack = seeds * (points * SEED_FILE_BYTES + SEED_ATTR_BYTES) + seeds**2 * PAIR_ATTR_BYTES
    final = one + (stack if seeds > 1 else 0)
    parts = (seeds + 1) * one if seeds > 1 else 0  # each seed's hidden file, one rewriting
    need = parts + final + max(0, final - old)
    return disk(need, out.absolute().parent, f"the file of {grid}", fix)


def hessian_needs(
    *,
    params: int,
    itemsize: int,
    samples: int | None,
    k: int,
    iterations: int,
    probes: int,
    place: str = "host",
) -> list[Need]:
    """The Hessian report: Lanczos for the top ``k`` (at most ``iterations`` steps, and no more
    than the parameters: one parameter-sized vector kept per step) and ``probes`` Hutchinson
    probes."""
    m = min(params, max(iterations, k))
    what = f"{m:,} Lanczos vectors of {params:,} parameters"
    ritz = 2 * min(k, m)  # the Ritz vectors (a k above the parameters is refused elsewhere)
    rows = [
        memory((m + ritz) * params * itemsize, what, f"use fewer {arg('iterations')}", place=place),
        memory(8 * probes, f"{probes:,} trace probes", f"use fewer {arg('probes')}"),
    ]
    fix = f"use fewer {arg('iterations')} or {arg('probes')}"
    return rows + _products(m + probes + 1, _reorthogonalization(m), samples, fix)


def spectrum_needs(
    *,
    params: int,
    itemsize: int,
    samples: int | None,
    probes: int,
    steps: int,
    k: int,
    iterations: int,
    group_sizes: Iterable[int],
    place: str = "host",
) -> list[Need]:
    """The Hessian's density: ``probes`` × ``steps`` Lanczos steps (the steps' vectors kept; no
    more steps than parameters), then the top ``k`` of each group's block (at most
    ``iterations`` steps each)."""
    m = min(params, steps)
    what = f"{m:,} Lanczos vectors of {params:,} parameters"
    rows = [memory(m * params * itemsize, what, f"use fewer {arg('steps')}", place=place)]
    blocks = [min(g, max(iterations, k)) for g in group_sizes]
    fix = f"use fewer {arg('steps')}, {arg('probes')} or {arg('iterations')}"
    reorthogonalization = probes * _reorthogonalization(m) + sum(map(_reorthogonalization, blocks))
    return rows + _products(probes * m + sum(blocks), reorthogonalization, samples, fix)


def _products(products: int, extra: float, samples: int | None, fix: str) -> list[Need]:
    """``products`` Hessian-vector products over ``samples`` samples, plus ``extra`` sample
    evaluations (the Lanczos reorthogonalization)."""
    if samples is None:
        return []
    what = f"{count_text(products)} Hessian-vector products x {samples:,} samples"
    amount = products * samples * HVP_EVALUATIONS + extra
    return [work(amount, "sample evaluations", what, fix)]


def _reorthogonalization(m: int) -> float:
    """A Lanczos run of m steps reorthogonalizes in 4·m²·P flops: 2·m² sample evaluations of a
    dense net (2·P flops a sample)."""
    return 2.0 * m * m


# A path's point in memory: 66 bytes while descending, 600 more while its JSON text is built
# (measured: 113 MB for 190,000 points; CSV 230).
PATH_POINT_BYTES = 700


def descent_needs(*, paths: int, steps: int) -> list[Need]:
    """``paths`` optimizer paths of up to ``steps`` steps each."""
    total = paths * steps
    what = f"{paths:,} paths x {steps:,} steps"
    fix = f"use fewer {arg('starts')}, {arg('optimizers')}, {arg('lrs')} or {arg('steps')}"
    return [
        work(total, "optimizer steps", what, fix),
        memory((total + paths) * PATH_POINT_BYTES, f"the points of {what}", fix),
    ]


def pca_needs(*, checkpoints: int, params: int, itemsize: int) -> list[Need]:
    """A PCA plane over ``checkpoints`` checkpoints of ``params`` weights (streamed: its
    memory is the T × T Gram matrix and two copies of it)."""
    fix = f"use fewer checkpoints ({arg('pca_runs')}, or train with a larger {arg('save_every')})"
    what = f"{checkpoints:,} checkpoints of {params:,} weights"
    return [
        memory(3 * 8 * checkpoints**2, f"the Gram matrix of {what}", fix),
        work(3 * checkpoints * params * itemsize, "checkpoint bytes read", what, fix),
    ]


# --- what this machine has ------------------------------------------------------------------


def available_memory(place: str = "host") -> float | None:
    """Bytes a run may still allocate on ``place``: the host (:func:`host_available`: free
    memory, the cgroup's limit, ``ulimit -v``) or a CUDA device's free memory; None where
    unknown."""
    if place not in ("host", "cpu"):
        return _device_free(place)
    found = host_available()
    return None if found is None else float(found)


def _device_free(place: str) -> float | None:
    import torch

    device = torch.device(place)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return float(free)


def free_disk(folder: Path) -> float | None:
    """Free bytes in ``folder`` (its nearest existing ancestor); None where unknown."""
    for candidate in (folder, *folder.absolute().parents):
        if candidate.is_dir():
            with contextlib.suppress(OSError):
                return float(shutil.disk_usage(candidate).free)
            return None
    return None


# --- how numbers are shown ------------------------------------------------------------------


def count_text(value: float) -> str:
    """1,234,567 up to a billion, then 1.2e+10 style (3 significant digits)."""
    if value < 1e9 and float(value).is_integer():
        return f"{int(value):,}"
    if value < 1e9:
        return f"{value:,.3g}"
    exponent = math.floor(math.log10(value))
    return f"{value / 10**exponent:.3g}e{exponent}"
