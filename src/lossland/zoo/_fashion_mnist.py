"""Fashion-MNIST loader: finds, downloads, validates and decodes the four IDX files."""

from __future__ import annotations

import gzip
import math
import os
import stat
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from lossland.core import tensor_fingerprint
from lossland.errors import DataError, arg
from lossland.io import check_budget, check_ratio
from lossland.zoo._download import cache_root, fsync_dir, one_line, verified_download
from lossland.zoo._download import fetch as _fetch  # the network access point tests replace

__all__ = [
    "Split",
    "cache_dir",
    "find_data_dir",
    "fingerprint",
    "load_fashion_mnist",
    "read_idx",
    "write_idx",
]

Split = Literal["train", "test"]

ENV_VAR = "LOSSLAND_DATA"
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

_SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ALL_FILES: tuple[str, ...] = tuple(name for pair in _SPLIT_FILES.values() for name in pair)

# md5 of the official .gz files; only downloads are checked against these, because users may
# legitimately supply rebuilt copies or subsets.
_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}

IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801
NUM_CLASSES = 10
_SIDE = 28

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype[np.generic]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

_PLACEMENT_HINT = (
    f"put the four Fashion-MNIST files ({', '.join(n + '.gz' for n in ALL_FILES)}) "
    f"in one directory and set {ENV_VAR} or pass {arg('data_dir')}"
)


# --------------------------------------------------------------------------- lookup


def cache_dir() -> Path:
    """Download location: ``$XDG_CACHE_HOME/lossland/fashion-mnist`` or ``~/.cache/...``."""
    return cache_root() / "fashion-mnist"


def _split_names(split: str) -> tuple[str, str]:
    try:
        return _SPLIT_FILES[split]
    except KeyError:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}") from None


def _locate(directory: Path, name: str) -> Path | None:
    """The file for ``name`` in ``directory``, preferring the ``.gz`` form."""
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def _missing(directory: Path, split: str) -> list[str]:
    return [n for n in _split_names(split) if _locate(directory, n) is None]


def _check_user_dir(directory: Path, split: str, source: str) -> Path:
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise DataError(f"data directory {directory} (from {source}) {what}; {_PLACEMENT_HINT}")
    missing = _missing(directory, split)
    if missing:
        names = ", ".join(f"{n}[.gz]" for n in missing)
        raise DataError(
            f"data directory {directory} (from {source}) lacks {names} for the {split} split; "
            f"{_PLACEMENT_HINT}"
        )
    return directory


def _env_dir() -> Path | None:
    value = os.environ.get(ENV_VAR, "")
    return Path(value).expanduser() if value else None


def find_data_dir(
    data_dir: str | os.PathLike[str] | None = None, *, split: Split = "train"
) -> Path | None:
    """The directory holding ``split``'s files: ``data_dir``, else ``$LOSSLAND_DATA``, else cache.

    An explicitly named directory (argument or env var) that lacks the files raises
    :class:`DataError` instead of falling through, since that is a user mistake. Returns
    ``None`` only when neither is given and the cache lacks the files.
    """
    _split_names(split)
    if data_dir is not None and os.fspath(data_dir) != "":
        return _check_user_dir(Path(data_dir).expanduser(), split, arg("data_dir"))
    env = _env_dir()
    if env is not None:
        return _check_user_dir(env, split, ENV_VAR)
    cache = cache_dir()
    return cache if not _missing(cache, split) else None


# --------------------------------------------------------------------------- download


def _download(name: str, directory: Path) -> Path:
    """Download ``name``.gz into ``directory`` atomically and verify its official md5."""
    url = f"{BASE_URL}{name}.gz"
    final = directory / f"{name}.gz"
    missing = (
        f"Fashion-MNIST not found (no {arg('data_dir')} given, {ENV_VAR} not set, "
        f"cache {directory} lacks {name}.gz)"
    )
    with verified_download(
        url, directory, md5=_MD5[name], fetch=_fetch, missing=missing, hint=_PLACEMENT_HINT
    ) as tmp:
        os.replace(tmp, final)
    fsync_dir(directory)
    return final


