"""One typed config per command: the defaults live here and nowhere else.

The CLI is generated from these dataclasses (``lossland.cli``); the Python API takes its default
values from them (e.g. ``surface(..., norm=SurfaceSettings.norm)``), so the two cannot drift.
Field metadata: ``help``; ``short`` (e.g. "-o"); ``positional``; ``metavar``; ``repeat``
(the option may be given several times and collects a list).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Literal

from lossland.directions import Ignore, Norm
from lossland.engine import BNMode, Precision
from lossland.models import Activation
from lossland.plane import Scheme

Split = Literal["train", "test"]
ImageFormat = Literal["png", "pdf", "svg"]


def option(
    default: Any = MISSING,
    *,
    help: str,
    short: str | None = None,
    positional: bool = False,
    metavar: str | None = None,
    repeat: bool = False,
) -> Any:
    """A dataclass field that the CLI turns into an argument."""
    meta = {
        "help": help,
        "short": short,
        "positional": positional,
        "metavar": metavar,
        "repeat": repeat,
    }
    if repeat:
        return field(default_factory=lambda: list(default or []), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(kw_only=True)
class DataOptions:
    data_dir: Path | None = option(
        None,
        help="folder holding the Fashion-MNIST IDX files (else $LOSSLAND_DATA, else the cache)",
    )


@dataclass(kw_only=True)
class ModelOptions:
    model: str = option(
        "small", help="model name (small, vgg) or a user factory as package.module:factory"
    )
    width: float = option(1.0, help="width multiplier for registry models (vgg --width 0.25)")
    activation: Activation = option("relu", help="activation for registry models")
    model_arg: list[str] = option(
        [], help="KEY=VALUE keyword for a user model factory (JSON values)", repeat=True
    )


@dataclass(kw_only=True)
class TrainConfig(ModelOptions, DataOptions):
    """Train a model on Fashion-MNIST and save a safetensors checkpoint."""

    out: Path | None = option(
        None, short="-o", help="checkpoint file (default: <model>.safetensors)"
    )
    epochs: int = option(1, help="passes over the training set")
    limit: int | None = option(None, help="train on the first N training samples only")
    batch_size: int = option(64, help="samples per step")
    optimizer: Literal["adam", "sgd"] = option("adam", help="optimizer")
    lr: float = option(1e-3, help="learning rate")
    beta1: float = option(0.9, help="Adam β1")
    beta2: float = option(0.999, help="Adam β2")
    momentum: float = option(0.0, help="SGD momentum")
    seed: int = option(0, help="seed for initialisation, shuffling and dropout")
    init: Path | None = option(None, help="start from these weights (e.g. to compare optimizers)")
    save_every: int | None = option(None, help="also save a checkpoint every N steps (trajectory)")
    trajectory_dir: Path | None = option(
        None, help="folder for --save-every checkpoints (default: <out>_trajectory/)"
    )
    device: str = option("auto", help="cpu, cuda, cuda:1, mps or auto")
    progress: bool = option(True, help="show a progress bar")


@dataclass(kw_only=True)
class SurfaceSettings:
    """What defines a surface computation (shared by the API and the CLI)."""

    x: str = option("-1:1:51", help="x range min:max:num")
    y: str | None = option(None, help="y range min:max:num (omit for a 1-D line)")
    norm: Norm = option("filter", help="direction normalization")
    ignore: Ignore = option("biasbn", help="biasbn: biases and BatchNorm get zero directions")
    scheme: Scheme = option("li", help="interpolation scheme")
    orthogonalize: bool = option(False, help="Gram-Schmidt the y direction against x")
    seed: int = option(0, help="seed for the random directions and the sample subset")
    bn: BNMode = option(
        "eval", help="BatchNorm: running stats (eval), batch stats (train) or recomputed per point"
    )
    batch_size: int = option(1024, help="evaluation batch size")
    device: str = option("auto", help="cpu, cuda, cuda:1, mps or auto")
    dtype: Literal["float32", "float64"] = option("float32", help="evaluation dtype")
    precision: Precision = option("fp32", help="fp32, tf32 (CUDA) or bf16 autocast")
    points_per_batch: int | None = option(
        None,
        help="grid points per batched forward (vmap); default: 1 on CPU, from free memory on GPU",
    )
    compile: bool = option(False, help="torch.compile the forward (CUDA graphs on GPU)")
    memory_format: Literal["auto", "channels_last", "contiguous"] = option(
        "auto",
        help="memory format for convolutions (auto: channels_last on CPU/CUDA for conv nets)",
    )
    checkpoint_every: float = option(5.0, help="seconds between atomic progress checkpoints")
    progress: bool = option(True, help="show a progress bar")


@dataclass(kw_only=True)
class SurfaceConfig(SurfaceSettings, ModelOptions, DataOptions):
    """Compute a loss surface around a checkpoint and write it as HDF5."""

    checkpoint: Path = option(
        help="trained checkpoint (safetensors or a plain state dict)", positional=True
    )
    out: Path = option(Path("surface.h5"), short="-o", help="surface file (HDF5)")
    model: str | None = option(  # type: ignore[assignment]
        None,
        help="model when the checkpoint does not name it: small, vgg or package.module:factory",
    )
    directions: Path | None = option(
        None,
        help="reuse directions from this safetensors file, or 'hessian': the plane of the top two "
        "Hessian eigenvectors at the checkpoint (unit norm; default range ±sqrt(2/λ1))",
    )
    save_directions: Path | None = option(
        None, help="where to save the directions (default: <out>.directions.safetensors)"
    )
    to: list[Path] = option(
        [],
        help="another checkpoint: the line (or with two, the plane) between checkpoints",
        repeat=True,
    )
    trajectory: list[Path] = option(
        [],
        help="a training run's checkpoint folder (lossland train --save-every): the PCA plane of "
        "the run around CHECKPOINT with the run's path drawn; repeat for several runs on one "
        "plane; omitted --x/--y (or auto, auto:NUM) fit the paths",
        repeat=True,
    )
    pca_runs: str = option(
        "all", help="with several --trajectory: the runs that define the plane, e.g. 1 or 1,2"
    )
    split: Split = option("train", help="data split to evaluate on")
    samples: str = option("1024", help="number of samples (seeded subset) or 'all'")
    loss: str | None = option(None, help="loss as package.module:function(logits, targets)")
    overwrite: bool = option(False, help="replace an existing surface file with other settings")


@dataclass(kw_only=True)
class InfoConfig:
    """Print a surface file's settings and its min/max/argmin."""

    file: Path = option(help="surface file", positional=True)


