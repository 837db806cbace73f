"""``lossland hessian CHECKPOINT``: top Hessian eigenvalues (Lanczos) and the trace (Hutchinson);
with ``--density`` also the spectral density (stochastic Lanczos quadrature) and each parameter
group's top eigenvalues, written to a small JSON file and a density figure beside it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lossland.cli._args import Command, default_of, flag
from lossland.cli._common import CheckpointModelArgs, SampleArgs, note
from lossland.cli._output import say, shown
from lossland.core import AT_LEAST_1, POSITIVE, SEEDS, Bounds, check_needs, resolve_device
from lossland.directions import (
    DTYPES,
    SUMMARY_GRID_POINTS,
    GroupBy,
    HessianReport,
    HessianSpectrum,
    Which,
    check_spectrum_arguments,
    hessian_cost,
    hessian_report,
    hessian_spectrum,
    save_eigen_directions,
    spectrum_cost,
)
from lossland.engine import known_samples
from lossland.errors import LosslandError
from lossland.io import atomic_write_bytes, check_output
from lossland.show import save_density_figure


def _default(name: str) -> object:
    return default_of(hessian_report, name)


def _spectrum_default(name: str) -> object:
    return default_of(hessian_spectrum, name)


@dataclass(kw_only=True)
class HessianArgs(CheckpointModelArgs, SampleArgs):
    """Top Hessian eigenvalues (Lanczos), trace (Hutchinson) and, with --density, the spectrum.

    The loss at a checkpoint, over a seeded subset of a split. --density adds the spectral
    density (stochastic Lanczos quadrature, with standard errors across probes) and the top
    eigenvalues of each parameter group's diagonal block, written to -o with a figure.
    """

    checkpoint: Path = flag(doc="trained checkpoint", positional=True)
    k: int = flag(
        _default("k"),
        bounds=AT_LEAST_1,
        doc="number of top eigenvalues (with --density: per group too)",
    )
    which: Which = flag(
        _default("which"), doc="largest: most positive eigenvalues; magnitude: largest |λ|"
    )
    probes: int = flag(
        _default("probes"),
        bounds=Bounds(0),
        doc="Rademacher probes for the Hutchinson trace (0: none)",
    )
    iterations: int = flag(
        _default("iterations"),
        bounds=AT_LEAST_1,
        doc="most Lanczos iterations (memory: one vector each)",
    )
    tol: float = flag(
        _default("tol"), bounds=POSITIVE, doc="stop when the residual bounds are below tol·|λ|max"
    )
    seed: int = flag(
        _default("seed"), bounds=SEEDS, doc="seed for the sample subset, start vector and probes"
    )
    batch_size: int = flag(
        _default("batch_size"), bounds=AT_LEAST_1, doc="samples per Hessian-vector-product batch"
    )
    device: str = flag("auto", doc="cpu, cuda, cuda:1, mps or auto")
    dtype: Literal["float32", "float64"] = flag("float32", doc="compute dtype")
    save_directions: Path | None = flag(
        None, doc="save the top one or two eigenvectors as directions (for surface --directions)"
    )
    density: bool = flag(
        False,
        doc="also the spectral density (stochastic Lanczos quadrature) and the top --k "
        "eigenvalues of each parameter group; writes -o and a figure beside it",
    )
    probes_density: int = flag(
        _spectrum_default("probes"),
        bounds=AT_LEAST_1,
        doc="probe vectors of the density (its standard errors)",
    )
    steps: int = flag(
        _spectrum_default("steps"),
        bounds=AT_LEAST_1,
        doc="Lanczos steps per density probe (memory: one parameter-sized vector each)",
    )
    groups: GroupBy = flag(
        _spectrum_default("groups"),
        doc="parameter: one group per tensor; module: one per layer (weight and bias together)",
    )
    out: Path | None = flag(
        None,
        short="-o",
        doc="--density JSON file (default: <checkpoint>.hessian.json beside it; the figure: "
        "the same name with .png)",
    )
    overwrite: bool = flag(False, doc="replace existing output files")
    allow_large: bool = flag(
        _default("allow_large"),
        doc="run even when the estimated work is above lossland's limits (1e9 sample "
        "evaluations, a Hessian-vector product counting 8 per sample); what cannot fit the "
        "memory is refused either way",
    )
    progress: bool = flag(_default("progress"), doc="show a progress bar over the products")


def _outputs(args: HessianArgs) -> tuple[Path | None, Path | None]:
    """The density's JSON file and figure, or (None, None) without ``--density``."""
    if not args.density:
        if args.out is not None:
            raise LosslandError(
                "-o names the --density spectrum's file: add --density, or drop -o (the report "
                "is printed)"
            )
        return None, None
    json_path = args.out or args.checkpoint.with_name(args.checkpoint.stem + ".hessian.json")
    return json_path, json_path.with_suffix(".png")


