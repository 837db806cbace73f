"""One writer per surface file: a run holds an advisory lock on ``.<name>.lock`` beside it.

Two runs writing one file would overwrite each other's checkpoints, each losing the other's
points. The lock is ``flock``-based, so the kernel drops it when a process dies (even by
``kill -9``): a crashed run never leaves a stale lock behind. Holding the lock also makes it
safe to delete temporary files that a killed run left mid-checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

from lossland.errors import LosslandError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not guarded there
    fcntl = None  # type: ignore[assignment]

# File systems that cannot lock (some NFS mounts) get an unguarded run rather than an error:
# HDF5's own locking fails there too, and is exactly what the reference's users tripped on.
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def stale_temporaries(path: Path) -> list[Path]:
    """Temporary files of :func:`lossland.atomic.atomic_path` for ``path`` (``.<name>.*.tmp``)."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}\.tmp$")
    try:
        return [p for p in path.parent.iterdir() if pattern.match(p.name)]
    except OSError:
        return []


@contextlib.contextmanager
def run_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the write lock for ``path``; another live run holding it is a one-line error."""
    path = Path(path)
    lock = lock_path(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        # No lock file possible (e.g. a read-only folder): the checkpoint write reports that.
        yield
        return
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in _NO_LOCKING:
                    owner = _read_owner(fd)
                    raise LosslandError(
                        f"another lossland run{owner} is writing {path}: wait for it to finish, "
                        "stop it, or choose another -o"
                    ) from None
        _write_owner(fd)
        # Holding the lock, no other run writes this file: leftovers are from a killed run.
        for tmp in stale_temporaries(path):
            with contextlib.suppress(OSError):
                tmp.unlink()
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()
    finally:
        os.close(fd)


def _write_owner(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _read_owner(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
