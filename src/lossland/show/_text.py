"""Text on figures is drawn as written: the one rule for titles, labels, captions and legends.

Much of what a figure says comes from outside: axis labels, the model and the split in the
caption, trajectory names and the split are the surface file's; path labels are a path file's;
the title may be the user's. Matplotlib would read any of them with two ``$`` as mathtext
(``$\\frac{$`` fails the whole figure), hand them to LaTeX under ``text.usetex``, and warn about
control characters its fonts have no glyph for. :func:`draws_text` wraps every public function
that draws text: each text the call creates or changes is drawn literally (no mathtext, no
LaTeX) with its control characters escaped (:func:`lossland.core.printable`, line breaks kept),
and texts the caller had already put on the figure keep their own settings. A function that
draws (lays out) a figure before it returns passes its new texts to :func:`as_written` first.
"""

from __future__ import annotations

import contextlib
import functools
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from lossland.core import printable
from lossland.errors import LosslandWarning

__all__ = ["as_written", "draws_text", "fitted", "glyph_notes", "legend_label"]

_GLYPH = re.compile(r"Glyph (\d+) .*missing from font")

F = TypeVar("F", bound=Callable[..., Any])


def draws_text(draw: F) -> F:
    """Decorate a drawing function (see the module docstring)."""

    @functools.wraps(draw)
    def drawing(*args: Any, **kwargs: Any) -> Any:
        given = (*args, *kwargs.values())
        before = {text: text.get_text() for fig in _figures(given) for text in _texts(fig)}
        result = draw(*args, **kwargs)
        for fig in _figures((result, *given)):
            for text in _texts(fig):
                if before.get(text) != text.get_text():
                    as_written(text)
        return result

    return drawing  # type: ignore[return-value]


def legend_label(text: str) -> str:
    """A label a legend lists as written (:func:`fitted` to one line of 48 characters):
    matplotlib skips labels that start with "_" (its mark for "no entry"), so such a name
    gets a leading space."""
    text = fitted(text, 48)
    return f" {text}" if text.startswith("_") else text


def fitted(text: object, limit: int) -> str:
    """A name from a file in a slot of fixed size (an axis or colour-bar label, a legend or
    caption entry): one line (its control characters escaped, line breaks included) of at
    most ``limit`` characters, a longer one kept at both ends around "…" (a 200-character
    split name would squeeze the axes to nothing)."""
    text = printable(text)
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head) :]}"


def as_written(text: Any) -> None:
    """One matplotlib ``Text`` drawn literally, its control characters escaped: for a text
    that is drawn (measured) before its :func:`draws_text` function returns."""
    text.set_parse_math(False)
    text.set_usetex(False)
    content = text.get_text()
    safe = printable(content, newlines=True)
    if safe != content:
        text.set_text(safe)


def _figures(values: Iterable[Any]) -> list[Any]:
    """The top-level figures of the Axes, Figures and SubFigures among ``values``."""
    from matplotlib.artist import Artist

    found: list[Any] = []
    for value in values:
        fig = getattr(value, "figure", None) if isinstance(value, Artist) else None
        while fig is not None and getattr(fig, "figure", fig) is not fig:  # a SubFigure's root
            fig = fig.figure
        if fig is not None and all(fig is not f for f in found):
            found.append(fig)
    return found


def _texts(fig: Any) -> list[Any]:
    from matplotlib.text import Text

    return list(fig.findobj(Text))


@contextlib.contextmanager
def glyph_notes(name: str | None) -> Iterator[None]:
    """Around a draw or save of ``name``: matplotlib's warnings about characters its font has
    no glyph for (a CJK model name) become one note naming them; they are drawn as boxes.
    ``None``: a layout pass before the save, which notes them. Other warnings pass on."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    missing: list[str] = []
    for w in caught:
        found = _GLYPH.match(str(w.message))
        if found is None:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
        elif chr(int(found.group(1))) not in missing:
            missing.append(chr(int(found.group(1))))
    if missing and name is not None:
        warnings.warn(
            f"{name}: the figure's font has no glyph for {printable(''.join(missing))}: "
            "drawn as boxes",
            LosslandWarning,
            stacklevel=3,
        )
