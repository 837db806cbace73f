"""Optimizer-path files: CSV and JSON, as ``lossland path`` writes them and the figures, the
viewer and ``lossland plot --path`` read them (also hand-made CSV files of x, y columns).

:class:`OptimizerPath` is the record a file holds, whoever computed it
(:func:`lossland.analysis.descend`). Reading checks the file's size, its path and point counts,
and every number, before anything is drawn.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lossland.core import json_default, printable
from lossland.errors import LosslandError, arg
from lossland.io._atomic import atomic_write_bytes, check_output
from lossland.io._limits import not_a_file
from lossland.io._metadata import parse_json, parse_json_object

# Steps of one path at most: 1e5 steps take seconds and write a few MB; more is a typo (10^8
# steps would take a day and write gigabytes).
MAX_STEPS = 100_000

PATHS_FORMAT = "lossland-paths"
CSV_COLUMNS = ("path", "label", "optimizer", "step", "x", "y", "loss", "stopped", "settings")


@dataclass(frozen=True)
class OptimizerPath:
    """One descent: the points visited (start included) and the loss at each."""

    points: np.ndarray  # (T+1, 2) x, y positions including the start
    losses: np.ndarray  # (T+1,) interpolated (raw, not log) loss at each point
    optimizer: str
    label: str  # e.g. "nadam lr=0.1"
    stopped: str | None  # None, or why it stopped early (e.g. "left the grid at step 12")
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Steps actually taken (fewer than asked for when the path stopped early)."""
        return len(self.points) - 1

    def summary(self) -> str:
        x, y = self.points[-1]
        steps = f"{self.steps} step" + ("" if self.steps == 1 else "s")
        end = f"{printable(self.label)}: {steps} to ({x:.4g}, {y:.4g}), loss {self.losses[-1]:.6g}"
        return end if self.stopped is None else f"{end} ({self.stopped})"


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def write_paths(
    paths: Sequence[OptimizerPath], file: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write paths as CSV or JSON (by the suffix), atomically.

    CSV: one row per point with columns path, label, optimizer, step, x, y, loss, stopped,
    settings; ``stopped`` and ``settings`` (JSON) are filled on each path's first row only.
    JSON: ``{"format": "lossland-paths", "version": 1, "paths": [{label, optimizer, stopped,
    settings, points, losses}]}``. Floats are written in full precision.

    Args:
        paths: the paths (:func:`lossland.descend` makes them).
        file: a ``.csv`` or ``.json`` file.
        overwrite: replace an existing ``file``.

    Returns:
        The path written.

    Raises:
        LosslandError: an unknown suffix, or a ``file`` that exists (without ``overwrite``)
            or cannot be written (:func:`lossland.io.check_output`).

    Example:
        >>> lossland.write_paths([lossland.descend(s, start=(0.5, 0.5))], "paths.csv")
    """
    file = Path(file)
    kind = path_file_kind(file)
    if not paths:
        raise LosslandError(f"there are no paths to write: give at least one {arg('start')}")
    check_output(file, overwrite=overwrite)
    if kind == "json":
        doc = {
            "format": PATHS_FORMAT,
            "version": 1,
            "paths": [
                {
                    "label": p.label,
                    "optimizer": p.optimizer,
                    "stopped": p.stopped,
                    "settings": dict(p.settings),
                    "points": [[float(a), float(b)] for a, b in p.points],
                    "losses": [_finite_or_none(float(v)) for v in p.losses],
                }
                for p in paths
            ],
        }
        text = json.dumps(doc, indent=1, allow_nan=False, default=json_default) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for index, p in enumerate(paths):
            settings = json.dumps(dict(p.settings), sort_keys=True, default=json_default)
            for step, ((x, y), loss) in enumerate(zip(p.points, p.losses, strict=True)):
                first = step == 0
                writer.writerow(
                    [
                        index,
                        p.label,
                        p.optimizer,
                        step,
                        repr(float(x)),
                        repr(float(y)),
                        repr(float(loss)),
                        (p.stopped or "") if first else "",
                        settings if first else "",
                    ]
                )
        text = buffer.getvalue()
    atomic_write_bytes(file, text.encode())
    return file


def path_file_kind(file: Path) -> Literal["csv", "json"]:
    suffix = file.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise LosslandError(f"path file {file} must end in .csv or .json: rename it")
    return "csv" if suffix == ".csv" else "json"


# What one path file may hold, checked before the figures and pages that draw it: the longest
# path `lossland path` writes (MAX_STEPS + 1 points) twenty times over, at most MAX_PATHS paths
# (a legend of more is unreadable; 20,000 took 14 minutes to draw), and ~200 bytes per point of
# text (a CSV row is about 110, a JSON point about 85).
MAX_PATHS = 1_000
MAX_PATH_POINTS = 20 * (MAX_STEPS + 1)
MAX_PATH_FILE_BYTES = 200 * MAX_PATH_POINTS


def read_paths(file: str | os.PathLike[str]) -> list[OptimizerPath]:
    """Read a CSV or JSON path file (as :func:`write_paths` writes them).

    A hand-made CSV needs only x and y columns (one path); ``path`` splits rows into several
    paths and ``loss`` gives the losses (NaN where absent). A UTF-8 byte-order mark is allowed.

    Args:
        file: a ``.csv`` or ``.json`` file.

    Returns:
        The paths, in the file's order.

    Raises:
        LosslandError: a missing, malformed or oversized file: at most :data:`MAX_PATHS` paths,
            :data:`MAX_PATH_POINTS` points and :data:`MAX_PATH_FILE_BYTES` bytes, checked
            before anything is drawn.

    Example:
        >>> paths = lossland.read_paths("paths.csv")
        >>> lossland.plot(s, "figures/", paths=paths)
    """
    file = Path(file)
    kind = path_file_kind(file)
    if not file.is_file():
        raise LosslandError(
            f"path file {file} {not_a_file(file)}: check the path or write it with lossland path"
        )

    def fail(problem: str) -> LosslandError:
        return LosslandError(f"path file {file} {problem}: write it again with lossland path")

    try:
        size = file.stat().st_size
        if size > MAX_PATH_FILE_BYTES:
            raise fail(f"has {size:,} bytes, more than the {MAX_PATH_FILE_BYTES:,} it may hold")
        text = file.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is not text
    except (OSError, UnicodeDecodeError) as exc:
        raise LosslandError(f"cannot read path file {file} ({exc}): check the file") from None
    paths = _read_json(text, fail) if kind == "json" else _read_csv(text, fail, file.stem)
    if not paths:
        raise fail("holds no paths")
    return paths


def _number(value: Any, fail: Any, what: str) -> float:
    if value is None or value == "":
        return math.nan
    if isinstance(value, bool):
        raise fail(f"has a non-numeric {what} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise fail(f"has a non-numeric {what} {_shown(value)}") from None
    except OverflowError:  # an integer of hundreds of digits
        raise fail(f"has {what} {_shown(value)} beyond the range of a float") from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_counts(paths: int, points: int, fail: Any) -> None:
    if paths > MAX_PATHS:
        raise fail(f"holds more than {MAX_PATHS:,} paths")
    if points > MAX_PATH_POINTS:
        raise fail(f"holds more than {MAX_PATH_POINTS:,} points")


def _read_json(text: str, fail: Any) -> list[OptimizerPath]:
    doc = parse_json(text, fail, what="text")
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), list):
        raise fail('has no "paths" list')
    items = doc["paths"]
    counted = [len(i["points"]) for i in items if isinstance(i, dict) and _is_list(i.get("points"))]
    _check_counts(len(items), sum(counted), fail)
    return [_json_path(i, item, fail) for i, item in enumerate(items)]


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _json_path(i: int, item: Any, fail: Any) -> OptimizerPath:
    if not isinstance(item, dict):
        raise fail(f"has path {i} that is not an object")
    raw_points = item.get("points")
    if not isinstance(raw_points, list) or not raw_points:
        raise fail(f'has path {i} without "points"')
    if not all(isinstance(p, list) and len(p) == 2 for p in raw_points):
        raise fail(f"has path {i} with points that are not [x, y] pairs")
    points = np.array(
        [[_number(a, fail, "x"), _number(b, fail, "y")] for a, b in raw_points],
        dtype=np.float64,
    )
    if not np.isfinite(points).all():
        raise fail(f"has a missing or non-finite x or y in path {i}")
    raw_losses = item.get("losses", [None] * len(raw_points))
    if not isinstance(raw_losses, list) or len(raw_losses) != len(raw_points):
        raise fail(f"has path {i} whose losses do not match its points")
    losses = np.array([_number(v, fail, "loss") for v in raw_losses], dtype=np.float64)
    settings = item.get("settings", {})
    if not isinstance(settings, dict):
        raise fail(f"has path {i} whose settings are not an object")
    stopped = item.get("stopped")
    optimizer = str(item.get("optimizer", ""))
    return OptimizerPath(
        points=points,
        losses=losses,
        optimizer=optimizer,
        label=str(item.get("label", optimizer or f"path {i}")),
        stopped=None if stopped in (None, "") else str(stopped),
        settings=settings,
    )


def _read_csv(text: str, fail: Any, stem: str) -> list[OptimizerPath]:
    """Rows grouped by their ``path`` column, counted as they are read (a file of too many
    points or paths stops at the first row past the limit)."""
    reader = csv.DictReader(io.StringIO(text))
    groups: dict[str, tuple[dict[str, str], list[tuple[float, float, float]]]] = {}
    try:
        # Names as a person types them: "x, y" has a column "y".
        if not reader.fieldnames:
            raise fail("has no rows")
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
        for needed in ("x", "y"):
            if needed not in reader.fieldnames:
                raise fail(f"has no {needed} column")
        for count, row in enumerate(reader, 1):
            key = row.get("path") or "0"
            values = groups.setdefault(key, (row, []))[1]
            values.append(
                (
                    _number(row["x"], fail, "x"),
                    _number(row["y"], fail, "y"),
                    _number(row.get("loss"), fail, "loss"),
                )
            )
            _check_counts(len(groups), count, fail)
    except csv.Error as exc:
        raise fail(f"is not valid CSV ({exc})") from None
    if not groups:
        raise fail("has no rows")
    names = {key: stem if len(groups) == 1 else f"{stem} {key}" for key in groups}
    return [_csv_path(key, *group, names[key], fail) for key, group in groups.items()]


def _csv_path(
    key: str,
    first: Mapping[str, str | None],
    values: list[tuple[float, float, float]],
    default: str,
    fail: Any,
) -> OptimizerPath:
    table = np.array(values, dtype=np.float64).reshape(-1, 3)
    points = table[:, :2]
    if not np.isfinite(points).all():
        raise fail(f"has a missing or non-finite x or y in path {key}")
    settings = parse_json_object(
        first.get("settings") or "{}", fail, what=f"settings in path {key}"
    )
    optimizer = first.get("optimizer") or ""
    return OptimizerPath(
        points=np.ascontiguousarray(points),
        losses=np.ascontiguousarray(table[:, 2]),
        optimizer=optimizer,
        label=first.get("label") or default,
        stopped=first.get("stopped") or None,
        settings=settings,
    )
