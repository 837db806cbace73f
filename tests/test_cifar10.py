"""Tests for the CIFAR-10 binary loader and Li et al.'s ResNet-56 models; no network access."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
import torch
from torch import nn

from helpers import torch_threads
from lossland.errors import DataError, LosslandError
from lossland.io import Surface
from lossland.zoo import _cifar10 as cifar10
from lossland.zoo._cifar10 import CIFAR10_MEAN, CIFAR10_STD, cache_dir, find_data_dir, load_cifar10
from lossland.zoo._resnet_cifar import BasicBlock, CifarResNet, resnet56, resnet56_noshort

RECORD = 3073
TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST = ("test_batch.bin",)
FOLDER = "cifar-10-batches-bin"
N = 6  # records per generated batch


# --------------------------------------------------------------------------- generated data


def batch_bytes(n: int = N, *, batch: int = 0, labels: list[int] | None = None) -> bytes:
    """``n`` records with a learnable, checkable pattern.

    Record ``i`` has label ``i % 10``; its red plane is filled with ``20 * label + batch``, its
    green plane holds ``4 * row + i`` and its blue plane ``4 * column + batch``, so the class is
    a function of the red mean and the channel order and row-major layout are visible.
    """
    rows, cols = np.mgrid[0:32, 0:32]
    out = bytearray()
    for i in range(n):
        label = (labels[i] if labels is not None else i % 10) & 0xFF
        red = np.full((32, 32), (20 * (label % 10) + batch) % 256)
        green = (4 * rows + i) % 256
        blue = (4 * cols + batch) % 256
        out.append(label)
        out += np.stack([red, green, blue]).astype(np.uint8).tobytes()
    return bytes(out)


def expected_pixels(n: int = N, *, batch: int = 0) -> np.ndarray:
    raw = np.frombuffer(batch_bytes(n, batch=batch), dtype=np.uint8).reshape(n, RECORD)
    return raw[:, 1:].reshape(n, 3, 32, 32).copy()


def make_dir(directory: Path, names: tuple[str, ...] = TRAIN + TEST, n: int = N) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        (directory / name).write_bytes(batch_bytes(n, batch=index))
    return directory


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def add_file(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(payload))


def add_special(tar: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    tar.addfile(info)


def make_archive(
    extra: Callable[[tarfile.TarFile], None] | None = None,
    *,
    names: tuple[str, ...] = TRAIN + TEST,
    n: int = N,
    prefix: str = "",
) -> bytes:
    """A gzip'd tar laid out like the official one, plus whatever ``extra`` adds at the end."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        add_special(tar, f"{prefix}{FOLDER}/", tarfile.DIRTYPE)
        add_file(
            tar,
            f"{prefix}{FOLDER}/batches.meta.txt",
            b"\n".join(c.encode() for c in cifar10.CLASSES) + b"\n",
        )
        for index, name in enumerate(TRAIN + TEST):
            if name in names:
                add_file(tar, f"{prefix}{FOLDER}/{name}", batch_bytes(n, batch=index))
        add_file(tar, f"{prefix}{FOLDER}/readme.html", b"<html></html>")
        if extra is not None:
            extra(tar)
    return buffer.getvalue()


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No env var, an empty private cache, and a network that fails loudly if touched."""
    monkeypatch.delenv("LOSSLAND_CIFAR10", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("tests must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    yield tmp_path / "xdg" / "lossland" / "cifar-10"


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """Serve ``payload`` through ``cifar10._fetch``; the md5 is patched to match unless given."""

    def install(payload: bytes, *, md5: str | None = None, n: int = N) -> list[str]:
        calls: list[str] = []

        def fake_fetch(url: str, out: BinaryIO) -> None:
            calls.append(url)
            out.write(payload)

        monkeypatch.setattr(cifar10, "_fetch", fake_fetch)
        monkeypatch.setattr(cifar10, "ARCHIVE_MD5", md5 or hashlib.md5(payload).hexdigest())
        monkeypatch.setattr(cifar10, "RECORDS_PER_BATCH", n)
        return calls

    return install


# --------------------------------------------------------------------------- decoding


def test_decodes_labels_channels_and_row_major_layout(tmp_path: Path) -> None:
    make_dir(tmp_path / "d", TEST)
    x, y = load_cifar10("test", data_dir=tmp_path / "d", normalize=False)
    assert x.dtype == torch.float32 and x.shape == (N, 3, 32, 32) and x.is_contiguous()
    assert y.dtype == torch.int64 and y.tolist() == [i % 10 for i in range(N)]
    torch.testing.assert_close(x, torch.from_numpy(expected_pixels()).float() / 255, rtol=0, atol=0)
    # Red is constant per class, green varies down the rows, blue across the columns.
    red = x[3, 0]
    assert bool((red == red[0, 0]).all()) and red[0, 0].item() == pytest.approx(60 / 255)
    assert x[0, 1, 5, 0].item() == pytest.approx(20 / 255) and x[0, 1, 0, 5].item() == 0.0
    assert x[0, 2, 0, 5].item() == pytest.approx(20 / 255) and x[0, 2, 5, 0].item() == 0.0


def test_pattern_is_learnable(tmp_path: Path) -> None:
    make_dir(tmp_path / "d", TEST, n=20)
    x, y = load_cifar10("test", data_dir=tmp_path / "d", normalize=False)
    predicted = (x[:, 0].mean(dim=(1, 2)) * 255 / 20).round().long()
    assert torch.equal(predicted, y)


def test_normalize_matches_li_et_al() -> None:
    # tomgoldstein/loss-landscape cifar10/dataloader.py: ToTensor(), then
    # Normalize(mean=[x/255.0 for x in [125.3, 123.0, 113.9]],
    #           std=[x/255.0 for x in [63.0, 62.1, 66.7]])
    assert tuple(v / 255.0 for v in (125.3, 123.0, 113.9)) == CIFAR10_MEAN
    assert tuple(v / 255.0 for v in (63.0, 62.1, 66.7)) == CIFAR10_STD
    assert pytest.approx((0.4914, 0.4824, 0.4467), abs=1e-4) == CIFAR10_MEAN
    assert pytest.approx((0.2471, 0.2435, 0.2616), abs=1e-4) == CIFAR10_STD


def test_normalized_values(tmp_path: Path) -> None:
    make_dir(tmp_path / "d", TEST)
    x, _ = load_cifar10("test", data_dir=tmp_path / "d")
    raw = torch.from_numpy(expected_pixels()).float().div(255)
    mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(3, 1, 1)
    torch.testing.assert_close(x, (raw - mean) / std, rtol=0, atol=0)
    reference = (
        expected_pixels().astype(np.float64) / 255 - np.array(CIFAR10_MEAN)[:, None, None]
    ) / np.array(CIFAR10_STD)[:, None, None]
    np.testing.assert_allclose(x.numpy(), reference, atol=1e-5)


def test_train_concatenates_five_batches_in_order(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    sizes = (3, 1, 4, 1, 5)
    for index, (name, n) in enumerate(zip(TRAIN, sizes, strict=True)):
        (d / name).write_bytes(batch_bytes(n, batch=index))
    x, y = load_cifar10("train", data_dir=d, normalize=False)
    assert x.shape == (sum(sizes), 3, 32, 32) and y.shape == (sum(sizes),)
    batch_ids = (x[:, 2, 0, 0] * 255).round().long().tolist()
    assert batch_ids == [b for b, n in enumerate(sizes) for _ in range(n)]


def test_bad_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_cifar10("valid", data_dir=tmp_path)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- lookup


def test_cache_dir_honours_xdg(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cache_dir() == isolated_env
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid per the XDG spec: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "lossland" / "cifar-10"


def test_data_dir_flat_or_with_subfolder(tmp_path: Path) -> None:
    flat = make_dir(tmp_path / "flat")
    nested = make_dir(tmp_path / "nested" / FOLDER)
    assert find_data_dir(flat) == flat
    assert find_data_dir(tmp_path / "nested", split="test") == nested
    assert load_cifar10("test", data_dir=tmp_path / "nested")[0].shape == (N, 3, 32, 32)


def test_argument_beats_env_beats_cache(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dir(isolated_env / FOLDER)
    assert find_data_dir() == isolated_env / FOLDER
    env = make_dir(tmp_path / "env")
    monkeypatch.setenv("LOSSLAND_CIFAR10", str(env))
    assert find_data_dir() == env
    arg = make_dir(tmp_path / "arg")
    assert find_data_dir(arg) == arg
    assert find_data_dir("") == env  # an empty --data-dir means "not given"


def test_user_copy_may_be_smaller_but_cache_must_be_complete(
    tmp_path: Path, isolated_env: Path
) -> None:
    make_dir(tmp_path / "user", TEST, n=2)
    assert load_cifar10("test", data_dir=tmp_path / "user")[1].shape == (2,)
    make_dir(isolated_env / FOLDER, TEST, n=2)
    with pytest.raises(DataError) as info:
        load_cifar10("test", download=False)
    msg = str(info.value)
    assert "holds 2 records, expected 10000" in msg and "delete" in msg and "\n" not in msg


def test_no_download_and_empty_cache(isolated_env: Path) -> None:
    with pytest.raises(DataError) as info:
        load_cifar10(download=False)
    msg = str(info.value)
    assert "downloading is off" in msg and "LOSSLAND_CIFAR10" in msg and "\n" not in msg
    assert not isolated_env.exists()


Breaker = Callable[[Path, pytest.MonkeyPatch], None]


def _write(name: str, payload: bytes) -> Breaker:
    def breaker(d: Path, mp: pytest.MonkeyPatch) -> None:
        (d / name).write_bytes(payload)

    return breaker


def _move_away(d: Path, mp: pytest.MonkeyPatch) -> None:
    d.rename(d.with_name("gone"))


def _replace_by_file(d: Path, mp: pytest.MonkeyPatch) -> None:
    shutil.rmtree(d)
    d.write_bytes(b"x")


def _remove_batch_3(d: Path, mp: pytest.MonkeyPatch) -> None:
    (d / "data_batch_3.bin").unlink()


def _batch_is_a_folder(d: Path, mp: pytest.MonkeyPatch) -> None:
    (d / "data_batch_1.bin").unlink()
    (d / "data_batch_1.bin").mkdir()


def _limit_below_copy(d: Path, mp: pytest.MonkeyPatch) -> None:
    mp.setattr(cifar10, "RECORDS_PER_BATCH", N - 1)  # the copy holds more than a batch can


BAD_USER_COPIES: dict[str, tuple[Breaker, str, str]] = {
    # case: (how to break a good copy in d, the path named in the message, a message fragment)
    "missing folder": (_move_away, "d", "does not exist"),
    "not a folder": (_replace_by_file, "d", "is not a directory"),
    "missing batch": (_remove_batch_3, "d", "lacks data_batch_3.bin"),
    "batch is a folder": (_batch_is_a_folder, "d", "lacks data_batch_1.bin"),
    "truncated record": (
        _write("data_batch_2.bin", batch_bytes()[:-5]),
        "data_batch_2.bin",
        "not a whole number of 3073-byte records",
    ),
    "wrong size": (
        _write("data_batch_4.bin", batch_bytes() + b"\0" * 100),
        "data_batch_4.bin",
        "6 records and 100 stray bytes",
    ),
    "empty file": (_write("data_batch_1.bin", b""), "data_batch_1.bin", "is empty"),
    "label 10": (
        _write("data_batch_5.bin", batch_bytes(labels=[1, 2, 10, 3, 4, 5])),
        "data_batch_5.bin",
        "label 10 in record 2",
    ),
    "label 255": (
        _write("data_batch_1.bin", batch_bytes(labels=[255] * N)),
        "data_batch_1.bin",
        "label 255 in record 0",
    ),
    "more than a batch holds": (_limit_below_copy, "data_batch_1.bin", "expected at most 5"),
    "a 2 GB batch (refused before it is read)": (
        lambda d, mp: os.truncate(d / "data_batch_2.bin", 2 << 30),  # sparse: no disk used
        "data_batch_2.bin",
        "has 2,147,483,648 bytes, expected at most 10000 records",
    ),
}


@pytest.mark.parametrize("case", list(BAD_USER_COPIES))
def test_bad_user_copy(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    breaker, named, fragment = BAD_USER_COPIES[case]
    d = make_dir(tmp_path / "d")
    breaker(d, monkeypatch)
    before = tree(tmp_path)
    with pytest.raises(DataError) as info:
        load_cifar10("train", data_dir=d)
    msg = str(info.value)
    assert "\n" not in msg and fragment in msg and named in msg, msg
    assert tree(tmp_path) == before  # nothing written, nothing downloaded


def test_bad_env_copy_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSSLAND_CIFAR10", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="from LOSSLAND_CIFAR10"):
        load_cifar10()


# --------------------------------------------------------------------------- download


@pytest.mark.parametrize("prefix", ["", "./"])
def test_download_extracts_into_cache_once(
    prefix: str, isolated_env: Path, serve: Callable[..., list[str]]
) -> None:
    calls = serve(make_archive(prefix=prefix))
    x, y = load_cifar10("train", normalize=False)
    assert calls == [cifar10.URL]
    assert x.shape == (5 * N, 3, 32, 32) and y.shape == (5 * N,)
    torch.testing.assert_close(x[:N], torch.from_numpy(expected_pixels()).float() / 255)
    # Only the expected members were extracted, the archive and temporaries are gone.
    assert tree(isolated_env) == {FOLDER, *(f"{FOLDER}/{n}" for n in (*TRAIN, *TEST))} | {
        f"{FOLDER}/batches.meta.txt"
    }
    xt, _ = load_cifar10("test")
    assert calls == [cifar10.URL] and xt.shape == (N, 3, 32, 32)


def test_download_replaces_an_incomplete_cache(
    isolated_env: Path, serve: Callable[..., list[str]]
) -> None:
    make_dir(isolated_env / FOLDER, TRAIN)
    (isolated_env / FOLDER / "stale.txt").write_text("old")
    calls = serve(make_archive())
    assert load_cifar10("test")[0].shape == (N, 3, 32, 32)
    assert len(calls) == 1
    assert tree(isolated_env) == {FOLDER, f"{FOLDER}/batches.meta.txt"} | {
        f"{FOLDER}/{n}" for n in (*TRAIN, *TEST)
    }


def test_download_replacing_a_linked_cache_keeps_the_link_target(
    tmp_path: Path, isolated_env: Path, serve: Callable[..., list[str]]
) -> None:
    target = make_dir(tmp_path / "mine", TRAIN)
    isolated_env.mkdir(parents=True)
    (isolated_env / FOLDER).symlink_to(target, target_is_directory=True)
    serve(make_archive())
    assert load_cifar10("test")[0].shape == (N, 3, 32, 32)
    assert not (isolated_env / FOLDER).is_symlink()
    assert tree(target) == set(TRAIN)
    assert {p.name for p in isolated_env.iterdir()} == {FOLDER}


def test_download_skips_unneeded_safe_members(
    tmp_path: Path, isolated_env: Path, serve: Callable[..., list[str]]
) -> None:
    def extra(tar: tarfile.TarFile) -> None:
        add_file(tar, "notes.txt", b"hi")
        add_file(tar, f"{FOLDER}/sub/data_batch_1.bin", batch_bytes())

    serve(make_archive(extra))
    load_cifar10("test")
    assert not (isolated_env / FOLDER / "notes.txt").exists()
    assert not (isolated_env / FOLDER / "sub").exists() and not (tmp_path / "notes.txt").exists()


def _fail_midway(exc: BaseException) -> Callable[[str, BinaryIO], None]:
    def fetch(url: str, out: BinaryIO) -> None:
        out.write(make_archive()[:1000])
        raise exc

    return fetch


@pytest.mark.parametrize(
    "exc, fragment",
    [
        (urllib.error.URLError("Temporary failure in name resolution"), "name resolution"),
        (OSError("connection closed after 1000 of 2000 bytes"), "connection closed"),
        (http.client.IncompleteRead(b"x", 5), "IncompleteRead"),
    ],
    ids=["no-network", "short-read", "incomplete-read"],
)
def test_failed_download_leaves_nothing(
    exc: Exception,
    fragment: str,
    tmp_path: Path,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cifar10, "_fetch", _fail_midway(exc))
    with pytest.raises(DataError) as info:
        load_cifar10()
    msg = str(info.value)
    assert "\n" not in msg and cifar10.URL in msg and "data_dir" in msg
    assert fragment in msg or type(exc).__name__ in msg, msg
    assert tree(isolated_env) == set()


def test_interrupted_download_leaves_nothing(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cifar10, "_fetch", _fail_midway(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        load_cifar10()
    assert tree(isolated_env) == set()


def _corrupt_middle(payload: bytes) -> bytes:
    middle = len(payload) // 2
    return (
        payload[:middle]
        + bytes(b ^ 0x5A for b in payload[middle : middle + 64])
        + payload[middle + 64 :]
    )


def _flip_crc(payload: bytes) -> bytes:
    """The same archive with one bit of the gzip trailer's CRC-32 flipped."""
    return payload[:-8] + bytes([payload[-8] ^ 1]) + payload[-7:]


