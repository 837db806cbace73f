"""The commands that read a surface file: ``info``, ``plot``, ``path``, ``view``, ``export``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lossland.analysis import (
    FLAGS,
    HYPER_DEFAULTS,
    Interpolation,
    descend_all,
    describe,
    describe_recording,
    parse_start,
    seed_surface,
    surface_grid,
    topology_lines,
)
from lossland.cli._args import Command, default_of, flag
from lossland.cli._common import seed_lines
from lossland.cli._output import say, shown
from lossland.core import FINITE, Bounds, check_needs, descent_needs, printable
from lossland.errors import LosslandError
from lossland.io import (
    MAX_STEPS,
    ExportFormat,
    Recording,
    Surface,
    check_output,
    export,
    export_format,
    is_recording,
    path_file_kind,
    read_paths,
    write_paths,
)
from lossland.show import (
    StyleName,
    plot,
    plot_recording,
    serve,
    write_recording_viewer,
    write_viewer,
)

ImageFormat = Literal["png", "pdf", "svg"]


@dataclass(kw_only=True)
class InfoArgs:
    """Print a surface file's settings and its min/max/argmin."""

    file: Path = flag(doc="surface file, or a recording (lossland.Recorder)", positional=True)


def info(args: InfoArgs) -> int:
    if is_recording(args.file):
        say(describe_recording(Recording.load(args.file)))
        return 0
    surface = Surface.load(args.file)
    say("\n".join([describe(surface), *seed_lines(surface), *_seed_basins(surface)]))
    return 0


def _seed_basins(surface: Surface) -> list[str]:
    """The basins of every entry (seed, or block of a stack of layers) of a stacked plane, one
    line each (``describe`` gives the file's own surface, the first entry, in full)."""
    if surface.stack is None or surface.y is None:
        return []
    lines = []
    for k, label in enumerate(surface.stack.labels):
        found = topology_lines(seed_surface(surface, k))
        shown = printable(label)  # a block's name is the file's
        lines.append(f"{shown} topology: {found[0] if found else 'no finite loss'}")
    return lines


@dataclass(kw_only=True)
class PlotArgs:
    """Write contour, filled-contour, heat-map, 3-D and topology figures of a surface."""

    file: Path = flag(doc="surface file, or a recording (lossland.Recorder)", positional=True)
    out: Path | None = flag(None, short="-o", doc="output folder (default: beside the file)")
    style: StyleName | None = flag(
        None,
        doc="default (screen: coolwarm, caption, PNG) or paper (one journal column: 8 pt text, "
        "viridis, PDF, no caption)",
    )
    format: ImageFormat | None = flag(None, doc="image format (default: the style's)")
    dpi: int | None = flag(
        None,
        doc="resolution of PNG and raster parts (default: the style's)",
        bounds=Bounds(1, 2400),
    )
    cmap: str | None = flag(None, doc="matplotlib colormap (default: the style's)")
    caption: bool | None = flag(
        None, doc="the settings caption under each figure (default: the style's)"
    )
    title: str | None = flag(None, doc='figure title (default: from the surface; "" for none)')
    levels: int = flag(
        default_of(plot, "levels"), doc="number of contour levels", bounds=Bounds(2, 1000)
    )
    log: bool = flag(default_of(plot, "log"), doc="log colour scale (3-D height: ln loss)")
    zmax: float | None = flag(None, doc="clip losses above this value", bounds=FINITE)
    critical_points: bool = flag(
        default_of(plot, "critical_points"), doc="mark minima and saddles on the contours"
    )
    path: list[Path] = flag(
        [], doc="overlay an optimizer path (CSV/JSON from lossland path)", repeat=True
    )
    overwrite: bool = flag(False, doc="replace existing output files")


