"""Export a surface: ParaView (.vtp), spreadsheets (.csv), NumPy (.npz), meshes for Blender (.obj).

* ``vtp``: VTK XML PolyData in ASCII, as the reference implementation's ``h52vtp.py`` writes it:
  one point per grid node with a drawn loss (evaluated, not NaN) at (x, y, z), one quad per grid
  cell whose four corners have one, point data ``zvalue`` (the height) and ``loss`` (and
  ``accuracy`` when every exported point has one), cell data ``averaged zvalue``. A small writer
  instead of the ``vtk`` package, which weighs hundreds of megabytes; tests read the file back.
* ``obj``: Wavefront OBJ for Blender or 3-D printing: the same vertices and two triangles per
  cell (one where a corner is missing); faces touching a hole (not evaluated, NaN) are skipped.
* ``csv``: one row per grid node, columns x, y (2-D only), one per exported row of
  :data:`lossland.core.FIELDS` the surface holds (loss, acc, loss_sem), done.
* ``npz``: arrays x, the exported rows, done, ``split`` and ``attrs`` (JSON text), y (2-D only)
  and ``trajectories/<name>``; :func:`read_npz` turns it back into a :class:`Surface`.

Heights for vtp and obj: the losses as every reader draws them (:meth:`Surface.values`: ±inf
replaced by the largest finite value, NaN and not evaluated points left out), clipped at
``zmax`` when given, then ln(loss) when ``log`` (refused for losses <= 0; the reference's
log(z + 0.1) flattens every loss below ~0.1, so it is not copied); a ``LosslandWarning`` says
what was left out or replaced. csv and npz always hold the raw grid, so ``log``/``zmax`` are
refused for them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from lossland.core import FIELDS, json_default
from lossland.errors import LosslandError, LosslandWarning, arg, first_line
from lossland.io._atomic import atomic_path, atomic_write_bytes, check_output
from lossland.io._limits import check_zip, not_a_file
from lossland.io._metadata import Fail, check_schema, parse_json_object
from lossland.io._surface_file import (
    ATTR_SCHEMA,
    Surface,
    check_array,
    check_contents,
    check_mask,
    log_loss,
)

ExportFormat = Literal["vtp", "csv", "npz", "obj"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)
NPZ_FORMAT = "lossland-surface-npz"
_RAW_FIX = "export it as csv or npz, which hold the raw grid"


def export_format(out: Path, format: str | None) -> ExportFormat:
    """The format to write: ``format`` when given, else ``out``'s suffix."""
    name = (format or out.suffix.lstrip(".")).lower()
    if name not in FORMATS:
        raise LosslandError(
            f"cannot tell the export format of {out}: give {arg('format')} "
            f"{'|'.join(FORMATS)} or a file name ending in one"
        )
    return name  # type: ignore[return-value]