def _archive_case(**kwargs: object) -> Callable[[Path], bytes]:
    return lambda tmp: make_archive(**kwargs)  # type: ignore[arg-type]


def _extra_case(make: Callable[[Path, tarfile.TarFile], None]) -> Callable[[Path], bytes]:
    return lambda tmp: make_archive(lambda tar: make(tmp, tar))


def _declared_only(tar: tarfile.TarFile, name: str, size: int) -> None:
    """A member header declaring ``size`` bytes, with none of them after it."""
    info = tarfile.TarInfo(name)
    info.size = size
    header = info.tobuf(tar.format, tar.encoding, tar.errors)
    assert tar.fileobj is not None
    tar.fileobj.write(header)
    tar.offset += len(header)


def _then_zeros(size: int) -> bytes:
    """A good archive's tar stream followed by ``size`` zero bytes, all gzip-compressed."""
    return gzip.compress(gzip.decompress(make_archive()) + bytes(size))


BAD_ARCHIVES: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "more members than CIFAR-10 has": (
        _extra_case(
            lambda tmp, tar: [add_file(tar, f"{FOLDER}/extra{i}.txt", b"x") for i in range(64)]
        ),
        "more than 64 members",
    ),
    "a member declaring 1 TB": (
        _extra_case(lambda tmp, tar: _declared_only(tar, f"{FOLDER}/big.bin", 1 << 40)),
        f"declare more than {cifar10._MAX_ARCHIVE_BYTES:,} bytes",
    ),
    "2 MB after the end of the archive": (lambda tmp: _then_zeros(2 << 20), "follow the archive"),
    # case: (archive bytes given tmp_path, message fragment)
    "dotdot member": (
        _extra_case(lambda tmp, tar: add_file(tar, f"{FOLDER}/../../../evil", b"pwned")),
        "points outside the archive folder",
    ),
    "dotdot batch name": (
        _extra_case(lambda tmp, tar: add_file(tar, f"../{FOLDER}/test_batch.bin", batch_bytes())),
        "points outside the archive folder",
    ),
    "absolute member": (
        _extra_case(lambda tmp, tar: add_file(tar, str(tmp / "evil"), b"pwned")),
        "absolute path",
    ),
    "symlink member": (
        _extra_case(
            lambda tmp, tar: add_special(tar, f"{FOLDER}/evil", tarfile.SYMTYPE, str(tmp / "evil"))
        ),
        "is a link",
    ),
    "symlinked batch": (
        lambda tmp: make_archive(
            lambda tar: add_special(
                tar, f"{FOLDER}/test_batch.bin", tarfile.SYMTYPE, "/etc/passwd"
            ),
            names=TRAIN,
        ),
        "is a link",
    ),
    "hardlink member": (
        _extra_case(
            lambda tmp, tar: add_special(tar, f"{FOLDER}/evil", tarfile.LNKTYPE, "/etc/passwd")
        ),
        "is a link",
    ),
    "fifo member": (
        _extra_case(lambda tmp, tar: add_special(tar, f"{FOLDER}/evil", tarfile.FIFOTYPE)),
        "not a regular file",
    ),
    "device member": (
        _extra_case(lambda tmp, tar: add_special(tar, f"{FOLDER}/evil", tarfile.CHRTYPE)),
        "not a regular file",
    ),
    "duplicate member": (
        _extra_case(lambda tmp, tar: add_file(tar, f"{FOLDER}/test_batch.bin", batch_bytes())),
        "appears twice",
    ),
    "missing batch member": (
        _archive_case(names=TRAIN),
        "lacks cifar-10-batches-bin/test_batch.bin",
    ),
    "dotdot inside the folder": (
        _extra_case(lambda tmp, tar: add_file(tar, f"{FOLDER}/x/../big", b"")),
        "points outside",
    ),
    "batch member larger than a batch": (_archive_case(n=N + 1), "up to"),
    "partial record member": (
        lambda tmp: make_archive(
            lambda tar: add_file(tar, f"{FOLDER}/test_batch.bin", batch_bytes()[:-1]),
            names=TRAIN,
        ),
        "not a whole number of 3073-byte records",
    ),
    "corrupt gzip": (lambda tmp: _corrupt_middle(make_archive()), "not a valid CIFAR-10"),
    "gzip crc mismatch": (
        lambda tmp: _flip_crc(make_archive()),
        "CRC check failed",
    ),
    "truncated gzip": (lambda tmp: make_archive()[:-200], "not a valid CIFAR-10"),
    "not gzip": (
        lambda tmp: b"PK\x03\x04 this is a zip, not a tar.gz" * 10,
        "not a valid CIFAR-10",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARCHIVES))
