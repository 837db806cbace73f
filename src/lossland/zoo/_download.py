"""What the dataset loaders share: the cache folder, streaming a URL, md5-verified downloads.

One mechanism for every data set: a download streams into a hidden temporary file beside its
final place, is fsynced and checked against the official md5, and only then is handed to the
caller (who renames or extracts it); whatever happens, the temporary file is gone afterwards,
so an interrupted or corrupt download leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from lossland.errors import DataError

DOWNLOAD_TIMEOUT_S = 30.0

Fetch = Callable[[str, BinaryIO], None]
# What a failed transfer raises: network and HTTP errors, and ValueError for malformed URLs.
TRANSFER_ERRORS = (OSError, http.client.HTTPException, ValueError)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/lossland``, or ``~/.cache/lossland``: each data set has a subfolder."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "lossland"


def one_line(exc: BaseException) -> str:
    """An exception as one line of text (for messages that must stay one line)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _stderr_is_tty() -> bool:
    stream = sys.stderr
    return stream is not None and hasattr(stream, "isatty") and stream.isatty()


def fetch(url: str, out: BinaryIO, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Stream ``url`` into ``out`` (a progress bar on a terminal); checks Content-Length."""
    from tqdm import tqdm  # deferred: only downloads need it

    with urllib.request.urlopen(url, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=url.rsplit("/", 1)[-1],
            disable=not _stderr_is_tty(),
            leave=False,
        ) as bar:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if total is not None and received != total:
            raise OSError(f"connection closed after {received} of {total} bytes")


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(folder: Path) -> None:
    """Make renames inside ``folder`` durable (not every platform can open a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def verified_download(
    url: str,
    directory: Path,
    *,
    md5: str,
    fetch: Fetch,
    missing: str,
    hint: str,
) -> Iterator[Path]:
    """Download ``url`` into a hidden temporary file in ``directory`` (created if needed),
    check its md5 and yield its path; the temporary file is removed when the block ends.

    ``fetch`` streams the URL (the loaders pass their module's ``_fetch``, which tests
    replace). Errors are one-line :class:`DataError` s: ``missing`` says what was not found
    ("X not found (...)"), ``hint`` how to supply the data by hand.
    """
    name = url.rsplit("/", 1)[-1]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    except OSError as exc:
        raise DataError(
            f"cannot create the cache directory {directory} ({one_line(exc)}); {hint}"
        ) from exc
    tmp = Path(tmp_name)
    try:  # also on KeyboardInterrupt: never leave the partial file behind
        with os.fdopen(fd, "wb") as out:
            fetch(url, out)
            out.flush()
            os.fsync(out.fileno())
        actual = md5_of(tmp)
        if actual != md5:
            raise DataError(
                f"download of {url} has md5 {actual}, expected {md5} (corrupted or changed "
                f"file); try again, or {hint}"
            )
        yield tmp  # the caller's rename or extraction: its OS errors read as a failed download
    except TRANSFER_ERRORS as exc:
        raise DataError(
            f"{missing} and downloading {url} failed ({one_line(exc)}); {hint}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
