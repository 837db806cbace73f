"""The one way lossland opens an HDF5 file: :func:`open_hdf5` decides whether a file may be read
and hands back the open file only when it reads nothing but itself and fits in memory.

Before any data is read it walks every link, dataset and attribute and refuses:

* every link that is not a hard link. External links read another file; soft links read this
  one, but they alias and loop (a soft link to a parent makes the tree infinite) and can dangle,
  and lossland never writes them. User-defined links the same. A group reached twice through
  hard links (an alias or a cycle) too;
* every dataset whose bytes are not in this file: external raw storage (``external=``: bytes
  of ``/etc/passwd``, or a FIFO that would block the read forever) and virtual datasets
  (mapped from other files); only contiguous, chunked and compact layouts are read;
* filters other than gzip, shuffle, Fletcher-32 and LZF: a filter HDF5 does not ship is loaded
  from a plugin folder, and scale-offset packs a constant chunk into no bytes at all;
* variable-length and reference datasets (their expanded size is not declared) and
  variable-length attributes that are not a single value;
* declared sizes the file cannot hold (:mod:`lossland.io._limits`): a dataset declaring more
  than :data:`~lossland.io._limits.MAX_RATIO` times its stored bytes (fill values, unallocated
  chunks, a chunk larger than the data), storage larger than the file, and a total that this
  process cannot hold;
* more than :data:`MAX_OBJECTS` links and attributes (lossland writes a few dozen).

Every reader of HDF5 (surfaces, seed stacks, trajectories, and any later one) opens through it.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lossland.core import bytes_text
from lossland.errors import first_line
from lossland.io._limits import READ_SHARE, check_budget, check_ratio
from lossland.io._metadata import Fail

MAX_OBJECTS = 100_000  # links and attributes walked; a lossland file has a few dozen
# h5py raises any of these for a damaged file (truncation, bad headers, checksum mismatches).
H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError)
_OUTSIDE = "which lossland never reads (it reads only data stored in the file itself)"


@contextlib.contextmanager
def open_hdf5(path: str | os.PathLike[str], fail: Fail, *, source: str) -> Iterator[Any]:
    """The h5py ``File`` of ``path``, read-only, once :func:`check_hdf5` has passed; ``fail``
    makes the error for a file that may not be read, ``source`` names it in a memory refusal."""
    import h5py

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise fail(f"cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):  # opening a FIFO would wait for a writer forever
        raise fail("is not a regular file")
    try:
        f = h5py.File(Path(path), "r", locking=False)
    except H5_ERRORS as exc:
        raise fail(f"is corrupt or not HDF5 ({first_line(exc)})") from None
    try:
        try:
            declared = check_hdf5(f, fail)
        except H5_ERRORS as exc:
            raise fail(f"is corrupt or not HDF5 ({first_line(exc)})") from None
        need = declared * READ_SHARE
        check_budget(need, source=source, what=f"{bytes_text(declared)} of declared data")
        yield f
    finally:
        f.close()


def check_hdf5(f: Any, fail: Fail) -> int:
    """Walk every object of the open file ``f`` (see the module docstring) without reading any
    data; return the bytes its datasets declare."""
    import h5py
    from h5py import h5l

    size = int(f.id.get_filesize())
    total, count = 0, 0
    seen: set[Any] = set()
    stack: list[tuple[str, Any]] = [("/", f)]
    while stack:
        where, group = stack.pop()
        if group.id in seen:
            raise fail(f"has group {where!r} linked twice (an alias or a cycle)")
        seen.add(group.id)
        count = _check_attributes(group, where, fail, count)
        for raw in group.id:  # link names as bytes, nothing resolved
            count = _counted(count + 1, fail)
            name = where.rstrip("/") + "/" + raw.decode("utf-8", "backslashreplace")
            kind = group.id.links.get_info(raw).type
            if kind != h5l.TYPE_HARD:
                link = {h5l.TYPE_SOFT: "a soft", h5l.TYPE_EXTERNAL: "an external"}
                raise fail(
                    f"has {name!r} as {link.get(kind, 'a user-defined')} link, which lossland "
                    "never follows (it follows only hard links inside the file)"
                )
            node = group[raw]
            if isinstance(node, h5py.Group):
                stack.append((name, node))
            elif isinstance(node, h5py.Dataset):
                total += _dataset_bytes(node, name, size, fail)
                count = _check_attributes(node, name, fail, count)
    return total


# Filters whose output is bounded by the ratio check and that h5py itself ships.
_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}


def _dataset_bytes(node: Any, name: str, size: int, fail: Fail) -> int:
    """The bytes the dataset ``node`` expands to when read, after refusing any other source."""
    from h5py import h5d

    plist = node.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5d.VIRTUAL:
        raise fail(f"has {name!r} as a virtual dataset (mapped from other files), {_OUTSIDE}")
    if layout not in (h5d.CONTIGUOUS, h5d.CHUNKED, h5d.COMPACT):
        raise fail(f"has {name!r} in an unknown storage layout ({layout})")
    if plist.get_external_count():
        raise fail(f"has {name!r} stored in another file (external storage), {_OUTSIDE}")
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code not in _FILTERS:
            raise fail(
                f"has {name!r} encoded with HDF5 filter {code}, which lossland does not read "
                f"(it reads {', '.join(_FILTERS.values())})"
            )
    if node.dtype.hasobject:
        raise fail(f"has {name!r} of a variable-length or reference type, not numbers")
    itemsize = int(node.id.get_type().get_size())
    declared = math.prod(node.shape) * itemsize if node.shape is not None else 0
    if layout == h5d.CHUNKED:  # a chunk is decoded whole, however little of it is read
        declared = max(declared, math.prod(plist.get_chunk()) * itemsize)
    stored = int(node.id.get_storage_size())
    if stored > size:
        raise fail(f"has {name!r} claiming {stored:,} stored bytes in a {size:,}-byte file")
    check_ratio(declared, stored, what=repr(name), fail=fail)
    return declared


def _counted(count: int, fail: Fail) -> int:
    if count > MAX_OBJECTS:
        raise fail(f"has more than {MAX_OBJECTS:,} objects and attributes")
    return count


def _check_attributes(node: Any, where: str, fail: Fail, count: int) -> int:
    """Refuse variable-length attributes that are not one value (each element of one may
    expand to a large string); return ``count`` plus the attributes of ``node``."""
    for key in node.attrs:
        count = _counted(count + 1, fail)
        attr = node.attrs.get_id(key)
        if attr.dtype.hasobject and attr.shape not in ((), None):
            raise fail(
                f"has attribute {key!r} of {where!r} holding {math.prod(attr.shape):,} "
                "variable-length values: lossland stores one value per attribute"
            )
    return count