def test_bad_archive(
    case: str, tmp_path: Path, isolated_env: Path, serve: Callable[..., list[str]]
) -> None:
    build, fragment = BAD_ARCHIVES[case]
    payload = build(tmp_path)
    serve(payload)
    before = tree(tmp_path)
    with pytest.raises(DataError) as info:
        load_cifar10("test")
    msg = str(info.value)
    assert "\n" not in msg and fragment in msg, msg
    assert tree(isolated_env) == set()  # no archive, no partial extraction, no batches
    assert tree(tmp_path) - before <= {"xdg", "xdg/lossland", "xdg/lossland/cifar-10"}
    assert not any("evil" in p or "big" in p for p in tree(tmp_path))
    assert not (tmp_path.parent / "evil").exists()


def test_md5_mismatch(isolated_env: Path, serve: Callable[..., list[str]]) -> None:
    serve(make_archive(), md5=cifar10.ARCHIVE_MD5)  # the official md5, not the generated one
    with pytest.raises(DataError) as info:
        load_cifar10()
    msg = str(info.value)
    assert "md5" in msg and "c32a1d4ab5d03f1284b67883e8d87530" in msg and "\n" not in msg
    assert tree(isolated_env) == set()


def test_official_constants() -> None:
    assert cifar10.URL == "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    assert cifar10.ARCHIVE_MD5 == "c32a1d4ab5d03f1284b67883e8d87530"
    assert cifar10.RECORD_BYTES == RECORD and cifar10.RECORDS_PER_BATCH == 10_000


