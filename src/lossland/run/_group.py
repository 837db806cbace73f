"""The processes of a run: one alone, or the ranks of ``torchrun --nproc_per_node N``.

Every process (rank) loads the model, the data and the directions itself, agrees with the
others on what is being computed, and evaluates its own share of the pending points: whole
grid rows (so each row keeps its exact anchor and incremental steps and comes out bit-identical
to a one-process run), or, when there are fewer pending rows than ranks (a 1-D line), one
contiguous run of points each. Rank 0 alone touches the output file.

Results travel by collectives on CPU tensors through gloo, also on GPU jobs (whose process group
is ``cpu:gloo,cuda:nccl``): they are a few numbers per point, and gloo notices a dead peer at
once where NCCL would wait for its watchdog. A background thread on every rank runs the rounds,
so the evaluation never waits on the network: about once a second (more often with shorter
checkpoint intervals) each rank contributes its status, its new points and how far it got;
every rank stores everybody's points, and rank 0 checkpoints the file atomically every
``checkpoint_every`` seconds. A rank that fails, is interrupted (Ctrl-C, SIGTERM) or stops
progressing ends the job at the next round; a rank that dies breaks the collectives of the
others within moments (and torchrun sends them SIGTERM). Either way rank 0 writes what it has,
and rerunning the same command resumes.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.distributed as dist

from lossland.core import FIELDS, Values, value_digest
from lossland.errors import LosslandError, arg, first_line
from lossland.io import Surface

TIMEOUT_ENV = "LOSSLAND_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
# Rank statuses, sent every round. FAILED and INTERRUPTED end the job at that round.
RUNNING, FINISHED, FAILED, INTERRUPTED = 0, 1, 2, 3


class PeerError(LosslandError):
    """An error that rank 0 reports for the whole job; the other ranks exit quietly."""

    quiet = True


class RankError(LosslandError):
    """An error of this rank alone (the CLI prints it on this rank, not only on local rank 0)."""

    rank_local = True


# --- where this process stands -------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def launched() -> bool:
    """True under torchrun (or any launcher setting RANK/WORLD_SIZE) with several processes."""
    needed = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    return all(name in os.environ for name in needed) and _env_int("WORLD_SIZE", 1) > 1


def several_processes() -> bool:
    """This process is one of several: launched so (torchrun), or in an initialized process
    group of two or more."""
    initialized = dist.is_available() and dist.is_initialized()
    return launched() or (initialized and dist.get_world_size() > 1)


def rank() -> int:
    """This process's rank: from the process group when there is one, else from RANK, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0) if launched() else 0


def is_main_process() -> bool:
    """Rank 0 (or a plain single-process run): the one process that writes files and prints."""
    return rank() == 0


def timeout_seconds() -> float:
    """How long a collective may wait for a silent peer ($LOSSLAND_DIST_TIMEOUT, default 300)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise LosslandError(f"{TIMEOUT_ENV}={text!r} must be a positive number of seconds")
    return value


def rank_device(device: torch.device, local_rank: int, local_world: int) -> torch.device:
    """One GPU per local rank: ``cuda`` (or auto) means cuda:LOCAL_RANK under torchrun."""
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    index: int | None = device.index  # None for plain "cuda" (torch's stubs say int)
    if index is None:
        if local_rank >= count:
            raise RankError(
                f"local rank {local_rank} has no GPU: only {count} visible on this node; start "
                f"at most {count} processes per node (--nproc_per_node {count})"
            )
        return torch.device("cuda", local_rank)
    if local_world > 1:
        raise LosslandError(
            "under torchrun each process uses the GPU of its local rank: "
            f"set {arg('device')} to cuda (or auto), not {device}"
        )
    return device


# --- the process group ---------------------------------------------------------------------------

# The gloo groups made for jobs whose own default group cannot carry CPU tensors (NCCL only).
_CPU_GROUPS: dict[int, Any] = {}


def backend_error(exc: BaseException) -> str:
    """The gist of a backend error: its first line without gloo's source location and advice."""
    text = re.sub(r"^\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*", "", first_line(exc))
    return text.split(". ")[0].rstrip(".")[:300]


def join(device: torch.device) -> Group:
    """This process's place in a job, joining a multi-process one if needed (a group of one
    when alone).

    Under torchrun the process group is created here (gloo on CPU, ``cpu:gloo,cuda:nccl`` with
    one GPU per local rank) and destroyed at exit; a group the caller made is used as it is.
    """
    if not dist.is_available():
        if launched():
            raise LosslandError("this PyTorch build has no torch.distributed: run one process")
        return Group.alone(device)
    timeout = timeout_seconds()
    if dist.is_initialized():
        if dist.get_world_size() < 2:
            return Group.alone(device)
        local_rank = _env_int("LOCAL_RANK", 0)
        local_world = _env_int("LOCAL_WORLD_SIZE", 1)
        backend = str(dist.get_backend())
        pg = None if "gloo" in backend else _cpu_group(timeout)
        return Group(
            dist.get_rank(),
            dist.get_world_size(),
            rank_device(device, local_rank, local_world),
            pg,
            timeout,
        )
    if not launched():
        return Group.alone(device)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", 1)
    device = rank_device(device, local_rank, local_world)
    backend = "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
        backend = "cpu:gloo,cuda:nccl"
    try:
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout))
    except Exception as exc:  # store, rendezvous or backend errors come in many types
        raise LosslandError(
            f"cannot join the torchrun job ({backend_error(exc)}): check that every process "
            "started and that MASTER_ADDR/MASTER_PORT are reachable"
        ) from None
    atexit.register(_leave)
    return Group(dist.get_rank(), dist.get_world_size(), device, None, timeout)


