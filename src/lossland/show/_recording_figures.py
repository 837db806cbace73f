"""Figures of a recording (:class:`lossland.io.Recording`): the landscape over training.

* :func:`sharpness_figure`: λ_max over the recorded steps, with the stability threshold 2/η
  where the learning rate was recorded (a constant η is one dashed line, a schedule a dashed
  step curve), the trace on a second axis when it was measured, and the slice's sharpness;
* :func:`write_animation`: one frame per recorded step — the slice (a line, or a plane's filled
  contour) on one colour scale and one range for every frame, so that a change of colour is a
  change of the landscape — written as a GIF by Pillow, and as an MP4 where ffmpeg exists;
* :func:`plot_recording`: both into a folder (``lossland plot`` on a recording file).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lossland.errors import LosslandError
from lossland.io import Recording, atomic_path, check_output, make_folder
from lossland.show._plotter import save
from lossland.show._text import draws_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FRAME_MS = 250  # one recorded step per quarter second


def _steps_lr(recording: Recording) -> tuple[np.ndarray, np.ndarray]:
    """The steps where the learning rate was recorded and 2/η there."""
    lr = recording.scalars["lr"]
    known = np.isfinite(lr) & (lr > 0)
    return recording.steps[known], 2.0 / lr[known]


@draws_text
def sharpness_figure(recording: Recording) -> Figure:
    """λ_max (and the trace) over the steps, 2/η dashed; the slice's rise below."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(6.4, 5.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    steps, s = recording.steps, recording.scalars
    if np.isfinite(s["lambda_max"]).any():
        top.plot(steps, s["lambda_max"], marker=".", color="C0", label="λ_max")
    at, threshold = _steps_lr(recording)
    if at.size:
        constant = np.allclose(threshold, threshold[0])
        label = f"2/η = {threshold[0]:.4g}" if constant else "2/η"
        top.step(at, threshold, where="post", linestyle="--", color="C3", label=label)
    if np.isfinite(s["trace"]).any():
        twin = top.twinx()
        twin.plot(steps, s["trace"], color="C2", alpha=0.7, label="trace")
        twin.set_ylabel("Hessian trace", color="C2")
    top.set_ylabel("top Hessian eigenvalue")
    top.legend(loc="best", fontsize="small")
    top.set_title(f"{len(steps)} recorded steps")
    bottom.plot(steps, s["centre_loss"], color="k", label="loss at θ_t")
    bottom.plot(steps, s["centre_loss"] + s["barrier"], color="C1", label="largest loss on slice")
    bottom.set_xlabel("step")
    bottom.set_ylabel("loss")
    bottom.legend(loc="best", fontsize="small")
    return fig


def _frame_scale(recording: Recording) -> tuple[float, float]:
    finite = recording.loss[np.isfinite(recording.loss)]
    if not finite.size:
        raise LosslandError("the recording holds no finite loss: nothing to animate")
    low, high = float(finite.min()), float(finite.max())
    return low, high if high > low else low + 1.0


@draws_text
def frame(recording: Recording, index: int, *, scale: tuple[float, float]) -> Figure:
    """The slice recorded at ``steps[index]`` on the fixed ``scale`` (low, high)."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(5.0, 4.0), dpi=80, layout="constrained")
    ax = fig.subplots()
    loss = np.clip(recording.loss[index], *scale)
    if recording.y is None:
        ax.plot(recording.x, loss, color="C0")
        ax.axvline(0.0, color="k", linewidth=0.8)
        ax.set_ylim(scale[0], scale[1])
        ax.set_ylabel("loss")
    else:
        levels = np.linspace(scale[0], scale[1], 21)
        filled = ax.contourf(recording.x, recording.y, loss, levels=levels, cmap="viridis")
        fig.colorbar(filled, ax=ax, label="loss")
        ax.plot([0.0], [0.0], marker="*", color="w", markersize=10)
        ax.set_aspect("equal")
        ax.set_ylabel("y")
    ax.set_xlabel("x (filter-normalized at each step)")
    lam = recording.scalars["lambda_max"][index]
    extra = f", λ_max {lam:.4g}" if np.isfinite(lam) else ""
    ax.set_title(f"step {int(recording.steps[index])}{extra}")
    return fig


def _frames(recording: Recording) -> list[Any]:
    """Each step's frame as a Pillow image (the palette of the first frame's colours)."""
    from PIL import Image

    scale = _frame_scale(recording)
    images = []
    for index in range(len(recording)):
        fig = frame(recording, index, scale=scale)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        images.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return images


def write_animation(
    recording: Recording, path: str | os.PathLike[str], *, overwrite: bool = False
) -> list[Path]:
    """The slices over the steps as a GIF at ``path`` (and an MP4 beside it where ffmpeg is
    on the PATH); returns the files written."""
    if not len(recording):
        raise LosslandError("the recording holds no step yet: nothing to animate")
    gif = Path(path)
    check_output(gif, overwrite=overwrite)
    images = _frames(recording)
    with atomic_path(gif) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=FRAME_MS, loop=0
        )
    written = [gif]
    if shutil.which("ffmpeg") is not None:
        written.append(_mp4(images, gif.with_suffix(".mp4"), overwrite=overwrite))
    return written


def _mp4(images: list[Any], path: Path, *, overwrite: bool) -> Path:
    """The frames through matplotlib's ffmpeg writer (even sizes: yuv420p needs them)."""
    from matplotlib import animation
    from matplotlib.figure import Figure as MplFigure

    check_output(path, overwrite=overwrite)
    width, height = (d - d % 2 for d in images[0].size)
    fig = MplFigure(figsize=(width / 80, height / 80), dpi=80)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    shown = ax.imshow(np.asarray(images[0].crop((0, 0, width, height))))
    writer = animation.FFMpegWriter(fps=1000 // FRAME_MS)
    with atomic_path(path) as tmp:
        named = tmp.with_suffix(".mp4")  # ffmpeg picks the container by the suffix
        with writer.saving(fig, str(named), dpi=80):
            for image in images:
                shown.set_data(np.asarray(image.crop((0, 0, width, height))))
                writer.grab_frame()
        os.replace(named, tmp)
    return path


def plot_recording(
    recording: Recording | str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
) -> list[Path]:
    """``<name>_sharpness.png`` and ``<name>_landscape.gif`` (and ``.mp4`` with ffmpeg) in
    ``out`` (default: beside the file; a recording object needs ``out``)."""
    if isinstance(recording, Recording):
        if out is None:
            raise LosslandError("a recording that is not a file needs an out folder")
        name, loaded = "recording", recording
    else:
        source = Path(recording)
        name, loaded = source.stem, Recording.load(source)
        out = source.parent if out is None else out
    folder = make_folder(out)
    sharp = folder / f"{name}_sharpness.png"
    gif = folder / f"{name}_landscape.gif"
    for target in (sharp, gif):  # before any work: nothing written when one is refused
        check_output(target, overwrite=overwrite)
    files = [save(sharpness_figure(loaded), sharp)]
    return files + write_animation(loaded, gif, overwrite=overwrite)