# --------------------------------------------------------------------------- models


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k


def bn(c: int) -> int:
    return 2 * c  # weight and bias; running statistics are buffers


def expected_parameters(depth: int, *, shortcut: bool, classes: int = 10) -> int:
    n = (depth - 2) // 6
    total = conv(3, 16, 3) + bn(16)
    cin = 16
    for planes in (16, 32, 64):
        for b in range(n):
            inp = cin if b == 0 else planes
            total += conv(inp, planes, 3) + bn(planes) + conv(planes, planes, 3) + bn(planes)
            if shortcut and inp != planes:
                total += conv(inp, planes, 1) + bn(planes)
        cin = planes
    return total + 64 * classes + classes


def expected_state(depth: int, *, shortcut: bool) -> dict[str, tuple[int, ...]]:
    """Li et al.'s state_dict keys and shapes, in order.

    For ``ResNet_cifar(BasicBlock, [n, n, n])`` or ``ResNet_cifar(BasicBlock_noshortcut, ...)``.
    """

    def bn_keys(name: str, c: int) -> dict[str, tuple[int, ...]]:
        return {
            f"{name}.weight": (c,),
            f"{name}.bias": (c,),
            f"{name}.running_mean": (c,),
            f"{name}.running_var": (c,),
            f"{name}.num_batches_tracked": (),
        }

    n = (depth - 2) // 6
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (16, 3, 3, 3), **bn_keys("bn1", 16)}
    cin = 16
    for stage, planes in enumerate((16, 32, 64), start=1):
        for b in range(n):
            inp = cin if b == 0 else planes
            p = f"layer{stage}.{b}"
            keys[f"{p}.conv1.weight"] = (planes, inp, 3, 3)
            keys.update(bn_keys(f"{p}.bn1", planes))
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            keys.update(bn_keys(f"{p}.bn2", planes))
            if shortcut and inp != planes:
                keys[f"{p}.shortcut.0.weight"] = (planes, inp, 1, 1)
                keys.update(bn_keys(f"{p}.shortcut.1", planes))
        cin = planes
    keys.update({"linear.weight": (10, 64), "linear.bias": (10,)})
    return keys