def _cpu_group(timeout: float) -> Any:
    key = id(dist.group.WORLD)
    if key not in _CPU_GROUPS:
        _CPU_GROUPS[key] = dist.new_group(
            backend="gloo", timeout=datetime.timedelta(seconds=timeout)
        )
    return _CPU_GROUPS[key]


def _leave() -> None:
    # A job that ended in error may leave a collective pending; destroying would wait on it.
    if dist.is_initialized() and not Group.abandoned:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


# --- the job -----------------------------------------------------------------------------------


def assign(pending: np.ndarray, world: int) -> list[np.ndarray]:
    """Each rank's share of the (ny, nx) ``pending`` mask: balanced, deterministic.

    Whole rows when there are at least ``world`` pending rows (largest first, each to the rank
    with the fewest points so far); otherwise the pending points in row-major order, cut into
    ``world`` contiguous runs.
    """
    counts = pending.sum(axis=1)
    rows = [int(i) for i in np.flatnonzero(counts)]
    masks = [np.zeros_like(pending, dtype=bool) for _ in range(world)]
    if len(rows) >= world:
        load = [0] * world
        for i in sorted(rows, key=lambda i: (-int(counts[i]), i)):
            r = min(range(world), key=lambda r: (load[r], r))
            masks[r][i] = pending[i]
            load[r] += int(counts[i])
        return masks
    flat = np.flatnonzero(pending.reshape(-1))
    for r, chunk in enumerate(np.array_split(flat, world)):
        mask = np.zeros(pending.size, dtype=bool)
        mask[chunk] = True
        masks[r] = mask.reshape(pending.shape)
    return masks


@dataclass
class Group:
    """A rank of a running job: the collectives lossland needs, on CPU tensors."""

    rank: int
    world: int
    device: torch.device
    pg: Any = None  # None: the default group
    timeout_s: float = DEFAULT_TIMEOUT_S
    interval_s: float = field(default=1.0)
    # Class-wide: some run left a collective pending, so the group must not be destroyed at
    # exit (that would wait on it); see _leave.
    abandoned: ClassVar[bool] = False

    @classmethod
    def alone(cls, device: torch.device) -> Group:
        """A group of one: this process computes every point and writes the file."""
        return cls(0, 1, device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        out = [torch.empty_like(tensor) for _ in range(self.world)]
        dist.all_gather(out, tensor, group=self.pg)
        return out

    def all_gather_padded(
        self, tensor: torch.Tensor, headers: list[list[int]], column: int
    ) -> list[torch.Tensor]:
        """Every rank's 1-D ``tensor`` of the length its header announced (``column``),
        gathered zero-padded to the longest; none travel when all are empty."""
        longest = max(h[column] for h in headers)
        if not longest:
            return [tensor[:0]] * self.world
        buffer = torch.zeros(longest, dtype=tensor.dtype)
        buffer[: tensor.numel()] = tensor
        return self.all_gather(buffer)

    def _broadcast_bytes(self, data: bytes) -> bytes:
        size = torch.tensor([len(data)], dtype=torch.int64)
        dist.broadcast(size, 0, group=self.pg)
        buffer = torch.zeros(int(size.item()), dtype=torch.uint8)
        if self.main and data:
            buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        if buffer.numel():
            dist.broadcast(buffer, 0, group=self.pg)
        return bytes(buffer.numpy().tobytes())

    def _collective(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            raise LosslandError(
                f"rank {self.rank} lost contact with the job while {what} ({backend_error(exc)})"
            ) from None

    def agree(
        self,
        settings: Mapping[str, Any],
        keys: tuple[str, ...],
        start: Callable[[], Surface],
        empty: Surface,
    ) -> Surface:
        """Check every rank computes the same thing; rank 0 opens or resumes the file.

        ``start`` runs on rank 0 only; its error (e.g. settings differ from the file's) is
        raised on rank 0 and quietly on the others. The other ranks get the done points.
        """
        if self.world == 1:
            return start()
        mine = torch.tensor([value_digest(settings.get(k)) for k in keys], dtype=torch.int64)
        gathered = self._collective("comparing settings", lambda: self.all_gather(mine))
        table = torch.stack(gathered)
        for r in range(1, self.world):
            differ = [k for k, a, b in zip(keys, table[0], table[r], strict=True) if a != b]
            if differ:
                error = LosslandError(
                    f"rank {r} computes different {', '.join(differ)} than rank 0: every node "
                    "needs the same checkpoint, directions, data and options"
                )
                if not self.main:
                    error = PeerError(str(error))
                raise error
        problem, result = "", empty
        local_error: BaseException | None = None
        if self.main:
            try:
                result = start()
            except LosslandError as exc:
                problem, local_error = str(exc), exc
            except Exception as exc:
                problem, local_error = f"{type(exc).__name__}: {exc}", exc
        text = self._collective("opening the file", lambda: self._broadcast_bytes(problem.encode()))
        if text:
            if local_error is not None:
                raise local_error
            raise PeerError(text.decode(errors="replace"))
        arrays = torch.from_numpy(
            np.stack([*_fields(result).values(), result.done.astype(np.float64)])
        ).contiguous()
        self._collective("sharing the file", lambda: dist.broadcast(arrays, 0, group=self.pg))
        if self.main:
            return result
        *values, done = arrays.numpy()
        for target, value in zip(_fields(result).values(), values, strict=True):
            target[...] = value
        result.done[...] = done.astype(bool)
        return result


def _fields(result: Surface) -> Values:
    """The per-point arrays rank 0 shares when it resumes a file, one per row of FIELDS, in
    table order (filled in place; NaN for a row the surface does not hold)."""
    held = {row.name: result.field(row.name) for row in FIELDS}
    return {
        name: values if values is not None else np.full(result.shape, np.nan)
        for name, values in held.items()
    }
