"""``lossland hessian CHECKPOINT``: top Hessian eigenvalues (Lanczos) and the trace (Hutchinson);
with ``--density`` also the spectral density (stochastic Lanczos quadrature) and each parameter
group's top eigenvalues, written to a small JSON file and a density figure beside it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossland.cli._args import Command, default_of, flag
from lossland.cli._common import CheckpointModelArgs, SampleArgs, note
from lossland.cli._output import say, shown
from lossland.core import AT_LEAST_1, check_needs
from lossland.directions import (
    SUMMARY_GRID_POINTS,
    GroupBy,
    HessianOptions,
    HessianReport,
    HessianSpectrum,
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
        check_spectrum_arguments(probes=args.probes_density, steps=args.steps, groups=args.groups)
    except LosslandError as exc:
        raise LosslandError(exc.render(_density_flag)) from None


def run(args: HessianArgs, options: HessianOptions) -> int:
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
    _check_cost(args, options, model, samples)  # before the data is read
    data = args.load_data(options.seed)
    if samples is None:
        _check_cost(args, options, model, known_samples(data))
    evaluator = args.make_evaluator()
    report, op = hessian_report(model, data, evaluator=evaluator, options=options)
    if args.save_directions is not None:
        save_eigen_directions(op, report, args.save_directions, model, source=str(args.checkpoint))
        note(f"directions (top {min(options.k, 2)} eigenvectors) → {shown(args.save_directions)}")
    say(report.summary(header=f"checkpoint {shown(args.checkpoint)}"))
    if json_path is None or figure_path is None:
        return 0
    try:  # the top --k of each group (the library's own default per group is 3), the largest
        spectrum = hessian_spectrum(
            model,
            data,
            evaluator=evaluator,
            probes=args.probes_density,
            steps=args.steps,
            groups=args.groups,
            options=options,
        )
    except LosslandError as exc:
        raise LosslandError(exc.render(_density_flag)) from None
    atomic_write_bytes(json_path, _summary_json(args, options, report, spectrum).encode("utf-8"))
    save_density_figure(spectrum.density.as_dict(), figure_path)
    note(f"spectrum → {shown(json_path)}, figure → {shown(figure_path)}")
    say(spectrum.describe())
    return 0


def _check_cost(
    args: HessianArgs, options: HessianOptions, model: Any, samples: int | None
) -> None:
    """The report's (and the density's) memory and work, for ``samples`` samples (None: not
    known yet), before the data is read or any product computed."""
    check_needs(hessian_cost(model, options, samples=samples), allow_large=options.allow_large)
    if not args.density:
        return
    needs = spectrum_cost(
        model,
        options,
        samples=samples,
        probes=args.probes_density,
        steps=args.steps,
        groups=args.groups,
    )
    try:
        check_needs(needs, allow_large=options.allow_large)
    except LosslandError as exc:
        raise LosslandError(exc.render(_density_flag)) from None


def _summary_json(
    args: HessianArgs, options: HessianOptions, report: HessianReport, spectrum: HessianSpectrum
) -> str:
    """What the density's JSON file holds: the run, the report's eigenvalues and trace, and
    under "spectrum" the density's summary (its curve at a reduced resolution) and the
    per-group eigenvalues."""
    summary = {
        "checkpoint": str(args.checkpoint),
        "split": args.split,
        "seed": options.seed,
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


COMMAND = Command("hessian", (HessianArgs, HessianOptions), run)