# Copied by hand from the structure of cifar10/models/resnet.py (ResNet56 = ResNet_cifar(BasicBlock,
# [9, 9, 9])): names and shapes a checkpoint of theirs contains.
LI_KEYS_SUBSET: dict[str, tuple[int, ...]] = {
    "conv1.weight": (16, 3, 3, 3),
    "bn1.running_var": (16,),
    "layer1.0.conv1.weight": (16, 16, 3, 3),
    "layer1.8.bn2.bias": (16,),
    "layer2.0.conv1.weight": (32, 16, 3, 3),
    "layer2.0.shortcut.0.weight": (32, 16, 1, 1),
    "layer2.0.shortcut.1.weight": (32,),
    "layer2.0.shortcut.1.running_mean": (32,),
    "layer2.1.conv2.weight": (32, 32, 3, 3),
    "layer3.0.shortcut.0.weight": (64, 32, 1, 1),
    "layer3.0.shortcut.1.num_batches_tracked": (),
    "layer3.8.bn2.running_var": (64,),
    "linear.weight": (10, 64),
    "linear.bias": (10,),
}


@pytest.fixture(scope="module")
def models() -> dict[str, CifarResNet]:
    torch.manual_seed(0)
    return {"short": resnet56(), "noshort": resnet56_noshort()}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts(models: dict[str, CifarResNet]) -> None:
    assert expected_parameters(56, shortcut=True) == 855_770
    assert expected_parameters(56, shortcut=False) == 853_018
    assert n_params(models["short"]) == 855_770
    assert n_params(models["noshort"]) == 853_018
    assert n_params(CifarResNet(20)) == expected_parameters(20, shortcut=True)
    assert n_params(resnet56(num_classes=100)) == expected_parameters(
        56, shortcut=True, classes=100
    )