@dataclass(kw_only=True)
class PlotConfig:
    """Write contour, filled-contour, heat-map and 3-D plots of a surface."""

    file: Path = option(help="surface file", positional=True)
    out: Path | None = option(None, short="-o", help="output folder (default: beside the file)")
    format: ImageFormat = option("png", help="image format")
    levels: int = option(30, help="number of contour levels")
    log: bool = option(False, help="log-scale the loss")
    zmax: float | None = option(None, help="clip losses above this value")
    dpi: int = option(150, help="resolution for PNG")
    path: list[Path] = option(
        [], help="overlay an optimizer path (CSV/JSON from lossland path)", repeat=True
    )


@dataclass(kw_only=True)
class DemoConfig(DataOptions):
    """Train the small model, compute a 51x51 surface and write every figure into one folder."""

    out: Path = option(Path("demo"), short="-o", help="output folder")
    full: bool = option(
        False, help="the seed's exact setting: full VGG, one epoch, 51x51 on 32 images"
    )
    grid: int = option(51, help="grid points per axis")
    device: str = option("auto", help="cpu, cuda, cuda:1, mps or auto")
    progress: bool = option(True, help="show progress bars")


@dataclass(kw_only=True)
class PathConfig:
    """Roll optimizers down a stored surface and write their paths (CSV or JSON)."""

    file: Path = option(help="surface file", positional=True)
    start: list[str] = option(
        [],
        help="start point x,y; repeat for several starts (negative x: --start=-0.5,0.5)",
        metavar="X,Y",
        repeat=True,
    )
    optimizer: list[str] = option(
        [],
        help="sgd, momentum, nesterov, adam, nadam or rmsprop; repeat to compare (default: nadam)",
        repeat=True,
    )
    lr: list[float] = option(
        [], help="learning rate; repeat to compare (default: 0.1)", repeat=True
    )
    steps: int = option(30, help="optimizer steps")
    log: bool = option(False, help="descend on ln(loss) instead of the loss")
    interpolation: Literal["cubic", "bilinear"] = option("cubic", help="surface interpolant")
    momentum: float | None = option(None, help="momentum (momentum/nesterov: 0.9, rmsprop: 0)")
    dampening: float | None = option(None, help="momentum dampening (default: 0)")
    beta1: float | None = option(None, help="β1 (adam: 0.9, nadam: 0.99)")
    beta2: float | None = option(None, help="β2 (default: 0.999)")
    eps: float | None = option(None, help="ε of adam, nadam, rmsprop (default: 1e-8)")
    weight_decay: float | None = option(None, help="L2 weight decay (default: 0)")
    alpha: float | None = option(None, help="rmsprop smoothing constant (default: 0.99)")
    momentum_decay: float | None = option(None, help="nadam momentum decay (default: 0.004)")
    amsgrad: bool = option(False, help="adam: the AMSGrad variant")
    centered: bool = option(False, help="rmsprop: the centered variant")
    decoupled_weight_decay: bool = option(False, help="adam (AdamW), nadam: decoupled weight decay")
    out: Path | None = option(
        None, short="-o", help="path file, .csv or .json (default: <file>.paths.csv beside it)"
    )


