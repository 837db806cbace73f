"""A surface's values as every reader shows them: the one place that decides, for each point,
what is drawn and why not.

Figures, the viewer, the mesh exports, the optimizer descent, ``describe``/``info`` and the
printed summaries all read a surface through :class:`SurfaceValues`, so they agree:

* **finite**: evaluated (``done``) with a finite loss: drawn as it is;
* **infinite**: evaluated, the loss overflowed to ±inf: drawn as the largest finite loss (the
  write-up's rule), and counted, so a note can say so;
* **NaN**: evaluated, the loss is not a number ("evaluated, NaN"): a hole;
* **missing**: never evaluated (``done`` false): a hole ("not evaluated").

Standard errors count where evaluated, finite and >= 0 (anything else is unknown), accuracies
and every other shown field (:data:`lossland.core.FIELDS`) where evaluated and finite. A log
scale needs every finite loss > 0: no shift would keep the picture honest, so
:meth:`SurfaceValues.drawn` refuses it with the one message every view uses. A surface with
nothing finite to draw is refused by :meth:`SurfaceValues.require`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lossland.core import FIELDS, Values
from lossland.errors import LosslandError, arg

# A range narrower than this, relative to the values, is drawn as a constant: its ticks and
# contour levels would be float noise.
FLAT = 1e-9


@dataclass(frozen=True)
class SurfaceValues:
    """The losses as drawn (``loss``: NaN holes, ±inf replaced) and why each hole is one."""

    raw: np.ndarray  # the stored losses
    loss: np.ndarray  # drawn: finite as stored, ±inf → the largest finite loss, holes NaN
    acc: np.ndarray  # accuracy in percent where evaluated and finite, NaN elsewhere
    sem: np.ndarray  # standard error where evaluated, finite and >= 0, NaN elsewhere
    done: np.ndarray  # evaluated
    finite: np.ndarray  # evaluated, finite loss
    infinite: np.ndarray  # evaluated, ±inf
    nan: np.ndarray  # evaluated, NaN
    shown: Values  # each shown row of FIELDS the surface holds: where evaluated and finite

    @classmethod
    def of(cls, values: Mapping[str, np.ndarray | None], done: np.ndarray) -> SurfaceValues:
        """``values``: a surface's rows of FIELDS by name (None: an optional row not held)."""
        raw = np.asarray(values["loss"], dtype=np.float64)
        done = np.asarray(done, dtype=bool)
        finite = done & np.isfinite(raw)
        infinite = done & np.isinf(raw)
        drawn = np.where(finite, raw, np.nan)
        if finite.any():
            drawn[infinite] = raw[finite].max()
        sem = np.asarray(values["loss_sem"], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            known = done & np.isfinite(sem) & (sem >= 0)
        return cls(
            raw=raw,
            loss=drawn,
            acc=_where_evaluated(values["acc"], done),
            sem=np.where(known, sem, np.nan),
            done=done,
            finite=finite,
            infinite=infinite,
            nan=done & np.isnan(raw),
            shown={
                row.name: _where_evaluated(held, done)
                for row in FIELDS
                if row.shown is not None and (held := values.get(row.name)) is not None
            },
        )

    # --- the figures of it ---

    @property
    def low(self) -> float | None:
        """The smallest finite evaluated loss (None: none)."""
        return float(self.raw[self.finite].min()) if self.finite.any() else None

    @property
    def high(self) -> float | None:
        """The largest finite evaluated loss (None: none); infinities are drawn as this."""
        return float(self.raw[self.finite].max()) if self.finite.any() else None

    @property
    def positive(self) -> bool:
        """Whether a log scale is possible: no finite loss <= 0 (true of a surface without a
        finite loss, which has nothing to draw on any scale: see :meth:`require`)."""
        low = self.low
        return low is None or low > 0

    @property
    def has_accuracy(self) -> bool:
        return bool(np.isfinite(self.acc).any())

    def counts(self) -> str:
        """Progress with the evaluated points that are not numbers: ``20/20 points (3 NaN)``."""
        text = f"{int(self.done.sum())}/{self.done.size} points"
        bad = [f"{n} {what}" for n, what in self._bad() if n]
        return text + (f" ({', '.join(bad)})" if bad else "")

    def _bad(self) -> list[tuple[int, str]]:
        return [(int(self.nan.sum()), "NaN"), (int(self.infinite.sum()), "infinite")]

    def holes(self) -> str | None:
        """What the evaluated non-finite points become, e.g. ``3 NaN (left blank), 2 infinite
        (drawn as the largest finite loss, 3.2)``; None when all are finite."""
        nan, inf = (n for n, _ in self._bad())
        high = self.high
        drawn = (
            "nothing finite to draw them as"
            if high is None
            else f"drawn as the largest finite loss, {high:.4g}"
        )
        parts = [f"{nan} NaN (left blank)"] if nan else []
        parts += [f"{inf} infinite ({drawn})"] if inf else []
        return ", ".join(parts) or None

    def note(self) -> str | None:
        """The note a written figure, page or mesh carries: the holes and the missing points."""
        parts = []
        missing = int((~self.done).sum())
        if missing:
            parts.append(f"{missing} of {self.done.size} points not evaluated (left blank)")
        holes = self.holes()
        if holes:
            parts.append(f"evaluated losses: {holes}")
        return "; ".join(parts) or None

    def status(self) -> list[tuple[tuple[int, ...], str]]:
        """(index, text) of every point that is not a finite loss: ``not evaluated``,
        ``evaluated, loss NaN``, ``loss inf (drawn as 3.2)``."""
        out: list[tuple[tuple[int, ...], str]] = []
        high = self.high
        for index in zip(*np.nonzero(~self.finite), strict=True):
            where = tuple(int(i) for i in index)
            if not self.done[where]:
                out.append((where, "not evaluated"))
            elif self.nan[where]:
                out.append((where, "evaluated, loss NaN"))
            else:
                sign = "-" if self.raw[where] < 0 else ""
                drawn = "" if high is None else f" (drawn as {high:.6g})"
                out.append((where, f"evaluated, loss {sign}inf{drawn}"))
        return out

    def text_at(self, index: tuple[int, ...]) -> str:
        """The loss at ``index`` for a summary: its value, or why there is none."""
        if self.finite[index]:
            return f"{float(self.raw[index]):.5g}"
        return dict(self.status())[index]

    # --- refusals ---

    def require(self, verb: str, *, fix: str | None = None) -> None:
        """Refuse, in one line, a surface with nothing finite to ``verb`` (plot, show, export
        as a mesh): none evaluated yet, or every evaluated loss NaN or infinite (``fix``: what
        to do about that instead of the default advice)."""
        if not self.done.any():
            raise LosslandError(
                f"the surface has no evaluated points yet, so there is nothing to {verb}: "
                "compute (or resume) it with lossland surface"
            )
        if not self.finite.any():
            nan, inf = (n for n, _ in self._bad())
            reason = (
                "the model diverged on the whole grid; compute a smaller range"
                if not nan
                else "check the model, the data and the loss function (lossland info lists "
                "the settings)"
            )
            raise LosslandError(
                f"every evaluated loss is infinite or NaN ({nan} NaN, {inf} infinite), so "
                f"there is nothing to {verb}: {fix or reason}"
            )

    def drawn(self, *, zmax: float | None = None, log: bool = False) -> np.ndarray:
        """The drawn losses clipped at ``zmax``; with ``log`` refused unless all are > 0."""
        values = self.loss
        if zmax is not None:
            if not math.isfinite(zmax):
                raise LosslandError(f"{arg('zmax')} must be a finite number, got {zmax}")
            if log and zmax <= 0:
                raise LosslandError(
                    f"a log scale needs a positive {arg('zmax')}, got {zmax:g}: raise it or "
                    f"use the linear scale (without {arg('log')})"
                )
            values = np.minimum(values, zmax)  # NaN holes stay NaN
        if log:
            check_log(values)
        return values


def _where_evaluated(values: np.ndarray | None, done: np.ndarray) -> np.ndarray:
    """``values`` where evaluated and finite, NaN elsewhere (and everywhere for None)."""
    if values is None:
        return np.full(done.shape, np.nan)
    values = np.asarray(values, dtype=np.float64)
    return np.where(done & np.isfinite(values), values, np.nan)


def check_log(values: np.ndarray) -> None:
    """Refuse a log scale of losses of which some finite one is <= 0."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size and finite.min() <= 0:
        raise LosslandError(
            f"a log scale needs positive losses but the smallest is {finite.min():.6g}: "
            f"use the linear scale (without {arg('log')})"
        )


def is_flat(low: float, high: float) -> bool:
    """Whether [low, high] is too narrow to draw as a range (a constant, up to float noise)."""
    return high - low <= FLAT * max(abs(low), abs(high), 1e-300)
