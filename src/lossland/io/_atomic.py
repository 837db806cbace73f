"""Writing files: one rule for "may I write here", and atomic replacement.

:func:`check_output` decides whether a command may write a path, before any work is done:

* an existing file is replaced only when the caller allows it (``overwrite``) or when it is this
  very run's own output (``own``: a surface being resumed);
* an output that is one of the command's inputs (the same file, by inode) is always refused;
* a folder, a device, a FIFO or a socket is never replaced;
* a symlink is written through (its target is replaced), never swapped for a file;
* a path the file system cannot take (a name past NAME_MAX, a path past PATH_MAX, with room
  for lossland's own files beside the output) is refused before anything touches it.

:func:`atomic_path` writes every file: a temporary file beside the target, fsynced and renamed
over it, so a reader sees the old file or the new one, never half of one. It applies the same
rules, and turns every failure of the writer inside it (a full disk, h5py's RuntimeError,
safetensors' SafetensorError, ...) into one :class:`LosslandError` naming the file, after
removing the temporary file; the old file is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from lossland.errors import LosslandError, arg, first_line

PathLike = str | os.PathLike[str]

# The signs of a full disk in the messages of libraries that do not keep errno (h5py, safetensors).
_FULL_DISK = ("no space left", "errno = 28", "storagefull", "disk quota", "errno = 122")
# What lossland puts beside an output, longest first: a seed run's hidden per-seed file
# ".<name>.seed<N>.h5" (N up to 2**63 - 1), written through a temporary ".<that>.XXXXXXXX.tmp".
NAME_ROOM = len(f"..seed{2**63 - 1}.h5") + len("..XXXXXXXX.tmp")
_KINDS = {
    stat.S_IFDIR: "folder",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
}


def check_output(
    path: PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[PathLike | None] = (),
    own: bool = False,
    name: str = "out",
) -> Path:
    """May this command write ``path``? Returns the file to write (a symlink's target); raises a
    one-line error otherwise (see the module docstring for the rules).

    ``inputs`` are the files the command reads (and its other outputs): never replaced.
    ``name`` is the API argument that gave the path, for the message.
    """
    given = check_length(path, name=name)
    target = _target(given, name)
    parent = target.parent
    if not parent.exists():
        raise LosslandError(
            f"output folder {parent} does not exist: create it or choose another {arg(name)}"
        )
    if not parent.is_dir():
        raise LosslandError(f"output folder {parent} is not a folder: choose another {arg(name)}")
    for source in inputs:
        if source is not None and _same_file(target, Path(source)):
            raise LosslandError(
                f"{arg(name)} {given} is also an input of this command ({source}): "
                f"choose another {arg(name)}"
            )
    found = _stat(target)
    if found is not None and not stat.S_ISREG(found.st_mode):
        kind = _KINDS.get(stat.S_IFMT(found.st_mode), "special file")
        if kind == "folder":
            raise LosslandError(f"{arg(name)} {given} is a folder: give a file name")
        raise LosslandError(
            f"{arg(name)} {given} is a {kind}, not a regular file; lossland never replaces one: "
            f"choose a file name"
        )
    if found is not None and not (overwrite or own):
        raise LosslandError(
            f"{arg(name)} {given} exists: pass {arg('overwrite')} to replace it, or choose "
            f"another {arg(name)}"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LosslandError(
            f"output folder {parent} is not writable (read-only?): choose another {arg(name)}"
        )
    return target


def make_folder(path: PathLike, *, name: str = "out_dir") -> Path:
    """The folder a command writes several files into, created (with its parents) when
    missing: a new folder holds nothing to refuse. A path that is not a folder is refused."""
    folder = Path(path)
    check_length(folder / "x", name=name)  # the folder, with room for a file in it
    if folder.is_dir():
        return folder
    if folder.exists() or folder.is_symlink():
        raise LosslandError(f"{arg(name)} {folder} is not a folder: choose another {arg(name)}")
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise LosslandError(
            f"cannot create {arg(name)} {folder} ({exc.strerror or exc}): choose another "
            f"{arg(name)}"
        ) from None
    return folder


def check_length(path: PathLike, *, name: str = "out") -> Path:
    """An output path its file system can take with lossland's files beside it (see
    :func:`path_length_problem`); a one-line error otherwise, before anything touches it."""
    given = Path(path)
    problem = path_length_problem(given)
    if problem is not None:
        raise LosslandError(f"{arg(name)} {problem}: choose a shorter {arg(name)}")
    return given


def path_length_problem(path: PathLike, *, room: int = NAME_ROOM) -> str | None:
    """What makes ``path`` too long for its file system, or None: a folder name past NAME_MAX
    bytes, a file name past NAME_MAX less ``room`` (for an output, :data:`NAME_ROOM`: the files
    lossland writes beside it), or the whole past PATH_MAX less that room. Decided from the
    bytes alone (no stat of a path the kernel would refuse), with the limits of the nearest
    folder that exists."""
    given = Path(path)
    name_max, path_max = _limits(given)
    parts = [os.fsencode(part) for part in given.parts]
    shown = _abbreviated(given)
    beside = f", and lossland needs {room} of them for the files it writes beside it" * bool(room)
    for part in parts[:-1]:
        if len(part) > name_max:
            size = len(part)
            return f"{shown} has a folder name of {size} bytes; the file system takes {name_max}"
    if parts and len(parts[-1]) + room > name_max:
        return (
            f"{shown} has a file name of {len(parts[-1])} bytes; the file system takes "
            f"{name_max}{beside}"
        )
    size = len(os.fsencode(given))
    if size + room >= path_max:
        return f"{shown} is {size} bytes long; the file system takes {path_max - 1}{beside}"
    return None


def _limits(path: Path) -> tuple[int, int]:
    """(NAME_MAX, PATH_MAX) of the file system holding ``path``'s nearest existing folder."""
    for folder in path.parents:
        if os.path.isdir(folder):  # False, never an error, for a path the kernel refuses
            try:
                return os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
            except (OSError, ValueError):
                break
    return 255, 4096  # Linux's


