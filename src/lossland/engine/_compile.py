"""``compile=True`` and the folders torch.compile writes: checked before a run, named on failure.

TorchInductor writes its generated kernels and graph cache under ``$TORCHINDUCTOR_CACHE_DIR``
(by default ``<TMPDIR>/torchinductor_<user>``), and its C++ compiler writes temporary files in
TMPDIR. A full or read-only TMPDIR fails the first forward with a long InductorError that reads
like the model's fault; a run with ``compile`` checks these folders first
(:func:`check_compile_cache`), and a compile failure met later is reported as such
(:func:`compile_failure`), with the folders and the fix.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lossland.core import printable
from lossland.errors import LosslandError, arg, first_line

__all__ = ["COMPILE_ROOM", "check_compile_cache", "compile_cache", "compile_failure", "compiled"]

COMPILE_ROOM = 64 * 2**20  # bytes free the cache needs: the kernels of a large model, and more
_STORAGE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


def compile_cache() -> Path:
    """The folder TorchInductor writes to, by its rule (not created here)."""
    given = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if given:
        return Path(given).absolute()
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        return Path(default_cache_dir()).absolute()
    except (ImportError, AttributeError):  # another torch: the rule it has kept so far
        import getpass

        return Path(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}").absolute()


def compiled(function: Any, **options: Any) -> Any:
    """``torch.compile(function, **options)``; a failure of the call itself (importing the
    compiler makes its cache folder) is one line, never the model's fault."""
    import torch

    try:
        return torch.compile(function, **options)
    except Exception as exc:
        raise LosslandError(compile_failure(exc, compiler=True) or str(exc)) from exc


def check_compile_cache() -> None:
    """Refuse ``compile`` before any work when a folder it writes (its cache, and TMPDIR, where
    the C++ compiler puts its temporary files) cannot be written or has less than
    :data:`COMPILE_ROOM` free."""
    for folder in _folders():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".lossland-probe-")
            try:
                os.write(fd, b"\0" * 4096)  # a file system with no block left refuses this
            finally:
                os.close(fd)
                os.unlink(probe)
            free = shutil.disk_usage(folder).free
        except OSError as exc:
            raise LosslandError(_folder_message(folder, exc.strerror or str(exc))) from None
        if free < COMPILE_ROOM:
            room = f"{free / 2**20:.1f} MB free, {COMPILE_ROOM >> 20} MB wanted"
            raise LosslandError(_folder_message(folder, room))


def compile_failure(exc: BaseException, *, compiler: bool = False) -> str | None:
    """The one-line message when ``exc`` is torch.compile's own failure rather than the
    model's (None otherwise): an exception of torch's compiler (dynamo, inductor), or any
    exception when ``compiler`` says it came from there. It names the folders compile writes,
    the usual cause (a full or read-only TMPDIR), and the way out."""
    chain = _chain(exc)
    ours = ("torch._dynamo", "torch._inductor")
    if not compiler and not any(type(e).__module__.startswith(ours) for e in chain):
        return None
    found = next((e for e in chain if isinstance(e, OSError)), None)
    if found is not None and (found.errno in _STORAGE or found.errno is None):
        where = Path(found.filename) if isinstance(found.filename, str) else compile_cache()
        return _folder_message(where, found.strerror or first_line(found))
    folders = " and ".join(printable(f) for f in _folders())
    return (
        f"torch.compile failed ({first_line(exc)[:200]}); it writes to {folders}: check "
        f"that they have room (TMPDIR, TORCHINDUCTOR_CACHE_DIR), or run without {arg('compile')}"
    )


def _folders() -> list[Path]:
    """The folders torch.compile writes: its cache, and the temporary folder."""
    cache, temporary = compile_cache(), Path(tempfile.gettempdir()).absolute()
    return [cache] if cache == temporary else [cache, temporary]


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in found):
        found.append(current)
        current = current.__cause__ or current.__context__
    inner = getattr(exc, "inner_exception", None)  # InductorError keeps the original here
    return found + ([inner] if isinstance(inner, BaseException) else [])


def _folder_message(folder: Path, reason: str) -> str:
    return (
        f"torch.compile cannot write to {printable(folder)} ({reason}): free space there (or "
        "make it writable), set TMPDIR (or TORCHINDUCTOR_CACHE_DIR) to a folder with room, or "
        f"run without {arg('compile')}"
    )
