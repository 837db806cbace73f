"""How far a file may expand when it is read: the bound every reader checks before it reads
(HDF5 datasets, npz members, IDX ``.gz`` payloads, path files).

A file declares its sizes before its data: an HDF5 dataset or an npz member its shape and dtype,
an IDX header its dimensions. A reader adds them up and checks them, before reading a byte of
data, against two bounds:

* the file's own bytes: compressed data expands at most :data:`MAX_RATIO` times (deflate cannot
  pass 1032:1), so more than that means fill values, unallocated chunks or sizes the file does
  not hold, and is refused; a declared size under :data:`SMALL_BYTES` is exempt;
* memory: what a read declares, times what the reader holds beside it (:data:`READ_SHARE`: the
  copy a conversion makes), must fit in what this process can still allocate
  (:func:`lossland.core.host_available`: free memory, cgroup and ``RLIMIT_AS``).

There is no fixed cap: a 2001×2001 surface (about 130 MB), a stack of ten (about 1.1 GB) or a
long trajectory loads wherever memory holds it twice.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from lossland.core import bytes_text, host_available
from lossland.errors import LosslandError
from lossland.io._metadata import Fail

MAX_RATIO = 1100  # declared / stored bytes: above deflate's 1032:1, the most any codec we allow
SMALL_BYTES = 1 << 20  # declared bytes below which the ratio is not checked
READ_SHARE = 2  # bytes a reader holds per declared byte (what it read and a converted copy)


def not_a_file(path: Path) -> str:
    """Why ``path`` cannot be opened as a file, for a message: "not found", or what it is
    instead (opening a FIFO would wait for a writer forever)."""
    return "not found" if not path.exists() else "is not a regular file (a folder, FIFO or device)"


def check_ratio(declared: int, stored: int, *, what: str, fail: Fail) -> None:
    """``fail(...)`` when ``declared`` bytes cannot come from ``stored`` bytes of the file."""
    if declared > max(MAX_RATIO * stored, SMALL_BYTES):
        raise fail(
            f"declares {bytes_text(declared)} for {what} but stores {bytes_text(stored)} "
            f"(over {MAX_RATIO}x expansion: fill values, unallocated chunks or a "
            "decompression bomb)"
        )


def check_budget(need: int, *, source: str, what: str) -> None:
    """Refuse, before it starts, a read that needs ``need`` bytes of memory when this process
    cannot allocate them; ``source`` names the file, ``what`` says where ``need`` comes from."""
    available = host_available()
    if available is None or need <= available:
        return
    raise LosslandError(
        f"{source} needs {bytes_text(need)} of memory to read ({what}) and this process can "
        f"allocate {bytes_text(available)}: free memory, raise the memory limit or read it on "
        "a larger machine"
    )


def check_zip(archive: zipfile.ZipFile, size: int, fail: Fail, *, source: str) -> int:
    """Refuse a zip archive (npz, a torch checkpoint) of ``size`` bytes whose members declare
    more than their compressed bytes can hold, or more together than the archive can (members
    may overlap), or more than this process can hold; return the bytes they declare."""
    members = archive.infolist()
    for info in members:
        check_ratio(info.file_size, info.compress_size, what=repr(info.filename), fail=fail)
    total = sum(info.file_size for info in members)
    check_ratio(total, size, what="its members together", fail=fail)
    check_budget(total * READ_SHARE, source=source, what=f"{bytes_text(total)} of members")
    return total
