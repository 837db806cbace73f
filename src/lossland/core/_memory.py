"""Peak memory of a run, host and device, as multiples of the model's parameter bytes.

Host figures are the process's resident set (Linux ``VmHWM``/``VmRSS``): process-wide, so they
include Python, torch, the data and the caller's own objects. Where Linux lets a process reset
its peak (``/proc/self/clear_refs``), a probe resets it when the run starts and at the start and
end of its points, so the run's and the points' peaks are their own (``host_scope: run``);
elsewhere the host peak is the process's since it started (``host_scope: process``) and the
points' peak is unknown. Device figures are torch's CUDA allocator peaks
(``max_memory_allocated``, reset the same way); other devices report none.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

MEMORY_KEYS = (
    "param_bytes",
    "device",
    "offload",
    "host_scope",
    "host_start_bytes",
    "host_peak_bytes",
    "host_points_peak_bytes",
    "device_peak_bytes",
    "device_points_peak_bytes",
    "host_peak_ratio",
    "host_points_ratio",
    "device_peak_ratio",
    "device_points_ratio",
)


def param_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters (tied ones once)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def host_rss() -> tuple[int | None, int | None]:
    """(current, peak) resident set size of this process in bytes (None: unknown)."""
    current = peak = None
    with (
        contextlib.suppress(OSError),
        open("/proc/self/status", encoding="ascii", errors="replace") as status,
    ):
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                size = int(value.split()[0]) * 1024  # kB
                current, peak = (size, peak) if key == "VmRSS" else (current, size)
    if peak is None:  # ru_maxrss: kB on Linux, bytes on macOS
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = maxrss if sys.platform == "darwin" else maxrss * 1024
    return current, peak


def reset_host_peak() -> bool:
    """Reset this process's peak resident set to its current one (Linux); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def trim_host() -> None:
    """Hand the heap's freed pages back to the system (glibc ``malloc_trim``; nothing
    elsewhere): a pass that drew many block-sized temporaries, between which small long-lived
    objects were allocated, otherwise leaves them in the resident set."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        return


class MemoryProbe:
    """Peaks of one run: ``start()`` when it begins, ``points()`` around its evaluations (the
    per-point memory: working copy, directions, data, activations), ``report()`` at its end."""

    def __init__(self, model: nn.Module, *, offload: bool = False) -> None:
        self.params = param_bytes(model)
        self.offload = offload
        self.device: torch.device | None = None
        self.resets = reset_host_peak()
        self.start_rss, self.host_peak = host_rss()
        self.host_points: int | None = None
        self.device_peak: int | None = None
        self.device_points: int | None = None

    def watch(self, device: torch.device) -> None:
        """The run's device; on CUDA its allocator peak is reset here."""
        self.device = device
        if self._cuda():
            torch.cuda.reset_peak_memory_stats(device)
            self.device_peak = torch.cuda.memory_allocated(device)

    @contextlib.contextmanager
    def points(self) -> Iterator[None]:
        """Around the evaluation of points: their own peaks (several calls: the largest)."""
        self._take(points=False)
        try:
            yield
        finally:
            self._take(points=True)

    def _take(self, *, points: bool) -> None:
        """Fold the peaks since the last reset into the run's (and the points'), then reset."""
        _, host = host_rss()
        self.host_peak = _max(self.host_peak, host)
        if points and self.resets:
            self.host_points = _max(self.host_points, host)
        self.resets = self.resets and reset_host_peak()
        if self._cuda():
            assert self.device is not None
            device = torch.cuda.max_memory_allocated(self.device)
            self.device_peak = _max(self.device_peak, device)
            if points:
                self.device_points = _max(self.device_points, device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def report(self) -> dict[str, Any]:
        """The run's memory, as the surface file's ``memory`` attribute (plain JSON)."""
        self._take(points=False)

        def ratio(value: int | None) -> float | None:
            return None if value is None or self.params == 0 else value / self.params

        return {
            "param_bytes": self.params,
            "device": str(self.device) if self.device is not None else "cpu",
            "offload": self.offload,
            "host_scope": "run" if self.resets else "process",
            "host_start_bytes": self.start_rss,
            "host_peak_bytes": self.host_peak,
            "host_points_peak_bytes": self.host_points,
            "device_peak_bytes": self.device_peak,
            "device_points_peak_bytes": self.device_points,
            "host_peak_ratio": ratio(self.host_peak),
            "host_points_ratio": ratio(self.host_points),
            "device_peak_ratio": ratio(self.device_peak),
            "device_points_ratio": ratio(self.device_points),
        }

    def _cuda(self) -> bool:
        return self.device is not None and self.device.type == "cuda"


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def memory_text(report: Any) -> str | None:
    """One line for a ``memory`` attribute, e.g. ``params 6.68 MB; peak host 312 MB (46.6×
    params), +45.9 MB (6.86× params) over the run's start, 291 MB while evaluating; device n/a
    (cpu)``; None when it is not one."""
    if not isinstance(report, Mapping) or not all(k in report for k in MEMORY_KEYS):
        return None
    params, host = report["param_bytes"], report["host_peak_bytes"]
    dev = report["device_peak_bytes"]
    if not _is_size(params) or not _is_size(host) or not (dev is None or _is_size(dev)):
        return None

    def times(value: int) -> str:
        ratio = value / params if params > 0 else math.nan
        shown = f"{ratio:.3g}" if ratio < 1000 else f"{ratio:,.0f}"
        return f" ({shown}× params)" if math.isfinite(ratio) else ""

    offload = "; offload: θ* on the host" if report["offload"] is True else ""
    text = f"params {_mb(params)}; peak host {_mb(host)}{times(host)}"
    start, points = report["host_start_bytes"], report["host_points_peak_bytes"]
    if report["host_scope"] == "run" and _is_size(start) and host >= start:
        text += f", +{_mb(host - start)}{times(host - start)} over the run's start"
    if _is_size(points):
        text += f", {_mb(points)} while evaluating"
    if dev is None:
        return text + f"; device n/a ({report['device']})" + offload
    text += f"; peak device {_mb(dev)}{times(dev)} on {report['device']}"
    points = report["device_points_peak_bytes"]
    if _is_size(points):
        text += f", {_mb(points)}{times(points)} while evaluating"
    return text + offload


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _mb(size: int) -> str:
    return f"{size / 1e6:.3g} MB" if size < 1e9 else f"{size / 1e9:.3g} GB"


def host_available() -> int | None:
    """Bytes this process can still allocate on the host: the least of the system's free
    memory (``MemAvailable``), what its cgroup (v2) still allows and what its address-space
    and data limits (``RLIMIT_AS``, ``RLIMIT_DATA``) leave above its current size; the
    physical memory where the system does not say (not Linux); None when nothing is known."""
    status = _proc_kb("/proc/self/status", ("VmSize", "VmData"))
    candidates = [_proc_kb("/proc/meminfo", ("MemAvailable",)).get("MemAvailable")]
    candidates.append(_cgroup_left())
    for limit, used in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY:
            candidates.append(max(0, soft - status.get(used, 0)))
    known = [c for c in candidates if c is not None]
    if known:
        return min(known)
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    return None


def _proc_kb(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    """``key: N kB`` lines of a /proc file, in bytes (empty where unreadable)."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError), open(path, encoding="ascii") as lines:
        for line in lines:
            key, _, value = line.partition(":")
            if key in keys:
                found[key] = int(value.split()[0]) * 1024
    return found


def _cgroup_left() -> int | None:
    """What this process's cgroup (v2) still lets it allocate; None without a limit."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as lines:
            group = next((ln[3:].strip() for ln in lines if ln.startswith("0::")), None)
        if group is None:
            return None
        base = f"/sys/fs/cgroup{group.rstrip('/')}"
        with open(f"{base}/memory.max", encoding="ascii") as limit:
            text = limit.read().strip()
        if text == "max":
            return None
        with open(f"{base}/memory.current", encoding="ascii") as current:
            return max(0, int(text) - int(current.read().strip()))
    except (OSError, ValueError):
        return None


def bytes_text(size: float) -> str:
    """A size for a message: ``812 kB``, ``3.2 GB``."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size:.0f} bytes"