def plot_files(args: PlotArgs) -> int:
    if is_recording(args.file):  # λ_max over the steps, the slice's animation
        for file in plot_recording(args.file, args.out, overwrite=args.overwrite):
            say(shown(file))
        return 0
    paths = [p for file in args.path for p in read_paths(file)]
    files = plot(
        args.file,
        args.out,
        style=args.style,
        format=args.format,
        dpi=args.dpi,
        cmap=args.cmap,
        caption=args.caption,
        title=args.title,
        levels=args.levels,
        log=args.log,
        zmax=args.zmax,
        critical_points=args.critical_points,
        paths=paths,
        overwrite=args.overwrite,
    )
    for file in files:
        say(shown(file))
    return 0


@dataclass(kw_only=True)
class PathArgs:
    """Roll optimizers down a stored surface and write their paths (CSV or JSON)."""

    file: Path = flag(doc="surface file", positional=True)
    start: list[str] = flag(
        [],
        doc="start point x,y; repeat for several starts (negative x: --start=-0.5,0.5)",
        metavar="X,Y",
        repeat=True,
    )
    optimizer: list[str] = flag(
        [],
        doc="sgd, momentum, nesterov, adam, nadam or rmsprop; repeat to compare (default: nadam)",
        repeat=True,
    )
    lr: list[float] = flag([], doc="learning rate; repeat to compare (default: 0.1)", repeat=True)
    steps: int = flag(
        default_of(descend_all, "steps"), doc="optimizer steps", bounds=Bounds(0, MAX_STEPS)
    )
    log: bool = flag(False, doc="descend on ln(loss) instead of the loss")
    interpolation: Interpolation = flag(
        default_of(descend_all, "interpolation"), doc="surface interpolant"
    )
    momentum: float | None = flag(None, doc="momentum (momentum/nesterov: 0.9, rmsprop: 0)")
    dampening: float | None = flag(None, doc="momentum dampening (default: 0)")
    beta1: float | None = flag(None, doc="β1 (adam: 0.9, nadam: 0.99)")
    beta2: float | None = flag(None, doc="β2 (default: 0.999)")
    eps: float | None = flag(None, doc="ε of adam, nadam, rmsprop (default: 1e-8)")
    weight_decay: float | None = flag(None, doc="L2 weight decay (default: 0)")
    alpha: float | None = flag(None, doc="rmsprop smoothing constant (default: 0.99)")
    momentum_decay: float | None = flag(None, doc="nadam momentum decay (default: 0.004)")
    amsgrad: bool = flag(False, doc="adam: the AMSGrad variant")
    centered: bool = flag(False, doc="rmsprop: the centered variant")
    decoupled_weight_decay: bool = flag(False, doc="adam (AdamW), nadam: decoupled weight decay")
    out: Path | None = flag(
        None, short="-o", doc="path file, .csv or .json (default: <file>.paths.csv beside it)"
    )
    overwrite: bool = flag(False, doc="replace existing output files")
    allow_large: bool = flag(
        default_of(descend_all, "allow_large"),
        doc="run more than lossland's limit of optimizer steps in all (1e6: paths x steps)",
    )
    progress: bool = flag(default_of(descend_all, "progress"), doc="show a progress bar")


def paths(args: PathArgs) -> int:
    """Every combination of --start, --optimizer and --lr, in one file."""
    hyper = {
        name: float(value)
        for name in sorted({k for h in HYPER_DEFAULTS.values() for k in h} - FLAGS)
        if (value := getattr(args, name)) is not None
    }
    hyper.update({name: 1.0 for name in sorted(FLAGS) if getattr(args, name)})
    starts = [parse_start(text) for text in args.start]
    out = args.out or args.file.with_name(args.file.stem + ".paths.csv")
    path_file_kind(out)
    check_output(out, overwrite=args.overwrite, inputs=[args.file])  # before any work
    optimizers = args.optimizer or default_of(descend_all, "optimizers")
    lrs = args.lr or default_of(descend_all, "lrs")
    count = max(len(starts), 1) * len(optimizers) * len(lrs)  # no start: descend_all says so
    check_needs(descent_needs(paths=count, steps=args.steps), allow_large=args.allow_large)
    found = descend_all(
        surface_grid(Surface.load(args.file)),
        starts=starts,
        optimizers=optimizers,
        lrs=lrs,
        steps=args.steps,
        log=args.log,
        interpolation=args.interpolation,
        hyper=hyper,
        allow_large=args.allow_large,
        progress=args.progress,
    )
    write_paths(found, out, overwrite=args.overwrite)
    for path in found:
        say(path.summary())
    say(shown(out))
    return 0


