"""CIFAR-10 loader (binary version): finds, downloads, safely extracts, validates and decodes.

The binary archive ``cifar-10-binary.tar.gz`` holds ``cifar-10-batches-bin/`` with five training
batches, one test batch and ``batches.meta.txt``. Every batch file is a sequence of 3073-byte
records: one label byte (0..9), then 1024 red, 1024 green and 1024 blue bytes, each plane a
row-major 32x32 image. Nothing is unpickled: the Python version of the data set is not read.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from lossland.errors import DataError, arg
from lossland.zoo._download import cache_root, fsync_dir, one_line, verified_download
from lossland.zoo._download import fetch as _fetch  # the network access point tests replace
from lossland.zoo._fashion_mnist import Split

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CLASSES",
    "cache_dir",
    "find_data_dir",
    "load_cifar10",
]

ENV_VAR = "LOSSLAND_CIFAR10"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE_NAME = "cifar-10-binary.tar.gz"
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
FOLDER = "cifar-10-batches-bin"
META_FILE = "batches.meta.txt"

_SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
BATCH_FILES: tuple[str, ...] = (*_SPLIT_FILES["train"], *_SPLIT_FILES["test"])

NUM_CLASSES = 10
CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CHANNELS, SIDE = 3, 32
RECORD_BYTES = 1 + CHANNELS * SIDE * SIDE  # 3073
# Every official batch holds exactly this many records; cached (downloaded) batches must match
# it, user copies may hold fewer (a subset) but never more.
RECORDS_PER_BATCH = 10_000
_META_MAX_BYTES = 1 << 16
# What an archive may hold before extraction stops: the six batches, the meta file and a few
# small files (the official one has 8 members, 184 MB); past the end-of-archive marker, tar's
# padding (under 10 kB in the official one).
_MAX_MEMBERS = 64
_MAX_ARCHIVE_BYTES = len(BATCH_FILES) * RECORDS_PER_BATCH * RECORD_BYTES + (8 << 20)
_MAX_TRAILER_BYTES = 1 << 20

# Li et al.'s normalisation (tomgoldstein/loss-landscape, cifar10/dataloader.py and
# dataloader.py): transforms.Normalize(mean=[x/255 for x in [125.3, 123.0, 113.9]],
# std=[x/255 for x in [63.0, 62.1, 66.7]]) applied after ToTensor (which scales to [0, 1]).
# These are the statistics of the training set; the often quoted std (0.2023, 0.1994, 0.2010)
# from other CIFAR code bases is *not* what their models were trained with.
CIFAR10_MEAN: tuple[float, float, float] = (125.3 / 255.0, 123.0 / 255.0, 113.9 / 255.0)
CIFAR10_STD: tuple[float, float, float] = (63.0 / 255.0, 62.1 / 255.0, 66.7 / 255.0)

_PLACEMENT_HINT = (
    f"put the CIFAR-10 binary batches ({', '.join(BATCH_FILES)}, from {ARCHIVE_NAME}) in one "
    f"directory (or its {FOLDER}/ subfolder) and set {ENV_VAR} or pass {arg('data_dir')}"
)


# --------------------------------------------------------------------------- lookup


def cache_dir() -> Path:
    """Download location: ``$XDG_CACHE_HOME/lossland/cifar-10`` or ``~/.cache/lossland/...``."""
    return cache_root() / "cifar-10"


def _cached_batches() -> Path:
    """Where the extracted batches live inside the cache."""
    return cache_dir() / FOLDER


def _split_names(split: str) -> tuple[str, ...]:
    try:
        return _SPLIT_FILES[split]
    except KeyError:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}") from None


def _missing(directory: Path, split: str) -> list[str]:
    return [n for n in _split_names(split) if not (directory / n).is_file()]


def _check_user_dir(directory: Path, split: str, source: str) -> Path:
    """``directory`` itself or its ``cifar-10-batches-bin/`` subfolder, whichever has the split."""
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise DataError(f"data directory {directory} (from {source}) {what}; {_PLACEMENT_HINT}")
    candidates = [directory, directory / FOLDER]
    for candidate in candidates:
        if candidate.is_dir() and not _missing(candidate, split):
            return candidate
    # Report against the folder that looks like the intended one: the one with most batches.
    best = max(
        (c for c in candidates if c.is_dir()),
        key=lambda c: sum((c / n).is_file() for n in BATCH_FILES),
    )
    names = ", ".join(_missing(best, split))
    raise DataError(
        f"data directory {best} (from {source}) lacks {names} for the CIFAR-10 {split} split; "
        f"{_PLACEMENT_HINT}"
    )


def find_data_dir(
    data_dir: str | os.PathLike[str] | None = None, *, split: Split = "train"
) -> Path | None:
    """The folder holding ``split``'s batches: ``data_dir``, else ``$LOSSLAND_CIFAR10``, else cache.

    An explicitly named folder (argument or environment variable) that lacks the batches raises
    :class:`DataError` instead of falling through. Returns ``None`` only when neither is given
    and the cache lacks the batches.
    """
    _split_names(split)
    if data_dir is not None and os.fspath(data_dir) != "":
        return _check_user_dir(Path(data_dir).expanduser(), split, arg("data_dir"))
    env = os.environ.get(ENV_VAR, "")
    if env:
        return _check_user_dir(Path(env).expanduser(), split, ENV_VAR)
    cached = _cached_batches()
    return cached if not _missing(cached, split) else None


# --------------------------------------------------------------------------- download


def _member_target(member: tarfile.TarInfo) -> str | None:
    """The batch-folder file name ``member`` extracts to, or ``None`` to skip it.

    Raises ``ValueError`` (turned into a :class:`DataError` by the caller) for anything unsafe:
    absolute paths, ``..`` components, links, devices and other non-regular members.
    """
    name = member.name
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"member {name!r} has an absolute path")
    if ".." in parts:
        raise ValueError(f"member {name!r} points outside the archive folder")
    if member.issym() or member.islnk():
        raise ValueError(f"member {name!r} is a link")
    if member.isdir():
        return None
    if not member.isreg():
        raise ValueError(f"member {name!r} is not a regular file")
    if len(parts) != 2 or parts[0] != FOLDER:
        return None  # a safe regular file we do not need
    target = parts[1]
    if target in BATCH_FILES:
        limit = RECORDS_PER_BATCH * RECORD_BYTES
        if member.size == 0 or member.size % RECORD_BYTES or member.size > limit:
            raise ValueError(
                f"member {name!r} has {member.size} bytes, not a whole number of "
                f"{RECORD_BYTES}-byte records up to {limit} bytes"
            )
        return target
    if target == META_FILE:  # class names, extracted for completeness
        if member.size > _META_MAX_BYTES:
            raise ValueError(f"member {name!r} has {member.size} bytes, expected a short list")
        return target
    return None  # readme.html and the like


def _extract(archive: Path, into: Path) -> None:
    """Extract the expected members of ``archive`` into the empty folder ``into``."""
    seen: set[str] = set()
    declared = 0
    with tarfile.open(archive, mode="r:gz") as tar:
        for count, member in enumerate(tar, 1):
            # Bounded before the member's bytes are decompressed (or skipped, which decompresses
            # them too): no more members and bytes than a CIFAR-10 archive could hold.
            declared += member.size
            if count > _MAX_MEMBERS:
                raise ValueError(f"the archive holds more than {_MAX_MEMBERS} members")
            if declared > _MAX_ARCHIVE_BYTES:
                raise ValueError(f"the members declare more than {_MAX_ARCHIVE_BYTES:,} bytes")
            target = _member_target(member)
            if target is None:
                continue
            if target in seen:
                raise ValueError(f"member {member.name!r} appears twice")
            seen.add(target)
            source = tar.extractfile(member)
            if source is None:  # only for non-regular members, excluded above
                raise ValueError(f"member {member.name!r} cannot be read")
            # The output name is ours, never the member's path, so nothing lands elsewhere.
            with source, (into / target).open("xb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
                written = out.tell()
            if written != member.size:
                raise EOFError(f"member {member.name!r} ends after {written} bytes")
        # tarfile stops at the end-of-archive marker (or, silently, at a garbled header);
        # reading the compressed stream to its end makes gzip verify its CRC and length.
        if tar.fileobj is not None:
            left = _MAX_TRAILER_BYTES
            while chunk := tar.fileobj.read(1 << 16):
                left -= len(chunk)
                if left < 0:
                    raise ValueError(f"more than {_MAX_TRAILER_BYTES:,} bytes follow the archive")
    missing = [n for n in BATCH_FILES if n not in seen]
    if missing:
        raise ValueError(f"the archive lacks {FOLDER}/{', '.join(missing)}")


def _download() -> Path:
    """Download, verify and extract the archive into the cache; return the batch folder.

    The archive is streamed to a hidden temporary file (:func:`verified_download`) and
    extracted into a hidden temporary folder beside the final one, which is renamed into place
    only when everything succeeded; the archive itself is deleted afterwards. On any failure,
    nothing new remains.
    """
    root = cache_dir()
    final = root / FOLDER
    missing = (
        f"CIFAR-10 not found (no {arg('data_dir')} given, {ENV_VAR} not set, cache {final} "
        "lacks it)"
    )
    with verified_download(
        URL, root, md5=ARCHIVE_MD5, fetch=_fetch, missing=missing, hint=_PLACEMENT_HINT
    ) as archive:
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{FOLDER}.", suffix=".tmp"))
        try:
            try:
                _extract(archive, staging)
            except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error, ValueError) as exc:
                raise DataError(
                    f"downloaded {URL} is not a valid CIFAR-10 binary archive "
                    f"({one_line(exc)}); try again, or {_PLACEMENT_HINT}"
                ) from exc
            _install(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone after a successful rename
    return final


def _install(staging: Path, final: Path) -> None:
    """Rename the complete ``staging`` folder to ``final``, replacing an incomplete old one."""
    for path in staging.iterdir():
        with path.open("rb") as f:
            os.fsync(f.fileno())
    old: Path | None = None
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{FOLDER}.old.{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        if old.is_symlink():
            old.unlink()  # a link the user made: drop the link, never the folder it points to
        else:
            shutil.rmtree(old, ignore_errors=True)
    fsync_dir(final.parent)


# --------------------------------------------------------------------------- decoding


def _read_batch(path: Path, *, exact: bool, fix: str) -> npt.NDArray[np.uint8]:
    """The ``(n, 3073)`` uint8 records of one batch file, validated."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read forever
            raise DataError(f"{path} is not a regular file; {fix}")
        if info.st_size > RECORDS_PER_BATCH * RECORD_BYTES:  # refused before it is read
            raise DataError(
                f"{path} has {info.st_size:,} bytes, expected at most {RECORDS_PER_BATCH} "
                f"records of {RECORD_BYTES} bytes; {fix}"
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {one_line(exc)}; {fix}") from exc
    size = len(raw)
    count, extra = divmod(size, RECORD_BYTES)
    if extra:
        raise DataError(
            f"{path} has {size} bytes, not a whole number of {RECORD_BYTES}-byte records "
            f"({count} records and {extra} stray bytes: truncated or not a CIFAR-10 binary "
            f"batch); {fix}"
        )
    if count == 0:
        raise DataError(f"{path} is empty; {fix}")
    if count > RECORDS_PER_BATCH or (exact and count != RECORDS_PER_BATCH):
        raise DataError(
            f"{path} holds {count} records, expected {'' if exact else 'at most '}"
            f"{RECORDS_PER_BATCH}; {fix}"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(count, RECORD_BYTES)
    labels = records[:, 0]
    if int(labels.max()) >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise DataError(
            f"{path} has label {int(labels[bad])} in record {bad} (byte offset "
            f"{bad * RECORD_BYTES}), expected 0..9; {fix}"
        )
    return records


def load_cifar10(
    split: Split = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a split as float32 images ``(N, 3, 32, 32)`` and int64 labels ``(N,)``.

    Images are scaled to [0, 1] (torchvision's ``ToTensor``) and, with ``normalize``, then
    standardised per channel with :data:`CIFAR10_MEAN` and :data:`CIFAR10_STD`
    (``Normalize``), exactly as in Li et al.'s code. The training split is the five training
    batches in order, 50,000 images; the test split is 10,000.

    Args:
        split: "train" or "test".
        data_dir: a user copy (default: ``$LOSSLAND_CIFAR10``, else the cache); it may hold
            fewer records per batch.
        download: fetch the archive into the cache when it is missing (md5-checked).
        normalize: standardise per channel after scaling.

    Returns:
        (images, labels).

    Raises:
        DataError: a missing copy without ``download``, a failed download or checksum, or a
            malformed or incomplete batch file.

    Example:
        >>> inputs, targets = lossland.load_cifar10("test", download=False)
    """
    names = _split_names(split)
    directory = find_data_dir(data_dir, split=split)
    if directory is None:
        if not download:
            raise DataError(
                f"CIFAR-10 {split} split not found: no {arg('data_dir')} given, {ENV_VAR} not "
                f"set, and the cache {_cached_batches()} lacks it (downloading is off); "
                f"{_PLACEMENT_HINT}"
            )
        directory = _download()
    from_cache = directory == _cached_batches()
    fix = (
        f"delete {directory} so lossland downloads it again, or {_PLACEMENT_HINT}"
        if from_cache
        else "replace it with an intact CIFAR-10 binary batch"
    )
    batches = [_read_batch(directory / n, exact=from_cache, fix=fix) for n in names]
    records = batches[0] if len(batches) == 1 else np.concatenate(batches)
    # Planes are stored channel-major, so each record's pixels already are (3, 32, 32).
    pixels = torch.from_numpy(records[:, 1:].reshape(-1, CHANNELS, SIDE, SIDE).copy())
    images = pixels.to(torch.float32).div_(255.0)
    if normalize:
        mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float32).view(1, CHANNELS, 1, 1)
        std = torch.tensor(CIFAR10_STD, dtype=torch.float32).view(1, CHANNELS, 1, 1)
        images.sub_(mean).div_(std)
    labels = torch.from_numpy(records[:, 0].astype(np.int64))
    return images.contiguous(), labels
