"""Tests for the Fashion-MNIST loader; none of them touch the network."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
import torch

from lossland.errors import DataError
from lossland.zoo import _fashion_mnist as data
from lossland.zoo._fashion_mnist import (
    Split,
    cache_dir,
    find_data_dir,
    fingerprint,
    load_fashion_mnist,
    read_idx,
    write_idx,
)

N = 20
TRAIN = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _images(n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def _labels(n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 10, size=n, dtype=np.uint8)


def make_split(
    directory: Path,
    names: tuple[str, str] = TRAIN,
    *,
    n: int = N,
    seed: int = 0,
    gz: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    images, labels = _images(n, seed), _labels(n, seed)
    write_idx(directory / f"{names[0]}{suffix}", images)
    write_idx(directory / f"{names[1]}{suffix}", labels)
    return images, labels


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No env var, an empty private cache, and a network that fails loudly if touched."""
    monkeypatch.delenv("LOSSLAND_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("tests must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    yield tmp_path / "xdg" / "lossland" / "fashion-mnist"


# --------------------------------------------------------------------------- IDX format


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        _images(),
        _labels(),
        np.arange(24, dtype=np.int16).reshape(2, 3, 4) - 7,
        np.arange(6, dtype=np.int32) * -100_000,
        np.linspace(-1, 1, 10, dtype=np.float32).reshape(2, 5),
        np.linspace(-1, 1, 4, dtype=np.float64),
        np.array([-3, 5], dtype=np.int8),
        np.zeros((0, 28, 28), dtype=np.uint8),
    ],
    ids=["u8-3d", "u8-1d", "i16", "i32", "f32", "f64", "i8", "empty"],
)
def test_idx_round_trip(tmp_path: Path, array: np.ndarray, suffix: str) -> None:
    path = tmp_path / f"x.idx{suffix}"
    write_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == array.dtype.newbyteorder("=")
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_idx_header_layout(tmp_path: Path) -> None:
    path = tmp_path / "images"
    write_idx(path, _images(3))
    raw = path.read_bytes()
    assert raw[:16] == bytes.fromhex("00000803000000030000001c0000001c")
    assert len(raw) == 16 + 3 * 28 * 28


def test_read_idx_multi_member_gzip(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_idx(raw, _images(4))
    body = raw.read_bytes()
    (tmp_path / "multi.gz").write_bytes(gzip.compress(body[:100]) + gzip.compress(body[100:]))
    np.testing.assert_array_equal(read_idx(tmp_path / "multi.gz"), _images(4))


def test_write_idx_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint16"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope.gz")


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("gz", [True, False])
def test_load_scaling_dtype_shape(tmp_path: Path, gz: bool) -> None:
    images, labels = make_split(tmp_path / "d", gz=gz)
    x, y = load_fashion_mnist("train", data_dir=tmp_path / "d", download=False)
    assert x.dtype == torch.float32 and x.shape == (N, 1, 28, 28) and x.is_contiguous()
    assert y.dtype == torch.int64 and y.shape == (N,)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    torch.testing.assert_close(x[:, 0], torch.from_numpy(images).float() / 255)
    assert torch.equal(y, torch.from_numpy(labels).long())
    assert float(x.max()) == 1.0 or images.max() < 255


def test_load_test_split_and_subset_sizes(tmp_path: Path) -> None:
    make_split(tmp_path, TEST, n=7)
    x, y = load_fashion_mnist("test", data_dir=tmp_path)
    assert x.shape == (7, 1, 28, 28) and y.shape == (7,)


def test_gz_preferred_over_raw(tmp_path: Path) -> None:
    make_split(tmp_path, n=5, seed=1, gz=False)
    make_split(tmp_path, n=6, seed=2, gz=True)
    x, _ = load_fashion_mnist(data_dir=tmp_path)
    assert len(x) == 6


def test_invalid_split_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("val", data_dir=tmp_path)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- lookup


def test_cache_dir_honours_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir() == tmp_path / "xdg" / "lossland" / "fashion-mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "lossland" / "fashion-mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid per the XDG spec
    assert cache_dir() == Path.home() / ".cache" / "lossland" / "fashion-mnist"


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> None:
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    make_split(explicit, n=3)
    make_split(env, n=4)
    make_split(isolated_env, n=5)

    monkeypatch.setenv("LOSSLAND_DATA", str(env))
    assert find_data_dir(explicit) == explicit
    assert len(load_fashion_mnist(data_dir=explicit)[0]) == 3
    assert find_data_dir() == env
    assert len(load_fashion_mnist()[0]) == 4
    monkeypatch.delenv("LOSSLAND_DATA")
    assert find_data_dir() == isolated_env
    assert len(load_fashion_mnist(download=False)[0]) == 5


