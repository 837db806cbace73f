"""What a stack of per-layer surfaces says block by block (``surface(params_per_layer=...)``):
one line per block with its loss range and its sharpness at the centre, for ``describe``."""

from __future__ import annotations

import numpy as np

from lossland.analysis._measures import sharpness
from lossland.analysis._robustness import seed_surface
from lossland.core import printable
from lossland.io import Surface


def layer_lines(surface: Surface) -> list[str]:
    """``N layers, each moving that block alone:`` then per block its name, tensors moved, loss
    range and the mean loss rise at the sharpness radius (the block's sharpness, comparable
    across blocks: the same grid and the same kind of directions); nothing for other surfaces."""
    stack = surface.stack
    if stack is None or stack.axis != "layers":
        return []
    lines = [f"{len(stack.layers)} layers, each with directions on that block alone:"]
    for k, name in enumerate(stack.layers):
        one = seed_surface(surface, k)
        moved = one.attrs.get("params")
        tensors = f"{len(moved)} tensors" if isinstance(moved, list) else "tensors n/a"
        values = one.values()
        if values.low is None or values.high is None:
            lines.append(f"  {printable(name)} ({tensors}): {values.counts()}, no finite loss")
            continue
        rise = sharpness(one)
        shown = (
            f", rise at r = {rise.radius:.3g} mean {rise.rise_mean:+.4g}"
            if rise is not None and rise.radius is not None and rise.rise_mean is not None
            else ""
        )
        done = "" if bool(np.all(values.done)) else f" ({values.counts()})"
        lines.append(
            f"  {printable(name)} ({tensors}): loss {values.low:.6g} .. {values.high:.6g}"
            f"{shown}{done}"
        )
    return lines