def export(
    surface: Surface,
    out: str | os.PathLike[str],
    *,
    format: ExportFormat | None = None,
    log: bool = False,
    zmax: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``surface`` to ``out`` in another format, atomically.

    Args:
        surface: the surface to write.
        out: the file to write.
        format: "csv", "npz", "vtp" or "obj" (default: from the suffix of ``out``).
        log: heights of the meshes (vtp, obj) in ln(loss); meshes only.
        zmax: clip the meshes' losses from above; meshes only.
        overwrite: replace an existing ``out``.

    Returns:
        The path written.

    Raises:
        LosslandError: an unknown format, ``log``/``zmax`` for csv or npz, a mesh of a line,
            or an ``out`` that exists (without ``overwrite``) or cannot be written.

    Example:
        >>> lossland.export(s, "surface.csv")
        >>> lossland.read_npz(lossland.export(s, "surface.npz"))
    """
    out = Path(out)
    fmt = export_format(out, format)
    mesh = fmt in MESH_FORMATS
    if not mesh and (log or zmax is not None):
        raise LosslandError(
            f"{arg('log')} and {arg('zmax')} shape the height of vtp and obj meshes; {fmt} holds "
            "the raw grid: drop them"
        )
    if mesh and surface.y is None:
        raise LosslandError(
            f"a {fmt} mesh needs a 2-D surface and this one is 1-D: export it as csv or npz"
        )
    if mesh and min(surface.shape) < 2:
        raise LosslandError(
            f"a {fmt} mesh needs at least 2 points on each axis and this grid is "
            f"{surface.shape[1]}x{surface.shape[0]}: export it as csv or npz"
        )
    check_output(out, overwrite=overwrite)
    WRITERS[fmt](surface, out, log, zmax)
    note = surface.values().note() if mesh else None
    if note:  # csv and npz hold every point as stored, done mask included
        warnings.warn(f"{out.name}: {note}", LosslandWarning, stacklevel=2)
    return out


# --- heights and meshes ------------------------------------------------------------------------


def heights(surface: Surface, *, log: bool = False, zmax: float | None = None) -> np.ndarray:
    """Mesh heights: the drawn losses (:meth:`Surface.values`), clipped at ``zmax``, then ln
    when ``log``; holes are NaN."""
    z = surface.values().drawn(zmax=zmax, log=log)
    return log_loss(z) if log else z


class _Mesh:
    """Evaluated nodes as vertices (row-major order) and the cells between them."""

    def __init__(self, surface: Surface, z: np.ndarray):
        X, Y = surface.grid()
        values = surface.values()
        values.require("export as a mesh", fix=_RAW_FIX)
        ok = np.isfinite(z)
        index = np.full(z.shape, -1, dtype=np.int64)
        index[ok] = np.arange(int(ok.sum()))
        self.xyz = np.column_stack([X[ok], Y[ok], z[ok]])
        self.loss = values.loss[ok]
        acc = values.acc[ok]
        self.acc = acc if np.isfinite(acc).all() else None
        # Corners of every cell, counter-clockwise seen from +z on increasing axes.
        a = index[:-1, :-1].ravel()
        b = index[:-1, 1:].ravel()
        c = index[1:, 1:].ravel()
        d = index[1:, :-1].ravel()
        self.corners = np.column_stack([a, b, c, d])


def _numbers(values: Iterable[Any], per_line: int = 6, indent: str = "          ") -> str:
    items = [
        repr(float(v)) if not isinstance(v, (int, np.integer)) else str(int(v)) for v in values
    ]
    lines = [" ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "".join(f"{indent}{line}\n" for line in lines)


def _data_array(
    name: str, values: np.ndarray, *, kind: str = "Float64", components: int = 1
) -> str:
    flat = values.ravel()
    attrs = f'type="{kind}" Name="{name}" NumberOfComponents="{components}" format="ascii"'
    if flat.size:
        lo, hi = flat.min().item(), flat.max().item()
        attrs += f' RangeMin="{lo!r}" RangeMax="{hi!r}"'
    per_line = 3 * 2 if components == 3 else 6
    return f"        <DataArray {attrs}>\n{_numbers(flat.tolist(), per_line)}        </DataArray>\n"


def _vtp(mesh: _Mesh) -> str:
    quads = mesh.corners[(mesh.corners >= 0).all(axis=1)]
    z = mesh.xyz[:, 2]
    # The mean of the four corners as a sum of quarters (exact: 4 is a power of two), so that
    # heights near the largest float do not overflow the sum.
    averaged = (z[quads] / 4).sum(axis=1) if len(quads) else np.zeros(0)
    parts = [
        '<?xml version="1.0"?>\n',
        '<VTKFile type="PolyData" version="1.0" byte_order="LittleEndian" header_type="UInt64">\n',
        "  <PolyData>\n",
        f'    <Piece NumberOfPoints="{len(z)}" NumberOfVerts="0" NumberOfLines="0" '
        f'NumberOfStrips="0" NumberOfPolys="{len(quads)}">\n',
        '      <PointData Scalars="zvalue">\n',
        _data_array("zvalue", z),
        _data_array("loss", mesh.loss),
    ]
    if mesh.acc is not None:
        parts.append(_data_array("accuracy", mesh.acc))
    parts += [
        "      </PointData>\n",
        '      <CellData Scalars="averaged zvalue">\n',
        _data_array("averaged zvalue", averaged),
        "      </CellData>\n",
        "      <Points>\n",
        _data_array("Points", mesh.xyz, components=3),
        "      </Points>\n",
        "      <Polys>\n",
        _data_array("connectivity", quads.astype(np.int64), kind="Int64"),
        _data_array("offsets", 4 * np.arange(1, len(quads) + 1, dtype=np.int64), kind="Int64"),
        "      </Polys>\n",
        "    </Piece>\n",
        "  </PolyData>\n",
        "</VTKFile>\n",
    ]
    return "".join(parts)


def _triangles(corners: np.ndarray) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for a, b, c, d in corners.tolist():
        if min(a, b, c, d) >= 0:
            out += [(a, b, c), (a, c, d)]
            continue
        present = [v for v in (a, b, c, d) if v >= 0]
        if len(present) == 3:  # one corner missing: the triangle of the other three
            out.append((present[0], present[1], present[2]))
    return out


def _obj(mesh: _Mesh, surface: Surface, *, log: bool, zmax: float | None) -> str:
    height = "ln(loss)" if log else "loss"
    if zmax is not None:
        height += f" clipped at {zmax:g}"
    lines = [
        "# lossland surface mesh",
        f"# {surface.split} split, grid {'x'.join(map(str, surface.shape))}, z = {height}",
        "o lossland_surface",
    ]
    lines += [f"v {x!r} {y!r} {z!r}" for x, y, z in mesh.xyz.tolist()]
    # OBJ indices are 1-based.
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in _triangles(mesh.corners)]
    return "\n".join(lines) + "\n"


# --- csv and npz -------------------------------------------------------------------------------


def _exported(surface: Surface) -> dict[str, np.ndarray]:
    """The exported rows of FIELDS that the surface holds, in table order, as float64."""
    held = {row.name: surface.field(row.name) for row in FIELDS if row.exported}
    return {name: np.asarray(v, dtype=np.float64) for name, v in held.items() if v is not None}


def _csv(surface: Surface) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fields = _exported(surface)
    columns = [*fields, "done"]
    if surface.y is None:
        writer.writerow(["x", *columns])
        coords: list[list[float]] = [[float(x)] for x in surface.x]
    else:
        writer.writerow(["x", "y", *columns])
        X, Y = surface.grid()
        coords = [[float(x), float(y)] for x, y in zip(X.ravel(), Y.ravel(), strict=True)]
    values = zip(*(v.ravel().tolist() for v in fields.values()), strict=True)
    done = surface.done.ravel().tolist()
    for coord, point, evaluated in zip(coords, values, done, strict=True):
        writer.writerow([*map(repr, coord), *map(repr, point), int(bool(evaluated))])
    return buffer.getvalue()


def _write_npz(surface: Surface, out: Path) -> None:
    arrays: dict[str, np.ndarray] = {
        "format": np.array(NPZ_FORMAT),
        "x": np.asarray(surface.x, dtype=np.float64),
        **_exported(surface),
        "done": np.asarray(surface.done, dtype=bool),
        "split": np.array(surface.split),
        "attrs": np.array(json.dumps(dict(surface.attrs), sort_keys=True, default=json_default)),
    }
    if surface.y is not None:
        arrays["y"] = np.asarray(surface.y, dtype=np.float64)
    for name, points in surface.trajectories.items():
        arrays[f"trajectories/{name}"] = np.asarray(points, dtype=np.float64)
    # Through a file handle: given a name, numpy would append ".npz" to the temporary file.
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]


def read_npz(path: str | os.PathLike[str]) -> Surface:
    """Read an npz written by :func:`export` back into a :class:`Surface`.

    Args:
        path: the ``.npz`` file.

    Returns:
        The surface, with its attributes.

    Raises:
        SurfaceFileError: a file that is not such an npz, or an array or attribute that fails
            the checks the surface file's pass.

    Example:
        >>> s = lossland.read_npz("surface.npz")
    """
    path = Path(path)
    if not path.is_file():
        raise LosslandError(f"npz file {path} {not_a_file(path)}: check the path")

    def fail(problem: str) -> LosslandError:
        return LosslandError(f"npz file {path} {problem}: export it again with lossland export")

    try:
        arrays = _npz_arrays(path, fail)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise fail(f"cannot be read ({first_line(exc)[:120]})") from None
    rows = [row for row in FIELDS if row.exported]
    needed = ["x", *(row.name for row in rows if row.missing != "none"), "done"]
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise fail(f"lacks {', '.join(missing)}")
    x = check_array(arrays["x"], "x", fail, ndim=1, coordinates=True)
    y = check_array(arrays["y"], "y", fail, ndim=1, coordinates=True) if "y" in arrays else None
    shape = (len(x),) if y is None else (len(y), len(x))
    values = {
        row.name: check_array(arrays[row.name], row.name, fail, shape=shape)
        for row in rows
        if row.name in arrays
    }
    done = check_mask(check_array(arrays["done"], "done", fail, shape=shape, numeric=False), fail)
    attrs = parse_json_object(_text(arrays, "attrs", "{}", fail), fail, what="attrs")
    check_schema(attrs, ATTR_SCHEMA, fail)
    trajectories = {
        key.split("/", 1)[1]: check_array(value, key, fail, ndim=2)
        for key, value in arrays.items()
        if key.startswith("trajectories/")
    }
    split = _text(arrays, "split", "train", fail)
    check_contents(split=split, attrs=attrs, trajectories=trajectories)
    return Surface.of(x, y, values, done, split=split, attrs=attrs, trajectories=trajectories)


def _npz_arrays(path: Path, fail: Fail) -> dict[str, np.ndarray]:
    """The arrays of an npz archive, every size checked before anything is decompressed: each
    member at most ``MAX_RATIO`` times its compressed bytes, all of them together at most that
    times the archive (members may overlap) and within memory (:mod:`lossland.io._limits`)."""
    if not zipfile.is_zipfile(path):
        raise fail("cannot be read (not an npz archive: no zip directory)")
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        for info in members:
            if not info.filename.endswith(".npy") or info.is_dir():
                raise fail(f"has a member {info.filename!r} that is not an array (.npy)")
        check_zip(archive, path.stat().st_size, fail, source=f"npz file {path}")
        return {info.filename[: -len(".npy")]: _npy(archive, info, fail) for info in members}


def _npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, fail: Fail) -> np.ndarray:
    """One member, read only when its npy header declares exactly the bytes the member holds
    (numpy would allocate whatever the header declares first)."""
    from numpy.lib import format as npy

    with archive.open(info) as member:
        version = npy.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise fail(f"has member {info.filename!r} in npy format {version}")
        header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = header(member)
        if dtype.hasobject:
            raise fail(f"cannot be read ({info.filename!r} holds Python objects, not numbers)")
        size = math.prod(shape) * dtype.itemsize
        if member.tell() + size != info.file_size:
            raise fail(
                f"has member {info.filename!r} declaring {shape} {dtype} ({size:,} bytes) "
                f"in {info.file_size - member.tell():,} bytes"
            )
        data = member.read(size)
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape))
    return array.reshape(shape, order="F" if fortran else "C")


def _text(arrays: Mapping[str, np.ndarray], key: str, default: str, fail: Any) -> str:
    value = arrays.get(key)
    if value is None:
        return default
    if value.dtype.kind != "U" or value.shape != ():
        raise fail(f"has {key} that is not a string")
    return str(value)


def _write_text(text: str, out: Path) -> None:
    atomic_write_bytes(out, text.encode())


Writer = Callable[[Surface, Path, bool, "float | None"], None]
# One row per format: (surface, out, log, zmax) → the file. A new format is one row here (and
# its name in ExportFormat).
WRITERS: dict[str, Writer] = {
    "csv": lambda s, out, log, zmax: _write_text(_csv(s), out),
    "npz": lambda s, out, log, zmax: _write_npz(s, out),
    "vtp": lambda s, out, log, zmax: _write_text(
        _vtp(_Mesh(s, heights(s, log=log, zmax=zmax))), out
    ),
    "obj": lambda s, out, log, zmax: _write_text(
        _obj(_Mesh(s, heights(s, log=log, zmax=zmax)), s, log=log, zmax=zmax), out
    ),
}
MESH_FORMATS = ("vtp", "obj")