def test_find_data_dir_checks_the_requested_split(tmp_path: Path) -> None:
    make_split(tmp_path, TRAIN)
    assert find_data_dir(tmp_path, split="train") == tmp_path
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        find_data_dir(tmp_path, split="test")


def test_find_data_dir_empty_cache_is_none() -> None:
    assert find_data_dir() is None


def test_explicit_dir_missing_does_not_fall_through(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_split(isolated_env)
    make_split(tmp_path / "env")
    monkeypatch.setenv("LOSSLAND_DATA", str(tmp_path / "env"))
    missing = tmp_path / "does-not-exist"
    with pytest.raises(DataError) as info:
        load_fashion_mnist(data_dir=missing)
    msg = str(info.value)
    assert str(missing) in msg and "does not exist" in msg and "\n" not in msg


def test_explicit_dir_lacking_files_names_them(tmp_path: Path, isolated_env: Path) -> None:
    make_split(isolated_env)
    empty = tmp_path / "empty"
    empty.mkdir()
    write_idx(empty / "train-images-idx3-ubyte.gz", _images())
    with pytest.raises(DataError) as info:
        load_fashion_mnist(data_dir=empty)
    msg = str(info.value)
    assert str(empty) in msg and "train-labels-idx1-ubyte" in msg
    assert "train-images-idx3-ubyte[" not in msg  # present, so not reported as missing
    assert "LOSSLAND_DATA" in msg and "data_dir" in msg and "\n" not in msg


def test_env_dir_lacking_files_does_not_fall_through(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_split(isolated_env)
    monkeypatch.setenv("LOSSLAND_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"nowhere \(from LOSSLAND_DATA\) does not exist"):
        load_fashion_mnist()
    (tmp_path / "nowhere").mkdir()
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        find_data_dir()


def test_download_false_with_nothing(isolated_env: Path) -> None:
    with pytest.raises(DataError) as info:
        load_fashion_mnist(download=False)
    msg = str(info.value)
    assert str(isolated_env) in msg and "LOSSLAND_DATA" in msg and "data_dir" in msg
    assert "train-images-idx3-ubyte.gz" in msg and "\n" not in msg


# --------------------------------------------------------------------------- validation


def _error_for(tmp_path: Path) -> str:
    with pytest.raises(DataError) as info:
        load_fashion_mnist(data_dir=tmp_path)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_truncated_gzip(tmp_path: Path) -> None:
    make_split(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    msg = _error_for(tmp_path)
    assert str(path) in msg and "gzip" in msg


def test_corrupt_gzip(tmp_path: Path) -> None:
    make_split(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    raw = bytearray(path.read_bytes())
    raw[12:20] = b"\xff" * 8
    path.write_bytes(bytes(raw))
    assert str(path) in _error_for(tmp_path)


def test_truncated_raw(tmp_path: Path) -> None:
    make_split(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    msg = _error_for(tmp_path)
    assert str(path) in msg and "truncated" in msg


def test_truncated_inside_gzip_payload(tmp_path: Path) -> None:
    """A valid gzip stream whose IDX content is short of what the header declares."""
    make_split(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    assert "truncated" in _error_for(tmp_path)


def test_trailing_bytes(tmp_path: Path) -> None:
    make_split(tmp_path, gz=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\0")
    assert "longer than its header" in _error_for(tmp_path)


def test_wrong_magic_number(tmp_path: Path) -> None:
    make_split(tmp_path)
    # Labels where images belong: a valid IDX file with the wrong magic number.
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", _labels())
    msg = _error_for(tmp_path)
    assert "train-images-idx3-ubyte.gz" in msg and "0x00000801" in msg and "0x00000803" in msg


def test_not_an_idx_file(tmp_path: Path) -> None:
    make_split(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"<html>nope</html>"))
    assert "not an IDX file" in _error_for(tmp_path)


def test_wrong_image_dims(tmp_path: Path) -> None:
    make_split(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((N, 32, 32), dtype=np.uint8))
    assert "32x32" in _error_for(tmp_path)


def test_label_out_of_range(tmp_path: Path) -> None:
    make_split(tmp_path)
    labels = _labels()
    labels[7] = 10
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    msg = _error_for(tmp_path)
    assert "train-labels-idx1-ubyte.gz" in msg and "label 10 at index 7" in msg


def test_count_mismatch(tmp_path: Path) -> None:
    make_split(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", _labels(N - 1))
    msg = _error_for(tmp_path)
    assert f"{N} images" in msg and f"{N - 1} labels" in msg


# --------------------------------------------------------------------------- download


FetchLog = list[str]


def _fake_fetch(payloads: dict[str, bytes], log: FetchLog) -> Callable[..., None]:
    def fetch(url: str, out: BinaryIO, *, timeout: float = 0.0) -> None:
        log.append(url)
        out.write(payloads[url.rsplit("/", 1)[-1].removesuffix(".gz")])

    return fetch


def _gz_payloads(tmp_path: Path, names: tuple[str, str] = TRAIN) -> dict[str, bytes]:
    src = tmp_path / "src"
    make_split(src, names)
    return {n: (src / f"{n}.gz").read_bytes() for n in names}


def test_download_stores_verified_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    payloads = _gz_payloads(tmp_path)
    monkeypatch.setattr(
        data,
        "_MD5",
        {n: hashlib.md5(b, usedforsecurity=False).hexdigest() for n, b in payloads.items()},
    )
    log: FetchLog = []
    monkeypatch.setattr(data, "_fetch", _fake_fetch(payloads, log))

    x, y = load_fashion_mnist("train")
    assert x.shape == (N, 1, 28, 28) and y.shape == (N,)
    assert log == [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-labels-idx1-ubyte.gz",
    ]
    assert sorted(p.name for p in isolated_env.iterdir()) == sorted(f"{n}.gz" for n in TRAIN)
    # A second load uses the cache and does not download again.
    load_fashion_mnist("train", download=False)
    assert len(log) == 2


def test_download_only_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    payloads = _gz_payloads(tmp_path)
    monkeypatch.setattr(
        data,
        "_MD5",
        {n: hashlib.md5(b, usedforsecurity=False).hexdigest() for n, b in payloads.items()},
    )
    isolated_env.mkdir(parents=True)
    (isolated_env / f"{TRAIN[0]}.gz").write_bytes(payloads[TRAIN[0]])
    log: FetchLog = []
    monkeypatch.setattr(data, "_fetch", _fake_fetch(payloads, log))
    load_fashion_mnist("train")
    assert [u.rsplit("/", 1)[-1] for u in log] == [f"{TRAIN[1]}.gz"]


def test_download_checksum_mismatch_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    payloads = _gz_payloads(tmp_path)  # real md5 table: these never match
    monkeypatch.setattr(data, "_fetch", _fake_fetch(payloads, []))
    with pytest.raises(DataError) as info:
        load_fashion_mnist("train")
    msg = str(info.value)
    assert "md5" in msg and "8d4fb7e6c68d591d4c3dfef9ec88bf0d" in msg and "\n" not in msg
    assert list(isolated_env.iterdir()) == []


def test_download_interrupted_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    def broken(url: str, out: BinaryIO, *, timeout: float = 0.0) -> None:
        out.write(b"\x1f\x8b partial")
        raise TimeoutError("timed out")

    monkeypatch.setattr(data, "_fetch", broken)
    with pytest.raises(DataError) as info:
        load_fashion_mnist("test")
    msg = str(info.value)
    assert "timed out" in msg and "LOSSLAND_DATA" in msg and str(isolated_env) in msg
    assert "t10k-images-idx3-ubyte.gz" in msg and "\n" not in msg
    assert list(isolated_env.iterdir()) == []


def test_no_network_gives_one_line_error(
    monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    seen: list[float] = []

    def offline(url: str, timeout: float) -> None:
        seen.append(timeout)
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as info:
        load_fashion_mnist("train")
    msg = str(info.value)
    assert "name resolution" in msg and "data_dir" in msg and "\n" not in msg
    assert seen and 0 < seen[0] <= 120
    assert list(isolated_env.iterdir()) == []


class _FakeResponse:
    def __init__(self, body: bytes, length: int | None = None) -> None:
        self._body = io.BytesIO(body)
        size = len(body) if length is None else length
        self.headers = {"Content-Length": str(size)}

    def read(self, n: int) -> bytes:
        return self._body.read(n)

    def __enter__(self) -> _FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_fetch_streams_through_urlopen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    """The real ``_fetch`` against a fake ``urlopen``: stores the body, checks its length."""
    payloads = _gz_payloads(tmp_path, TEST)
    monkeypatch.setattr(
        data,
        "_MD5",
        {n: hashlib.md5(b, usedforsecurity=False).hexdigest() for n, b in payloads.items()},
    )
    monkeypatch.setattr(
        urllib.request,
        "urlopen",
        lambda url, timeout: _FakeResponse(payloads[url.rsplit("/", 1)[-1][:-3]]),
    )
    x, _ = load_fashion_mnist("test")
    assert len(x) == N

    for p in isolated_env.iterdir():
        p.unlink()
    monkeypatch.setattr(
        urllib.request,
        "urlopen",
        lambda url, timeout: _FakeResponse(b"\x1f\x8bshort", length=1000),
    )
    with pytest.raises(DataError, match="connection closed"):
        load_fashion_mnist("test")
    assert list(isolated_env.iterdir()) == []


def test_corrupt_cached_file_suggests_deleting(isolated_env: Path) -> None:
    make_split(isolated_env)
    labels = _labels()
    labels[0] = 200
    write_idx(isolated_env / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError, match="delete it"):
        load_fashion_mnist(download=False)


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_stable_and_sensitive(tmp_path: Path) -> None:
    make_split(tmp_path)
    x, y = load_fashion_mnist(data_dir=tmp_path)
    fp = fingerprint(x, y)
    assert len(fp) == 16 and int(fp, 16) >= 0
    x2, y2 = load_fashion_mnist(data_dir=tmp_path)
    assert fingerprint(x2, y2) == fp
    # Float noise far below one grey level does not change the identity of the data.
    assert fingerprint(x + 1e-4, y) == fp
    x2[3, 0, 5, 5] = 1.0 - float(x2[3, 0, 5, 5])
    assert fingerprint(x2, y) != fp
    y2[0] = (y2[0] + 1) % 10
    assert fingerprint(x, y2) != fp
    assert fingerprint(x[:-1], y[:-1]) != fp


def test_fingerprint_is_cheap() -> None:
    x = torch.rand(60_000, 1, 28, 28)
    y = torch.randint(0, 10, (60_000,))
    fingerprint(x[:100], y[:100])
    start = time.perf_counter()
    fingerprint(x, y)
    assert time.perf_counter() - start < 1.5  # budget 0.5 s; slack for loaded CI machines


# --------------------------------------------------------------------------- real data


def _real_data_dir() -> Path:
    env = os.environ.get("LOSSLAND_TEST_FMNIST")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared/data/fashion-mnist"


def test_real_fashion_mnist() -> None:
    directory = _real_data_dir()
    if not all(
        (directory / f"{n}.gz").is_file() or (directory / n).is_file() for n in TRAIN + TEST
    ):
        pytest.skip(f"no Fashion-MNIST copy at {directory} (set LOSSLAND_TEST_FMNIST)")
    cases: list[tuple[Split, int]] = [("train", 60_000), ("test", 10_000)]
    for split, size in cases:
        start = time.perf_counter()
        x, y = load_fashion_mnist(split, data_dir=directory, download=False)
        elapsed = time.perf_counter() - start
        assert x.shape == (size, 1, 28, 28) and x.dtype == torch.float32
        assert y.shape == (size,) and y.dtype == torch.int64
        assert torch.bincount(y, minlength=10).tolist() == [size // 10] * 10
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert elapsed < 4.0, f"loading the {split} split took {elapsed:.2f} s"


def test_evaluation_samples_are_not_the_first_samples_trained_on() -> None:
    """The seeded subset (and the seeded order of --sem-target) draw from a stream of their
    own: with the training seed they must not pick the batches one epoch trained on first."""
    from lossland.engine import subset_index
    from lossland.engine._data import stream
    from lossland.zoo import batches

    count, samples = 2000, 200
    for seed in (0, 1, 7):
        first = torch.cat([i for _, i in batches(count, 50, seed=seed, epochs=1) if i is not None])
        trained_first = set(first[:samples].tolist())
        chosen = set(subset_index(count, samples, seed).tolist())
        assert len(chosen & trained_first) < 2 * samples * samples / count  # ≈ chance (20)
        order = torch.randperm(count, generator=stream(seed, "evaluation order"))
        assert len(set(order[:samples].tolist()) & trained_first) < 2 * samples * samples / count