@pytest.mark.parametrize("kind", ["short", "noshort"])
def test_state_dict_matches_li_et_al(kind: str, models: dict[str, CifarResNet]) -> None:
    state = models[kind].state_dict()
    expected = expected_state(56, shortcut=kind == "short")
    assert list(state) == list(expected)  # same names, same order
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert len(state) == (344 if kind == "short" else 332)
    for key, shape in LI_KEYS_SUBSET.items():
        if kind == "short" or "shortcut" not in key:
            assert tuple(state[key].shape) == shape, key


def test_noshort_has_no_shortcut_modules(models: dict[str, CifarResNet]) -> None:
    short, noshort = models["short"], models["noshort"]
    assert not any("shortcut" in name for name, _ in noshort.named_modules())
    assert not any("shortcut" in key for key in noshort.state_dict())
    diff = set(short.state_dict()) - set(noshort.state_dict())
    assert diff == {k for k in LI_KEYS_SUBSET if "shortcut" in k} | {
        f"layer{s}.0.shortcut.{rest}"
        for s in (2, 3)
        for rest in (
            "0.weight",
            "1.weight",
            "1.bias",
            "1.running_mean",
            "1.running_var",
            "1.num_batches_tracked",
        )
    }
    assert set(noshort.state_dict()) < set(short.state_dict())
    blocks = [m for m in short.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 27
    projections = [b for b in blocks if isinstance(b.shortcut, nn.Sequential)]
    assert len(projections) == 2 and all(
        isinstance(b.shortcut, nn.Identity) for b in blocks if b not in projections
    )


@pytest.mark.parametrize("kind", ["short", "noshort"])
def test_loads_checkpoints_strictly(kind: str, models: dict[str, CifarResNet]) -> None:
    state = models[kind].state_dict()
    fresh = resnet56() if kind == "short" else resnet56_noshort()
    fresh.load_state_dict(state, strict=True)
    # Checkpoints from 2018 PyTorch (0.4.0) have no num_batches_tracked buffers.
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    fresh.load_state_dict(old, strict=True)
    other = resnet56_noshort() if kind == "short" else resnet56()
    with pytest.raises(RuntimeError):
        other.load_state_dict(state, strict=True)


@pytest.mark.parametrize("kind", ["short", "noshort"])
def test_forward_backward(kind: str, models: dict[str, CifarResNet]) -> None:
    model = models[kind]
    model.train()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    loss = nn.functional.cross_entropy(out, torch.tensor([3, 7]))
    model.zero_grad()
    loss.backward()  # type: ignore[no-untyped-call]
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 10)


