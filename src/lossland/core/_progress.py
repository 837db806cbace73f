"""The package's one progress bar: ``tqdm.auto``, so a widget in Jupyter, text on a terminal.

tqdm turns itself off when its stream is not a terminal, which a notebook's never is; so the
widget bar is switched on explicitly, and the text bar keeps tqdm's own terminal check (no bar
in logs or pipes).
"""

from __future__ import annotations

from typing import Any

from lossland.core._text import printable


def progress_bar(
    total: int | None, *, desc: str, unit: str, enabled: bool = True, **options: Any
) -> Any:
    """A started ``tqdm.auto.tqdm`` (update it, close it), or None when ``enabled`` is False
    or ``total`` is 0. ``total=None`` is a bar of unknown length; ``options`` go to tqdm
    (``unit_scale``, ``unit_divisor``, ...). The bar disappears when closed."""
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    # tqdm.auto's class derives from tqdm.notebook's only inside a Jupyter kernel.
    widget = any(base.__module__ == "tqdm.notebook" for base in tqdm.__mro__)
    return tqdm(
        total=total,
        desc=printable(desc),  # may name a user's model
        unit=unit,
        dynamic_ncols=True,
        leave=False,
        disable=False if widget else None,  # None: tqdm's own check for a terminal
        **options,
    )