def _abbreviated(path: Path) -> str:
    """A long path as its start and end, so that a message about it stays one short line."""
    text = str(path)
    return text if len(text) <= 80 else f"{text[:40]}...{text[-30:]}"


def check_writable(path: PathLike, *, name: str = "out") -> Path:
    """:func:`check_output` for callers that decide about an existing file themselves (a run
    resumes its own surface or refuses it): the folder and the kind of file only."""
    return check_output(path, overwrite=True, name=name)


def _target(path: Path, name: str) -> Path:
    """The file a write to ``path`` lands in: a symlink's final target (which may not exist)."""
    if not path.is_symlink():
        return path
    try:
        os.stat(path)
    except FileNotFoundError:
        pass  # a dangling link: the write creates its target
    except OSError as exc:
        raise LosslandError(
            f"{arg(name)} {path} is a symlink that cannot be followed "
            f"({exc.strerror or exc}): choose another {arg(name)}"
        ) from None
    return Path(os.path.realpath(path))


def _same_file(target: Path, source: Path) -> bool:
    """The same file: one inode, or (for files not yet there) one path once links resolve."""
    mine, other = _stat(target), _stat(source)
    if mine is not None and other is not None:
        return (mine.st_dev, mine.st_ino) == (other.st_dev, other.st_ino)
    return os.path.realpath(target) == os.path.realpath(source)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


@contextlib.contextmanager
def atomic_path(
    path: PathLike,
    *,
    overwrite: bool = True,
    inputs: Iterable[PathLike | None] = (),
    name: str = "out",
) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (beside a symlink's target); on success fsync it
    and rename it over the target.

    The rules of :func:`check_output` apply (``overwrite`` defaults to True here: callers that
    reach this point have decided). On any failure the temporary file is removed and the old
    file is left as it was; failures of the writer are one :class:`LosslandError`.
    """
    final = check_output(path, overwrite=overwrite, inputs=inputs, name=name)
    old = _stat(final)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as exc:  # a read-only file system, a full disk, permissions
        raise _write_error(final, exc, old is not None) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600), and some writers recreate it: give the result
        # the mode of the file it replaces, else the mode a plain open() would.
        os.chmod(tmp, stat.S_IMODE(old.st_mode) if old is not None else 0o666 & ~_umask())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except LosslandError:
        tmp.unlink(missing_ok=True)
        raise
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, _writer_errors()):
            raise _write_error(final, exc, old is not None) from None
        raise  # a bug or an interruption: its own traceback or handling


def _writer_errors() -> tuple[type[BaseException], ...]:
    """What writers raise for I/O trouble: OSError; h5py also RuntimeError; safetensors its own."""
    from safetensors import SafetensorError

    return (OSError, RuntimeError, SafetensorError)


def _write_error(final: Path, exc: BaseException, existed: bool) -> LosslandError:
    reason = first_line(exc)
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    kept = "the old file is intact" if existed else "no file was written"
    full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or any(
        sign in str(exc).lower() for sign in _FULL_DISK
    )
    if full:
        return LosslandError(f"disk full while writing {final}: free space and rerun; {kept}")
    return LosslandError(
        f"cannot write {final} ({reason[:200]}): check the disk and the folder; {kept}"
    )


def atomic_write_bytes(
    path: PathLike,
    data: bytes,
    *,
    overwrite: bool = True,
    inputs: Iterable[PathLike | None] = (),
    name: str = "out",
) -> Path:
    with atomic_path(path, overwrite=overwrite, inputs=inputs, name=name) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _umask() -> int:
    """The process umask, read without changing it (os.umask can only set-and-return)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
