"""The one run driver: evaluate this process's share of a grid, keep the file up to date, stop
cleanly. A run alone is a group of one; under torchrun every rank runs the same code.

Each process evaluates its share of the pending points (whole rows, see
:func:`lossland.run._group.assign`) and posts the results. Alone, results are stored at once.
In a group, a background thread runs the rounds, so the evaluation never waits on the
network: about once a second (more often with shorter checkpoint intervals) each rank
contributes its status, its new points and how far it got; every rank stores everybody's
points. Rank 0 alone writes the file, atomically, every ``checkpoint_every`` seconds (or, for a
file whose save took t > SLOW_SAVE_S seconds, every 10·t at the soonest: saving takes at most a
tenth of the run, whatever the file's size) and at the end. A rank that fails, is interrupted
(Ctrl-C, SIGTERM) or stops progressing ends the run at the next round; a rank that dies breaks
the collectives of the others within moments (and torchrun sends them SIGTERM). Either way
rank 0 writes what it has, and rerunning resumes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lossland.core import SAVE_SHARE, SUMS, progress_bar, reduce_sums
from lossland.engine import Block, Engine
from lossland.errors import LosslandError
from lossland.io import Surface
from lossland.run._group import TIMEOUT_ENV, Group, PeerError, assign, backend_error
from lossland.run._signals import Interrupted, held_signals, signal_number, stop_on_signals

# A save slower than this spaces the checkpoints: the next waits took / SAVE_SHARE (a 500 MB
# file, about 2.5 s to write here, every 25 s), so saving costs at most a tenth of the run.
# Quicker saves keep the interval asked for (checkpoint_every=0: every row).
SLOW_SAVE_S = 0.5
# Rank statuses, sent every round. FAILED and INTERRUPTED end the run at that round.
RUNNING, FINISHED, FAILED, INTERRUPTED = 0, 1, 2, 3


def drive(
    group: Group,
    engine: Engine,
    result: Surface,
    xs: np.ndarray,
    ys: np.ndarray | None,
    pending: np.ndarray,
    *,
    out: str | Path | None,
    progress: bool,
    checkpoint_every: float,
    label: str = "surface",
) -> Surface:
    """Evaluate this process's share; every process returns the whole surface, rank 0 saves it.
    ``label`` names the progress bar.

    An error, Ctrl-C or SIGTERM writes the points computed so far before it propagates; an
    interruption becomes :class:`Interrupted`, whose message says what was saved.
    """
    # ``shard``: groups of K consecutive ranks hold one network and evaluate its share together;
    # the first of each group reports the points
    k = engine.options.shard
    mine = assign(pending, group.world // k)[group.rank // k]
    reports = group.rank % k == 0
    rows = [int(i) for i in np.flatnonzero(mine.any(axis=1))]
    group.interval_s = min(max(checkpoint_every, 0.05), 1.0)
    exchange = _Exchange(
        group,
        result,
        ndim=1 if ys is None else 2,
        out=Path(out) if out is not None and group.main else None,
        checkpoint_every=checkpoint_every,
        pending=pending,
        progress=progress and group.main,
        label=label,
    )
    local_error: BaseException | None = None
    with contextlib.ExitStack() as stack:
        check = stack.enter_context(stop_on_signals())

        def tick(points: int) -> None:
            exchange.tick(points)
            check()  # a stop signal whose first raise was swallowed

        # The caller holds the run lock of ``out`` (see lossland.run._surface.surface).
        exchange.start()
        try:
            # closing: a generator left suspended would keep inference mode on
            points = engine.rows(
                xs, ys if ys is not None else np.zeros(1), mine, rows=rows, tick=tick
            )
            with contextlib.closing(points):
                for block in points:
                    if reports:
                        exchange.post(block)
            exchange.finish()
        except _Stopped:
            pass
        except KeyboardInterrupt as exc:
            exchange.interrupt(signal_number(exc))
        except LosslandError as exc:
            local_error = exc
            exchange.fail(str(exc))
        except BaseException as exc:  # a bug or an abort: saved, then raised with its traceback
            local_error = exc
            exchange.fail(f"{type(exc).__name__}: {exc}")
        exchange.wait()
        return exchange.conclude(local_error)


class _Stopped(Exception):
    """Raised inside the engine loop when the run was ended (by another rank, or a failed save)."""


@dataclass
class _Report:
    status: int
    signum: int
    ticks: int
    message: str


class _Exchange:
    """The rounds of one run: its own results and the other ranks', stored and checkpointed."""

    def __init__(
        self,
        group: Group,
        result: Surface,
        *,
        ndim: int,
        out: Path | None,
        checkpoint_every: float,
        pending: np.ndarray,
        progress: bool,
        label: str,
    ) -> None:
        self.group, self.result, self.ndim = group, result, ndim
        self.out, self.checkpoint_every = out, checkpoint_every
        self.spacing = checkpoint_every  # grows with the time a save takes (SAVE_SHARE)
        self.pending = pending
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
        self.on_disk = int(result.done.sum())  # points in the file as last written
        self.save_error: LosslandError | None = None
        self.last_ticks = [0] * group.world
        self.last_change = [time.monotonic()] * group.world
        self.bar = progress_bar(int(pending.sum()), desc=label, unit="pt", enabled=progress)
        self.thread = (
            threading.Thread(target=self._loop, name="lossland-exchange", daemon=True)
            if group.world > 1
            else None
        )

    # --- the main thread's side ---

    def start(self) -> None:
        if self.thread is not None:
            self.thread.start()

    def tick(self, n: int) -> None:
        self.ticks += n
        if self.bar is not None:
            self.bar.update(n)
        if self.stopped.is_set():
            raise _Stopped

    def post(self, block: Block) -> None:
        if self.thread is not None:
            with self.lock:
                self.outbox.append(block)
            return
        # Alone: store at once and checkpoint when one is due.
        self._store(_encode([block]))
        if self._save_due():
            self._save_or_stop()
            if self.stopped.is_set():
                raise _Stopped

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
        if self.thread is None:
            self.reports = [_Report(self.status, self.signum, self.ticks, self.message)]
            return
        deadline: float | None = None
        while self.thread.is_alive():
            try:
                self.thread.join(0.1)
            except KeyboardInterrupt as exc:  # Ctrl-C while waiting for the others
                self.interrupt(signal_number(exc))
            if deadline is None and self.status in (FAILED, INTERRUPTED):
                deadline = time.monotonic() + 5.0 + 3 * self.group.interval_s
            if deadline is not None and time.monotonic() > deadline:
                Group.abandoned = True  # a peer does not answer: stop waiting for it
                self.broken = self.broken or "the other processes did not answer"
                break

    def conclude(self, local_error: BaseException | None) -> Surface:
        """Final checkpoint on rank 0, then the result or the error this rank should raise."""
        with held_signals():  # this last checkpoint must not be cut short
            self._final_save()
        self._raise_for(local_error)
        return self.result

    def _final_save(self) -> None:
        with self.store_lock:
            self.closed = True
        with self.lock:  # this rank's own points that no round carried: still good results
            blocks, self.outbox = self.outbox, []
        self._store(_encode(blocks))
        if self.bar is not None:
            self.bar.close()
        if self.out is not None and self.dirty:
            try:
                self._save()
            except LosslandError as exc:
                self.save_error = exc

    def _raise_for(self, local_error: BaseException | None) -> None:
        """The error this rank raises, if the run did not complete."""
        group, saved = self.group, self._saved()
        failed = [(r, rep) for r, rep in enumerate(self.reports) if rep.status == FAILED]
        stopped = [(r, rep) for r, rep in enumerate(self.reports) if rep.status == INTERRUPTED]
        if self.save_error is not None and group.main:
            if stopped and not failed:
                raise Interrupted(f"interrupted; saving failed ({self.save_error}); {self._kept()}")
            first = failed[0][1].message if failed else ""
            cause = f"{first}; saving: " if first and first != str(self.save_error) else ""
            raise LosslandError(f"{cause}{self.save_error} ({self._kept()})") from None
        if self.broken:
            self._raise_broken(local_error, saved)
        if failed:
            r, rep = failed[0]
            if not group.main:
                raise PeerError(rep.message)
            if local_error is not None and r == 0:
                plain = self.out is None or not self.result.done.any()
                if not isinstance(local_error, LosslandError) or plain:
                    raise local_error  # a bug keeps its traceback; a plain error its words
            where = f"on rank {r}; " if r else ""
            # The user's exception stays the cause (API users see its traceback).
            original = local_error.__cause__ if local_error is not None and r == 0 else None
            raise LosslandError(f"{rep.message} ({where}{saved})") from original
        if stopped:
            r, rep = stopped[0]
            who = "interrupted" if r == group.rank else f"rank {r} was interrupted"
            raise Interrupted(f"{who}; {saved}", signum=rep.signum, quiet=not group.main)
        if not self.result.done.reshape(self.pending.shape)[self.pending].all() and group.main:
            raise LosslandError(f"the run ended with points missing; {saved}")

    def _raise_broken(self, local_error: BaseException | None, saved: str) -> None:
        if self.group.main:
            raise LosslandError(
                f"lost contact with the other processes, one died or stopped answering "
                f"({self.broken}); {saved}"
            )
        if isinstance(local_error, LosslandError):
            raise local_error  # this rank's own error, which rank 0 may never have heard of
        raise LosslandError(f"rank {self.group.rank} lost contact with the job ({self.broken})")

    def _saved(self) -> str:
        done, size = int(self.result.done.sum()), self.result.done.size
        if self.out is None:
            return f"{done} of {size} points done"
        return f"{done} of {size} points saved in {self.out}; rerun the same command to resume"

    def _kept(self) -> str:
        if self.on_disk == 0:
            return "no points of this run are saved yet"
        size = self.result.done.size
        return f"{self.out} keeps the {self.on_disk} of {size} points of its last checkpoint"

    # --- the exchange thread (groups of several) ---

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
                self.broken = backend_error(exc)
                Group.abandoned = True
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
                if not (finished or stop) and self._save_due():  # else the final save follows
                    self._save_or_stop()
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
        headers = [h.tolist() for h in group.all_gather(header)]
        payloads = [
            t[: h[1]].numpy()
            for t, h in zip(
                group.all_gather_padded(torch.from_numpy(payload), headers, 1), headers, strict=True
            )
        ]
        raw = (
            torch.frombuffer(bytearray(text), dtype=torch.uint8)
            if text
            else torch.zeros(0, dtype=torch.uint8)
        )
        messages = [
            bytes(t[: h[2]].numpy().tobytes()).decode(errors="replace")
            for t, h in zip(group.all_gather_padded(raw, headers, 2), headers, strict=True)
        ]
        reports = [
            _Report(int(h[0]), int(h[3]), int(h[4]), m)
            for h, m in zip(headers, messages, strict=True)
        ]
        return reports, payloads

    def _store(self, payload: np.ndarray) -> int:
        points, i, width = 0, 0, len(SUMS)
        while i < payload.size:
            row, n = int(payload[i]), int(payload[i + 1])
            cols = payload[i + 2 : i + 2 + n].astype(np.int64)
            sums = payload[i + 2 + n : i + 2 + (1 + width) * n].reshape(n, width)
            index = cols if self.ndim == 1 else (row, cols)
            self.result.store(index, reduce_sums(sums))
            points += n
            i += 2 + (1 + width) * n
        if points:
            self.dirty = True
        return points

    def _watch(self, reports: list[_Report]) -> None:
        """Rank 0 ends the run when a running rank has computed nothing for the timeout."""
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

    def _save_due(self) -> bool:
        return (
            self.out is not None
            and self.dirty
            and time.monotonic() - self.last_save >= self.spacing
        )

    def _save_or_stop(self) -> None:
        try:
            self._save()
        except LosslandError as exc:
            self.save_error = exc
            self._set(FAILED, str(exc))
            self.stopped.set()

    def _save(self) -> None:
        assert self.out is not None
        wall = self.previous_wall + time.perf_counter() - self.started
        extra = {"processes": self.group.world} if self.group.world > 1 else {}
        self.result = self.result.with_attrs(wall_time_s=wall, **extra)
        started = time.monotonic()
        self.result.save(self.out)
        self.dirty = False
        self.on_disk = int(self.result.done.sum())
        self.last_save = time.monotonic()
        took = self.last_save - started
        slow = took / SAVE_SHARE if took > SLOW_SAVE_S else 0.0
        self.spacing = max(self.checkpoint_every, slow)


def _encode(blocks: list[Block]) -> np.ndarray:
    """Blocks as one float64 vector: per block [row, n, cols (n), sums (n·len(SUMS))]."""
    parts: list[np.ndarray] = []
    for block in blocks:
        n = len(block.cols)
        parts += [
            np.array([block.row, n], dtype=np.float64),
            block.cols.astype(np.float64),
            np.asarray(block.stats, dtype=np.float64).reshape(n * len(SUMS)),
        ]
    return np.concatenate(parts) if parts else np.empty(0)
