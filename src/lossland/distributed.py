"""Distributed surfaces on torch.distributed: ``torchrun --nproc_per_node N -m lossland surface``.

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
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from lossland.engine import Block, Engine, finish_stats
from lossland.errors import LosslandError
from lossland.interrupts import Interrupted, held_signals, signal_number, stop_on_signals
from lossland.surface_file import Surface

TIMEOUT_ENV = "LOSSLAND_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
# Rank statuses, sent every round. FAILED and INTERRUPTED end the job at that round.
RUNNING, FINISHED, FAILED, INTERRUPTED = 0, 1, 2, 3


class PeerError(LosslandError):
    """An error that rank 0 reports for the whole job; the other ranks exit quietly."""

    quiet = True


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
            raise LosslandError(
                f"local rank {local_rank} has no GPU: only {count} visible on this node; start "
                f"at most {count} processes per node (--nproc_per_node {count})"
            )
        return torch.device("cuda", local_rank)
    if local_world > 1:
        raise LosslandError(
            f"under torchrun each process uses the GPU of its local rank: pass --device cuda "
            f"(or auto), not {device}"
        )
    return device


# --- the process group ---------------------------------------------------------------------------

# The gloo groups made for jobs whose own default group cannot carry CPU tensors (NCCL only).
_CPU_GROUPS: dict[int, Any] = {}


def _first_line(exc: BaseException) -> str:
    """The gist of a backend error: first line, without gloo's source location and advice."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = re.sub(r"^\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*", "", lines[0])
    sentence = text.split(". ")[0].rstrip(".")
    return sentence[:300]


def join(device: torch.device) -> Group | None:
    """This process's place in a multi-process job, joining it if needed; None when alone.

    Under torchrun the process group is created here (gloo on CPU, ``cpu:gloo,cuda:nccl`` with
    one GPU per local rank) and destroyed at exit; a group the caller made is used as it is.
    """
    if not dist.is_available():
        if launched():
            raise LosslandError("this PyTorch build has no torch.distributed: run one process")
        return None
    timeout = timeout_seconds()
    if dist.is_initialized():
        if dist.get_world_size() < 2:
            return None
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
        return None
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
            f"cannot join the torchrun job ({_first_line(exc)}): check that every process "
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
    if dist.is_initialized() and not _Exchange.abandoned:
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


def _digest(value: Any) -> int:
    text = json.dumps(value, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little", signed=True)


@dataclass
class Group:
    """A rank of a running job: the collectives lossland needs, on CPU tensors."""

    rank: int
    world: int
    device: torch.device
    pg: Any = None  # None: the default group
    timeout_s: float = DEFAULT_TIMEOUT_S
    interval_s: float = field(default=1.0)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def _all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        out = [torch.empty_like(tensor) for _ in range(self.world)]
        dist.all_gather(out, tensor, group=self.pg)
        return out

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
                f"rank {self.rank} lost contact with the job while {what} ({_first_line(exc)})"
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
        mine = torch.tensor([_digest(settings.get(k)) for k in keys], dtype=torch.int64)
        gathered = self._collective("comparing settings", lambda: self._all_gather(mine))
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
            np.stack([result.loss, result.acc, result.loss_sem, result.done.astype(np.float64)])
        ).contiguous()
        self._collective("sharing the file", lambda: dist.broadcast(arrays, 0, group=self.pg))
        if self.main:
            return result
        loss, acc, sem, done = arrays.numpy()
        result.loss[...], result.acc[...], result.loss_sem[...] = loss, acc, sem
        result.done[...] = done.astype(bool)
        return result

    def run(
        self,
        engine: Engine,
        result: Surface,
        xs: np.ndarray,
        ys: np.ndarray | None,
        pending: np.ndarray,
        *,
        out: str | Path | None,
        progress: bool,
        checkpoint_every: float,
        count: int,
    ) -> Surface:
        """Evaluate this rank's share; every rank returns the whole surface, rank 0 saves it."""
        from lossland.runlock import run_lock

        mine = assign(pending, self.world)[self.rank]
        rows = [int(i) for i in np.flatnonzero(mine.any(axis=1))]
        self.interval_s = min(max(checkpoint_every, 0.05), 1.0)
        exchange = _Exchange(
            self,
            result,
            ndim=1 if ys is None else 2,
            count=count,
            out=Path(out) if out is not None and self.main else None,
            checkpoint_every=checkpoint_every,
            total=int(pending.sum()),
            progress=progress and self.main,
        )
        local_error: BaseException | None = None
        with contextlib.ExitStack() as stack:
            check = stack.enter_context(stop_on_signals())

            def tick(points: int) -> None:
                exchange.tick(points)
                check()  # a stop signal whose first raise was swallowed

            if exchange.out is not None:
                try:
                    stack.enter_context(run_lock(exchange.out))
                except LosslandError as exc:
                    local_error = exc
                    exchange.fail(str(exc))
            exchange.start()
            try:
                if local_error is None:
                    for block in engine.rows(
                        xs,
                        ys if ys is not None else np.zeros(1),
                        mine,
                        rows=rows,
                        tick=tick,
                    ):
                        exchange.post(block)
                    exchange.finish()
            except _Stopped:
                pass
            except KeyboardInterrupt as exc:
                exchange.interrupt(signal_number(exc))
            except LosslandError as exc:
                local_error = exc
                exchange.fail(str(exc))
            except Exception as exc:
                local_error = exc
                exchange.fail(f"{type(exc).__name__}: {exc}")
            exchange.wait()
            surface = exchange.conclude(local_error)
        return surface