@dataclass(kw_only=True)
class ViewArgs:
    """Write an interactive, self-contained HTML viewer of a surface (works offline)."""

    file: Path = flag(doc="surface file, or a recording (lossland.Recorder)", positional=True)
    out: Path | None = flag(None, short="-o", doc="HTML page (default: <file>.html beside it)")
    path: list[Path] = flag([], doc="also draw a path file from lossland path", repeat=True)
    title: str | None = flag(None, doc="page title (default: the surface file's name)")
    log: bool = flag(False, doc="open on the log scale")
    serve: bool = flag(False, doc="serve the page on 127.0.0.1 until Ctrl-C")
    port: int = flag(0, doc="port for --serve (0: any free port)", bounds=Bounds(0, 65535))
    browser: bool = flag(True, doc="open a browser with --serve")
    overwrite: bool = flag(False, doc="replace existing output files")


def view(args: ViewArgs) -> int:
    out = args.out or args.file.with_suffix(".html")
    check_output(out, overwrite=args.overwrite, inputs=[args.file, *args.path])  # before any work
    title = args.title or f"lossland: {args.file.name}"
    if is_recording(args.file):  # a step slider over the recorded slices
        if args.path:
            raise LosslandError(
                "a recording's page draws the run's own path at each step: drop --path"
            )
        written = write_recording_viewer(
            Recording.load(args.file), out, title=title, log=args.log, overwrite=args.overwrite
        )
    else:
        surface = Surface.load(args.file)
        found = [p for file in args.path for p in read_paths(file)]
        written = write_viewer(
            surface, out, paths=found, title=title, log=args.log, overwrite=args.overwrite
        )
    say(shown(written))
    if args.serve:
        serve(
            out,
            port=args.port,
            open_browser=args.browser,
            announce=lambda url: say(f"serving {shown(out)} at {url} (Ctrl-C stops)", flush=True),
        )
    return 0


@dataclass(kw_only=True)
class ExportArgs:
    """Export a surface for ParaView (.vtp), spreadsheets (.csv), NumPy (.npz) or Blender (.obj)."""

    file: Path = flag(doc="surface file", positional=True)
    out: Path | None = flag(
        None, short="-o", doc="output file (default: beside the surface file, named by format)"
    )
    format: ExportFormat | None = flag(
        None, doc="output format (default: from -o's suffix, else vtp)"
    )
    log: bool = flag(False, doc="vtp/obj: height is ln(loss)")
    zmax: float | None = flag(
        None, doc="vtp/obj: clip losses above this value (before the log)", bounds=FINITE
    )
    overwrite: bool = flag(False, doc="replace existing output files")


def export_file(args: ExportArgs) -> int:
    """The output defaults to the surface file's name with the format's suffix."""
    if args.out is None:
        fmt = export_format(Path("x.vtp"), args.format)
        out = args.file.with_suffix("." + fmt)
    else:
        out = args.out
        fmt = export_format(out, args.format)
    check_output(out, overwrite=args.overwrite, inputs=[args.file])  # before any work
    surface = Surface.load(args.file)
    written = export(
        surface, out, format=fmt, log=args.log, zmax=args.zmax, overwrite=args.overwrite
    )
    say(shown(written))
    return 0


COMMANDS = (
    Command("info", (InfoArgs,), info),
    Command("plot", (PlotArgs,), plot_files),
    Command("path", (PathArgs,), paths),
    Command("view", (ViewArgs,), view),
    Command("export", (ExportArgs,), export_file),
)