def _density_flag(name: str) -> str:
    """How this command spells hessian_spectrum's arguments (its probes are --probes-density)."""
    return "--probes-density" if name == "probes" else COMMAND.flag_for(name)


def _check_density(args: HessianArgs) -> None:
    try:
        check_spectrum_arguments(
            probes=args.probes_density,
            steps=args.steps,
            groups=args.groups,
            k=args.k,
            iterations=args.iterations,
            tol=args.tol,
            batch_size=args.batch_size,
        )
    except LosslandError as exc:
        raise LosslandError(exc.render(_density_flag)) from None


def run(args: HessianArgs) -> int:
    json_path, figure_path = _outputs(args)
    for path, name in ((args.save_directions, "save_directions"), (json_path, "out")):
        if path is not None:  # before any work
            check_output(path, overwrite=args.overwrite, inputs=[args.checkpoint], name=name)
    if figure_path is not None:
        check_output(figure_path, overwrite=args.overwrite, inputs=[args.checkpoint])
    if args.density:
        _check_density(args)
    model, _ = args.load(args.checkpoint)
    samples = args.known_samples()
    _check_cost(args, model, samples)  # before the data is read
    data = args.load_data(args.seed)
    if samples is None:
        _check_cost(args, model, known_samples(data))
    common: dict[str, Any] = {
        "evaluator": args.evaluator(),
        "batch_size": args.batch_size,
        "device": resolve_device(args.device),
        "dtype": DTYPES[args.dtype],
        "seed": args.seed,
        "allow_large": args.allow_large,
        "progress": args.progress,
    }
    report, op = hessian_report(
        model,
        data,
        k=args.k,
        probes=args.probes,
        iterations=args.iterations,
        tol=args.tol,
        which=args.which,
        **common,
    )
    if args.save_directions is not None:
        save_eigen_directions(op, report, args.save_directions, model, source=str(args.checkpoint))
        note(f"directions (top {min(args.k, 2)} eigenvectors) → {shown(args.save_directions)}")
    say(report.summary(header=f"checkpoint {shown(args.checkpoint)}"))
    if json_path is None or figure_path is None:
        return 0
    try:
        spectrum = hessian_spectrum(
            model,
            data,
            probes=args.probes_density,
            steps=args.steps,
            groups=args.groups,
            k=args.k,
            iterations=args.iterations,
            tol=args.tol,
            **common,
        )
    except LosslandError as exc:
        raise LosslandError(exc.render(_density_flag)) from None
    atomic_write_bytes(json_path, _summary_json(args, report, spectrum).encode("utf-8"))
    save_density_figure(spectrum.density.as_dict(), figure_path)
    note(f"spectrum → {shown(json_path)}, figure → {shown(figure_path)}")
    say(spectrum.describe())
    return 0


def _check_cost(args: HessianArgs, model: Any, samples: int | None) -> None:
    """The report's (and the density's) memory and work, for ``samples`` samples (None: not
    known yet), before the data is read or any product computed."""
    common: dict[str, Any] = {
        "samples": samples,
        "k": args.k,
        "iterations": args.iterations,
        "dtype": DTYPES[args.dtype],
        "device": resolve_device(args.device),
    }
    check_needs(hessian_cost(model, probes=args.probes, **common), allow_large=args.allow_large)
    if not args.density:
        return
    needs = spectrum_cost(
        model, probes=args.probes_density, steps=args.steps, groups=args.groups, **common
    )
    try:
        check_needs(needs, allow_large=args.allow_large)
    except LosslandError as exc:
        raise LosslandError(exc.render(_density_flag)) from None


def _summary_json(args: HessianArgs, report: HessianReport, spectrum: HessianSpectrum) -> str:
    """What the density's JSON file holds: the run, the report's eigenvalues and trace, and
    under "spectrum" the density's summary (its curve at a reduced resolution) and the
    per-group eigenvalues."""
    summary = {
        "checkpoint": str(args.checkpoint),
        "split": args.split,
        "seed": args.seed,
        "dtype": report.dtype,
        "device": report.device,
        **report.to_json(),
        "spectrum": spectrum.as_dict(arrays=False, grid_points=SUMMARY_GRID_POINTS),
    }
    return json.dumps(_finite(summary), indent=1, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


COMMAND = Command("hessian", (HessianArgs,), run)