class _Stopped(Exception):
    """Raised inside the engine loop when another rank ended the job."""


@dataclass
class _Report:
    status: int
    signum: int
    ticks: int
    message: str


class _Exchange:
    """The rounds of one run: a background thread that gathers every rank's new points."""

    abandoned = False  # class-wide: some run left a collective pending (see _leave)

    def __init__(
        self,
        group: Group,
        result: Surface,
        *,
        ndim: int,
        count: int,
        out: Path | None,
        checkpoint_every: float,
        total: int,
        progress: bool,
    ) -> None:
        self.group, self.result, self.ndim, self.count = group, result, ndim, count
        self.out, self.checkpoint_every = out, checkpoint_every
        self.lock = threading.Lock()  # outbox and local status
        self.store_lock = threading.Lock()  # result arrays and the file
        self.outbox: list[Block] = []
        self.status, self.signum, self.message = RUNNING, 0, ""
        self.ticks = 0
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self.reports: list[_Report] = []
        self.broken = ""  # why the collectives failed, if they did
        self.closed = False  # the main thread has taken over the result
        self.started = time.perf_counter()
        self.previous_wall = float(result.attrs.get("wall_time_s", 0.0))
        self.last_save = time.monotonic()
        self.dirty = False
        self.save_error: LosslandError | None = None
        self.last_ticks = [0] * group.world
        self.last_change = [time.monotonic()] * group.world
        self.bar = _progress_bar(total, progress)
        self.thread = threading.Thread(target=self._loop, name="lossland-exchange", daemon=True)

    # --- the main thread's side ---

    def start(self) -> None:
        self.thread.start()

    def tick(self, n: int) -> None:
        self.ticks += n
        if self.bar is not None:
            self.bar.update(n)
        if self.stopped.is_set():
            raise _Stopped

    def post(self, block: Block) -> None:
        with self.lock:
            self.outbox.append(block)

    def _set(self, status: int, message: str = "", signum: int = 0) -> None:
        with self.lock:
            if self.status in (FAILED, INTERRUPTED):
                return  # the first reason to stop is the one reported
            self.status, self.message, self.signum = status, message, signum
        self.wake.set()

    def finish(self) -> None:
        self._set(FINISHED)

    def fail(self, message: str) -> None:
        self._set(FAILED, message)

    def interrupt(self, signum: int) -> None:
        self._set(INTERRUPTED, signum=signum)

    def wait(self) -> None:
        """Until the rounds end; once this rank stops, give peers a few rounds, no more."""
        deadline: float | None = None
        while self.thread.is_alive():
            try:
                self.thread.join(0.1)
            except KeyboardInterrupt as exc:  # Ctrl-C while waiting for the others
                self.interrupt(signal_number(exc))
            if deadline is None and self.status in (FAILED, INTERRUPTED):
                deadline = time.monotonic() + 5.0 + 3 * self.group.interval_s
            if deadline is not None and time.monotonic() > deadline:
                _Exchange.abandoned = True  # a peer does not answer: stop waiting for it
                self.broken = self.broken or "the other processes did not answer"
                break

    def conclude(self, local_error: BaseException | None) -> Surface:
        """Final checkpoint on rank 0, then the result or the error this rank should raise."""
        with held_signals():  # this last checkpoint must not be cut short
            return self._conclude(local_error)

    def _conclude(self, local_error: BaseException | None) -> Surface:
        with self.store_lock:
            self.closed = True
        with self.lock:  # this rank's own points that no round carried: still good results
            blocks, self.outbox = self.outbox, []
        self._store(_encode(blocks))
        if self.bar is not None:
            self.bar.close()
        group, out = self.group, self.out
        save_error = self.save_error
        if out is not None and self.dirty:
            try:
                self._save()
            except LosslandError as exc:
                save_error = exc
        done, size = int(self.result.done.sum()), self.result.done.size
        saved = (
            f"{done} of {size} points saved in {out}; rerun the same command to resume"
            if out is not None
            else f"{done} of {size} points done"
        )
        if save_error is not None and group.main:
            raise LosslandError(f"{save_error} ({done} of {size} points computed)") from None
        if self.broken:
            if group.main:
                raise LosslandError(
                    f"lost contact with the other processes, one died or stopped answering "
                    f"({self.broken}); {saved}"
                )
            if isinstance(local_error, LosslandError):
                raise local_error  # this rank's own error, which rank 0 may never have heard of
            raise LosslandError(f"rank {group.rank} lost contact with the job ({self.broken})")
        failed = [(r, rep) for r, rep in enumerate(self.reports) if rep.status == FAILED]
        stopped = [(r, rep) for r, rep in enumerate(self.reports) if rep.status == INTERRUPTED]
        if failed:
            r, rep = failed[0]
            if not group.main:
                raise PeerError(rep.message)
            if local_error is not None and r == 0 and not isinstance(local_error, LosslandError):
                raise local_error  # a bug, not a user error: keep its traceback
            where = f"on rank {r}; " if r else ""
            raise LosslandError(f"{rep.message} ({where}{saved})") from None
        if stopped:
            r, rep = stopped[0]
            who = "interrupted" if r == group.rank else f"rank {r} was interrupted"
            raise Interrupted(f"{who}; {saved}", signum=rep.signum, quiet=not group.main)
        if not self.result.done.all() and group.main:
            raise LosslandError(f"the job ended with points missing; {saved}")
        return self.result

    # --- the exchange thread ---

    def _loop(self) -> None:
        while True:
            self.wake.wait(self.group.interval_s)
            self.wake.clear()
            with self.lock:
                blocks, self.outbox = self.outbox, []
                status, signum, message = self.status, self.signum, self.message
            try:
                reports, payloads = self._round(status, signum, message, blocks)
            except Exception as exc:  # a peer died, or went silent past the timeout
                self.broken = _first_line(exc)
                _Exchange.abandoned = True
                self.stopped.set()
                return
            with self.store_lock:
                if self.closed:
                    return
                for r, payload in enumerate(payloads):
                    points = self._store(payload)
                    if r != self.group.rank and self.bar is not None:
                        self.bar.update(points)
                self.reports = reports
                self._watch(reports)
                finished = all(rep.status == FINISHED for rep in reports)
                stop = any(rep.status in (FAILED, INTERRUPTED) for rep in reports)
                if (
                    self.out is not None
                    and self.dirty
                    and not (finished or stop)  # the main thread writes the final checkpoint
                    and time.monotonic() - self.last_save >= self.checkpoint_every
                ):
                    try:
                        self._save()
                    except LosslandError as exc:
                        self.save_error = exc
                        self._set(FAILED, str(exc))
            if finished or stop:
                self.stopped.set()
                return

    def _round(
        self, status: int, signum: int, message: str, blocks: list[Block]
    ) -> tuple[list[_Report], list[np.ndarray]]:
        group = self.group
        payload = _encode(blocks)
        text = message.encode()
        header = torch.tensor(
            [status, payload.size, len(text), signum, self.ticks], dtype=torch.int64
        )
        headers = [h.tolist() for h in group._all_gather(header)]
        longest = max(h[1] for h in headers)
        payloads = [np.empty(0)] * group.world
        if longest:
            buffer = torch.zeros(longest, dtype=torch.float64)
            buffer[: payload.size] = torch.from_numpy(payload)
            payloads = [
                t[: h[1]].numpy() for t, h in zip(group._all_gather(buffer), headers, strict=True)
            ]
        messages = [""] * group.world
        longest_text = max(h[2] for h in headers)
        if longest_text:
            buffer8 = torch.zeros(longest_text, dtype=torch.uint8)
            if text:
                buffer8[: len(text)] = torch.frombuffer(bytearray(text), dtype=torch.uint8)
            messages = [
                bytes(t[: h[2]].numpy().tobytes()).decode(errors="replace")
                for t, h in zip(group._all_gather(buffer8), headers, strict=True)
            ]
        reports = [
            _Report(int(h[0]), int(h[3]), int(h[4]), m)
            for h, m in zip(headers, messages, strict=True)
        ]
        return reports, payloads

    def _store(self, payload: np.ndarray) -> int:
        points, i = 0, 0
        while i < payload.size:
            row, n = int(payload[i]), int(payload[i + 1])
            cols = payload[i + 2 : i + 2 + n].astype(np.int64)
            stats = payload[i + 2 + n : i + 2 + 4 * n].reshape(n, 3)
            mean, sem, acc = finish_stats(stats, self.count)
            index = cols if self.ndim == 1 else (row, cols)
            self.result.with_values(index, mean, acc, sem)
            points += n
            i += 2 + 4 * n
        if points:
            self.dirty = True
        return points

    def _watch(self, reports: list[_Report]) -> None:
        """Rank 0 ends the job when a running rank has computed nothing for the timeout."""
        if not self.group.main:
            return
        now = time.monotonic()
        for r, rep in enumerate(reports):
            if rep.ticks != self.last_ticks[r] or rep.status != RUNNING:
                self.last_ticks[r], self.last_change[r] = rep.ticks, now
            elif now - self.last_change[r] > self.group.timeout_s:
                self._set(
                    FAILED,
                    f"rank {r} computed no point for {now - self.last_change[r]:.0f} s (stuck?); "
                    f"raise {TIMEOUT_ENV} if single points take that long",
                )
                return

    def _save(self) -> None:
        assert self.out is not None
        wall = self.previous_wall + time.perf_counter() - self.started
        self.result = self.result.with_attrs(wall_time_s=wall, processes=self.group.world)
        self.result.save(self.out)
        self.dirty = False
        self.last_save = time.monotonic()


def _encode(blocks: list[Block]) -> np.ndarray:
    parts: list[np.ndarray] = []
    for block in blocks:
        n = len(block.cols)
        parts += [
            np.array([block.row, n], dtype=np.float64),
            block.cols.astype(np.float64),
            np.asarray(block.stats, dtype=np.float64).reshape(n * 3),
        ]
    return np.concatenate(parts) if parts else np.empty(0)


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, unit="pt", desc="surface", dynamic_ncols=True, leave=False, disable=None
    )


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "Group",
    "PeerError",
    "assign",
    "is_main_process",
    "join",
    "launched",
    "rank",
    "rank_device",
    "timeout_seconds",
]