# --------------------------------------------------------------------------- IDX format


# Bytes held per byte of an IDX payload while it loads: the payload, its native-order copy, and
# 4 for the float32 images; plus one more while the decompressed bytes are collected.
_HELD = 7


def _read_bytes(path: Path) -> bytes:
    """An IDX file's bytes, gunzipped when compressed (detected by content, so a misnamed file
    loads): at most one byte more than its header declares, decompressed only once that size
    passed the checks of :mod:`lossland.io` (compression ratio, memory)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read forever
            raise DataError(f"{path} is not a regular file; replace it with an IDX file")
        check_budget(path.stat().st_size * _HELD, source=str(path), what="its bytes")
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {one_line(exc)}") from exc
    if raw[:2] != _GZIP_MAGIC:
        return raw
    head = _gunzip(raw, 4 + 4 * 255, path)  # room for the longest IDX header
    declared = _declared_size(head)
    if declared is None:  # not an IDX header: _parse_idx says what is wrong
        return head

    def fail(problem: str) -> DataError:
        return DataError(f"{path} {problem}; replace it with an intact copy")

    check_ratio(declared, len(raw), what="its IDX payload", fail=fail)
    check_budget(
        declared * _HELD, source=str(path), what=f"an IDX header declaring {declared:,} bytes"
    )
    return _gunzip(raw, declared, path)


def _declared_size(head: bytes) -> int | None:
    """The bytes an IDX header declares (header included); None if ``head`` starts none."""
    dtype = _IDX_DTYPES.get(head[2]) if len(head) >= 4 and head[:2] == b"\0\0" else None
    header = 4 + 4 * head[3] if len(head) >= 4 else 0
    if dtype is None or len(head) < header:
        return None
    dims = [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(head[3])]
    return header + math.prod(dims) * dtype.itemsize


def _gunzip(raw: bytes, limit: int, path: Path) -> bytes:
    """The members of the gzip stream ``raw`` (zero padding between them allowed), decompressed
    up to ``limit + 1`` bytes: one more than wanted is enough to know the payload is longer."""
    out = bytearray()
    data = raw
    try:
        while data and len(out) <= limit:
            decomp = zlib.decompressobj(wbits=31)
            out += decomp.decompress(data, limit + 1 - len(out))
            if not decomp.eof:
                if len(out) > limit:
                    break
                raise EOFError("compressed stream ends early")
            data = decomp.unused_data.lstrip(b"\0")
    except (EOFError, zlib.error) as exc:
        raise DataError(
            f"{path} is a corrupt or truncated gzip file ({one_line(exc)}); "
            "replace it with an intact copy"
        ) from exc
    return bytes(out)


def _parse_idx(data: bytes, path: Path) -> tuple[int, np.ndarray]:
    """(magic number, array in native byte order) of an IDX file's bytes."""
    if len(data) < 4:
        raise DataError(f"{path} is too short to be an IDX file; replace it with an intact copy")
    magic = int.from_bytes(data[:4], "big")
    type_code, ndim = data[2], data[3]
    dtype = _IDX_DTYPES.get(type_code)
    if data[:2] != b"\0\0" or dtype is None:
        raise DataError(
            f"{path} is not an IDX file (magic number 0x{magic:08x}); "
            "replace it with an intact copy"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path} is truncated inside its IDX header; replace it with an intact copy"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(shape, dtype=np.int64))
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header declares"
        raise DataError(
            f"{path} is {problem} ({len(data)} bytes, header declares {expected}); "
            "replace it with an intact copy"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    # The copy makes the result writable (torch.from_numpy warns on read-only arrays) and native.
    return magic, array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a gzip-compressed or raw IDX file of any type and rank."""
    p = Path(path)
    return _parse_idx(_read_bytes(p), p)[1]


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends with ``.gz``."""
    arr = np.asarray(array)
    match = [
        (code, dtype)
        for code, dtype in _IDX_DTYPES.items()
        if arr.dtype.kind == dtype.kind and arr.dtype.itemsize == dtype.itemsize
    ]
    if not match:
        raise ValueError(f"IDX cannot store dtype {arr.dtype}")
    code, dtype = match[0]
    if arr.ndim > 255:
        raise ValueError("IDX stores at most 255 dimensions")
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    payload = header + np.ascontiguousarray(arr, dtype=dtype).tobytes()
    p = Path(path)
    if p.name.endswith(".gz"):
        # mtime=0 keeps the output reproducible byte for byte.
        payload = gzip.compress(payload, mtime=0)
    p.write_bytes(payload)


# --------------------------------------------------------------------------- loading


def _load_pair(images_path: Path, labels_path: Path, fix: str) -> tuple[np.ndarray, np.ndarray]:
    magic, images = _parse_idx(_read_bytes(images_path), images_path)
    if magic != IMAGE_MAGIC:
        raise DataError(
            f"{images_path} has IDX magic number 0x{magic:08x}, expected 0x{IMAGE_MAGIC:08x} "
            f"(unsigned-byte images); {fix}"
        )
    if images.shape[1:] != (_SIDE, _SIDE):
        dims = "x".join(str(d) for d in images.shape[1:])
        raise DataError(f"{images_path} holds {dims} images, expected 28x28; {fix}")
    magic, labels = _parse_idx(_read_bytes(labels_path), labels_path)
    if magic != LABEL_MAGIC:
        raise DataError(
            f"{labels_path} has IDX magic number 0x{magic:08x}, expected 0x{LABEL_MAGIC:08x} "
            f"(unsigned-byte labels); {fix}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            f"labels; {fix}"
        )
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise DataError(
            f"{labels_path} has label {int(labels[bad])} at index {bad}, expected 0..9; {fix}"
        )
    return images, labels


def load_fashion_mnist(
    split: Split = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a split as float32 images ``(N, 1, 28, 28)`` in [0, 1] and int64 labels ``(N,)``.

    Args:
        split: "train" or "test".
        data_dir: a user copy (default: ``$LOSSLAND_DATA``, else the cache); validated (IDX
            headers, sizes, labels) but not checksum-matched.
        download: fetch the files into the cache when they are missing; only downloads are
            checked against the official md5 sums.

    Returns:
        (images, labels).

    Raises:
        DataError: missing files without ``download``, a failed download or checksum, or a
            malformed IDX file.

    Example:
        >>> inputs, targets = lossland.load_fashion_mnist("test")
    """
    names = _split_names(split)
    directory = find_data_dir(data_dir, split=split)
    from_cache = directory is None or directory == cache_dir()
    if directory is None:
        cache = cache_dir()
        if not download:
            raise DataError(
                f"Fashion-MNIST {split} split not found: no {arg('data_dir')} given, "
                f"{ENV_VAR} not set, "
                f"and the cache {cache} lacks it (downloading is off); {_PLACEMENT_HINT}"
            )
        for name in _missing(cache, split):
            _download(name, cache)
        directory = cache
    fix = (
        "delete it so lossland downloads it again, or " + _PLACEMENT_HINT
        if from_cache
        else "replace it with an intact Fashion-MNIST file"
    )
    images_path, labels_path = _locate(directory, names[0]), _locate(directory, names[1])
    if images_path is None or labels_path is None:  # removed between lookup and load
        raise DataError(f"Fashion-MNIST {split} files vanished from {directory}; {_PLACEMENT_HINT}")
    images_np, labels_np = _load_pair(images_path, labels_path, fix)
    images = torch.from_numpy(images_np).unsqueeze(1).to(torch.float32).div_(255.0)
    labels = torch.from_numpy(labels_np).to(torch.int64)
    return images.contiguous(), labels


def fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """Short fingerprint identifying a data set by its 8-bit pixels, shapes and labels (so
    float noise below a grey level does not change it)."""
    pixels = images.detach().to("cpu", torch.float32).mul(255).round_().clamp_(0, 255)
    return tensor_fingerprint(
        {"pixels": pixels.to(torch.uint8), "labels": labels.detach().to("cpu", torch.int64)}
    )