@dataclass(kw_only=True)
class ViewConfig:
    """Write an interactive, self-contained HTML viewer of a surface (works offline)."""

    file: Path = option(help="surface file", positional=True)
    out: Path | None = option(
        None, short="-o", help="HTML page (default: <file>.html beside the file)"
    )
    path: list[Path] = option([], help="also draw a path file from lossland path", repeat=True)
    title: str | None = option(None, help="page title (default: the surface file's name)")
    log: bool = option(False, help="open on the log scale")
    serve: bool = option(False, help="serve the page on 127.0.0.1 until Ctrl-C")
    port: int = option(0, help="port for --serve (0: any free port)")
    browser: bool = option(True, help="open a browser with --serve")


@dataclass(kw_only=True)
class ExportConfig:
    """Export a surface for ParaView (.vtp), spreadsheets (.csv), NumPy (.npz) or Blender (.obj)."""

    file: Path = option(help="surface file", positional=True)
    out: Path | None = option(
        None, short="-o", help="output file (default: beside the surface file, named by format)"
    )
    format: Literal["vtp", "csv", "npz", "obj"] | None = option(
        None, help="output format (default: from -o's suffix, else vtp)"
    )
    log: bool = option(False, help="vtp/obj: height is ln(loss)")
    zmax: float | None = option(None, help="vtp/obj: clip losses above this value (before the log)")


@dataclass(kw_only=True)
class HessianConfig(ModelOptions, DataOptions):
    """Top Hessian eigenvalues (Lanczos) and the trace (Hutchinson) of the loss at a checkpoint."""

    checkpoint: Path = option(help="trained checkpoint", positional=True)
    model: str | None = option(  # type: ignore[assignment]
        None,
        help="model when the checkpoint does not name it: small, vgg or package.module:factory",
    )
    k: int = option(5, help="number of top eigenvalues")
    which: Literal["largest", "magnitude"] = option(
        "largest", help="largest: most positive eigenvalues; magnitude: largest |λ|"
    )
    probes: int = option(64, help="Rademacher probes for the Hutchinson trace (0: no trace)")
    iterations: int = option(100, help="most Lanczos iterations (memory: one vector each)")
    tol: float = option(1e-6, help="stop when the residual bounds are below tol·|λ|max")
    split: Split = option("train", help="data split the loss is averaged over")
    samples: str = option("1024", help="number of samples (seeded subset) or 'all'")
    seed: int = option(0, help="seed for the sample subset, the start vector and the probes")
    batch_size: int = option(256, help="samples per Hessian-vector-product batch")
    device: str = option("auto", help="cpu, cuda, cuda:1, mps or auto")
    dtype: Literal["float32", "float64"] = option("float32", help="compute dtype")
    loss: str | None = option(None, help="loss as package.module:function(logits, targets)")
    save_directions: Path | None = option(
        None, help="save the top one or two eigenvectors as directions (for surface --directions)"
    )


@dataclass(kw_only=True)
class InterpolateConfig(SurfaceSettings, ModelOptions, DataOptions):
    """Loss between checkpoints: the line A→B with its barrier, or the plane through A, B, C."""

    checkpoints: list[Path] = option(
        [],
        help="two checkpoints (a line) or three (a plane: A at (0,0), B at (1,0), C at (0,1))",
        positional=True,
        repeat=True,
    )
    x: str = option("0:1:21", help="x range min:max:num (0 is A, 1 is B)")
    y: str | None = option(None, help="y range for three checkpoints (default: the x range)")
    out: Path = option(Path("interpolation.h5"), short="-o", help="surface file (HDF5)")
    model: str | None = option(  # type: ignore[assignment]
        None,
        help="model when the checkpoint does not name it: small, vgg or package.module:factory",
    )
    split: Split = option("train", help="data split to evaluate on")
    samples: str = option("1024", help="number of samples (seeded subset) or 'all'")
    loss: str | None = option(None, help="loss as package.module:function(logits, targets)")
    overwrite: bool = option(False, help="replace an existing surface file with other settings")
