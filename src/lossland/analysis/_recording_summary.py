"""The text summary of a recording (``lossland info`` on a recording file)."""

from __future__ import annotations

import numpy as np

from lossland.core import printable
from lossland.io import Recording


def _range(values: np.ndarray) -> str:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return "not measured"
    return f"{finite[0]:.4g} → {finite[-1]:.4g} (max {finite.max():.4g})"


def describe_recording(recording: Recording) -> str:
    """Steps, slice, the measures' first → last values, 2/η, overhead and skipped steps."""
    r, s = recording, recording.scalars
    grid = " × ".join(str(n) for n in reversed(r.grid))
    steps = f"{r.steps[0]}..{r.steps[-1]}" if len(r) else "none yet"
    lines = [
        f"recording: {len(r)} steps ({steps}), slice {grid} "
        f"({'plane' if r.y is not None else 'line'}, x {r.x[0]:.4g}..{r.x[-1]:.4g})",
        f"  settings: {printable(', '.join(f'{k}={v}' for k, v in sorted(r.settings.items())))}",
        f"  loss at θ_t: {_range(s['centre_loss'])}",
        f"  λ_max: {_range(s['lambda_max'])}",
    ]
    lr = s["lr"][np.isfinite(s["lr"]) & (s["lr"] > 0)]
    if lr.size:
        lines.append(f"  2/η: {_range(2.0 / lr)}")
    if np.isfinite(s["trace"]).any():
        lines.append(f"  trace: {_range(s['trace'])}")
    lines.append(f"  slice barrier: {_range(s['barrier'])}")
    overhead = r.overhead()
    lines.append(
        "  overhead: "
        + ("not measured" if overhead is None else f"{overhead:.1%} of the training time")
        + (f", {len(r.skipped)} steps skipped (budget)" if r.skipped else "")
    )
    if r.weights is not None:
        lines.append(f"  trajectory: {r.weights.shape[0]} × {r.weights.shape[1]} weights")
    return "\n".join(lines)