def test_factory_arguments() -> None:
    assert resnet56(num_classes=3)(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(TypeError):
        resnet56(100)  # type: ignore[call-arg]
    with pytest.raises(LosslandError, match="6n \\+ 2"):
        CifarResNet(55)
    with pytest.raises(LosslandError, match="num_classes"):
        resnet56(num_classes=0)


def test_li_et_al_comparison_is_one_command_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """train and surface ResNet-56 with and without shortcuts on CIFAR-10 from the CLI."""
    from helpers import run_cli

    data = make_dir(tmp_path / "cifar", n=8)
    for model in ("resnet56", "resnet56_noshort"):
        ckpt = tmp_path / f"{model}.safetensors"
        common = ["--data", "cifar10", "--data-dir", data, "--no-progress"]
        code, _, err = run_cli(
            ["train", "--model", model, "--limit", "8", "-o", ckpt, *common], capsys
        )
        assert code == 0, err
        out = tmp_path / f"{model}.h5"
        args = ["surface", ckpt, *common, "--samples", "8", "--x", "-1:1:3", "-o", out]
        code, _, err = run_cli(args, capsys)
        assert code == 0, err
        s = Surface.load(out)
        assert s.complete and s.attrs["samples"] == 8 and "resnet56" in s.attrs["model"]
