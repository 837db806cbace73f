"""The interactive viewer: one self-contained HTML page that works offline from disk.

The page inlines plotly.min.js from the installed ``plotly`` package (no CDN), the surface as
JSON (with the minima and saddles of its topology), ``optimizers.js`` (the interpolant and
PyTorch's optimizers, mirrored from :mod:`lossland.analysis`'s descent) and ``viewer.js`` (the
plots and controls). :func:`write_viewer` writes it to a file, or without one returns a
:class:`ViewerPage` that a notebook shows inline; :func:`serve` shows a file on a loopback port.
"""

from __future__ import annotations

import html
import http.server
import json
import math
import os
import re
import sys
import urllib.parse
import warnings
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, overload

import numpy as np

from lossland._version import __version__
from lossland.analysis import (
    DEFAULT_LR,
    HYPER_DEFAULTS,
    HYPER_RANGES,
    Interpolation,
    describe,
    most_persistent,
    seed_surface,
    surface_grid,
    surface_topology,
)
from lossland.core import FIELDS, printable
from lossland.errors import LosslandError, LosslandWarning, arg, first_line
from lossland.io import OptimizerPath, Surface, SurfaceValues, atomic_write_bytes, check_output
from lossland.show._scales import default_title

MARKED_MINIMA = 20  # the most persistent significant minima marked, as in the figures

_PLACEHOLDER = re.compile(r"@@(TITLE|VERSION|DATA|PLOTLY|OPTIMIZERS|VIEWER)@@")


def asset(name: str) -> str:
    """The text of a file shipped beside this module (template.html, viewer.js, optimizers.js)."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def plotly_js() -> str:
    """plotly.min.js from the installed plotly package (imported lazily: it is slow)."""
    try:
        import plotly
    except ImportError:
        raise LosslandError("the viewer needs the plotly package: pip install plotly") from None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise LosslandError(
            f"plotly.min.js is missing from the plotly package ({path}): reinstall plotly"
        )
    return path.read_text(encoding="utf-8")


def _script(text: str) -> str:
    # A literal "</script" would end the inline <script> early; "<\/" means the same in JS strings.
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE)


def _grid_json(values: np.ndarray) -> list[list[float | None]]:
    return [[float(v) if math.isfinite(v) else None for v in row] for row in values.tolist()]


def _metadata(surface: Surface, description: str) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    lines = description.splitlines()
    rows.append(("surface", lines[0]))
    for line in lines[1:]:
        key, sep, value = line.partition(": ")
        rows.append((key, value) if sep else ("", line))
    for key, value in sorted(surface.settings.items()):
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        rows.append((f"setting {printable(key)}", printable(text)))
    return rows


def page_data(
    surface: Surface,
    *,
    paths: Sequence[OptimizerPath] = (),
    title: str,
    log: bool = False,
    interpolation: Interpolation = "cubic",
    start: tuple[float, float] | None = None,
    optimizer: str = "nadam",
    lr: float = DEFAULT_LR,
    steps: int = 30,
) -> dict[str, Any]:
    """The JSON the page embeds: the grid exactly as :func:`lossland.paths.descend` sees it."""
    if surface.y is None:
        raise LosslandError(
            "the viewer needs a 2-D surface and this one is 1-D: plot it with lossland plot"
        )
    if min(surface.shape) < 2:
        ny, nx = surface.shape
        raise LosslandError(
            f"the viewer needs at least 2 points on each axis and this grid is {nx}x{ny}: "
            "export it as csv with lossland export"
        )
    values = surface.values()
    values.require("show")
    grid = surface_grid(surface)
    seeds = _seed_grids(surface)
    log_allowed = _log_allowed(values, seeds, log=log)
    description = describe(surface)
    return {
        "title": printable(title),  # a file name that is not UTF-8 shows its bytes as \xff
        "version": __version__,
        "summary": description.splitlines()[0],
        "grid": {"x": grid.x.tolist(), "y": grid.y.tolist(), "z": _grid_json(grid.loss)},
        **_point_data(surface, values),
        "log_allowed": log_allowed,
        "log_reason": "" if log_allowed else "the log scale needs positive losses",
        "optimizers": {name: dict(h) for name, h in HYPER_DEFAULTS.items()},
        # [low, high or null for no bound, high inclusive], as lossland.paths checks them.
        "ranges": {
            name: [low, high if math.isfinite(high) else None, closed]
            for name, (low, high, closed) in HYPER_RANGES.items()
        },
        "defaults": {
            "optimizer": optimizer,
            "lr": lr,
            "steps": steps,
            "start": None if start is None else [float(start[0]), float(start[1])],
            "log": log,
            "interpolation": interpolation,
        },
        "trajectories": [
            {"name": printable(name), "points": _points(points)}
            for name, points in surface.trajectories.items()
        ],
        "paths": [{"label": printable(p.label), "points": _points(p.points)} for p in paths],
        "critical": _critical_points(surface),
        "seeds": seeds,
        "metadata": _metadata(surface, description),
    }


def _log_allowed(values: SurfaceValues, seeds: list[dict[str, Any]] | None, *, log: bool) -> bool:
    """Whether the page may offer the log scale: every seed's losses positive. Opening on it
    (``log``) when not is refused with the one message every view uses."""
    allowed = values.positive and all(s["positive"] for s in seeds or [])
    if log:
        values.drawn(log=True)
        if not allowed:
            raise LosslandError(
                "a log scale needs positive losses and another seed's are not: use the linear "
                f"scale (without {arg('log')})"
            )
    return allowed


def _point_data(surface: Surface, values: SurfaceValues) -> dict[str, Any]:
    """The accuracies, the other shown rows of FIELDS and the notes of the points without a
    finite loss (why each is a hole, or what an infinite one is drawn as), in the order of
    :func:`surface_grid`'s grid (which flips decreasing axes): ``acc`` (None: none recorded),
    ``fields`` ([{label, fmt, unit, z}] for each other shown row the surface holds a value of,
    in table order) and ``notes``, [row, column, text]."""
    assert surface.y is not None
    order_x, order_y = np.argsort(surface.x), np.argsort(surface.y)
    shown = np.ix_(order_y, order_x)
    acc = values.acc[shown]
    row, col = np.argsort(order_y), np.argsort(order_x)  # where each stored index is shown
    notes = [[int(row[i]), int(col[j]), text] for (i, j), text in values.status()]
    fields = [
        {
            "label": f.shown.label,
            "fmt": f.shown.fmt,
            "unit": f.shown.unit,
            "z": _grid_json(z[shown]),
        }
        for f in FIELDS
        if f.name != "acc"
        and f.shown is not None
        and (z := values.shown.get(f.name)) is not None
        and np.isfinite(z).any()  # a row no point has a value of (never stored) is not shown
    ]
    return {
        "acc": _grid_json(acc) if values.has_accuracy else None,
        "fields": fields,
        "notes": notes,
    }


def _seed_grids(surface: Surface) -> list[dict[str, Any]] | None:
    """Every seed's losses, accuracies and notes, as the page draws them (None: one seed, in a
    stack of one or not: the page then shows no seed menu)."""
    if surface.stack is None or len(surface.stack.seeds) < 2:
        return None
    out = []
    for k, seed in enumerate(surface.stack.seeds):
        one = seed_surface(surface, k)
        values = one.values()
        drawable = bool(values.finite.any())  # the page cannot show it otherwise
        out.append(
            {
                "seed": seed,
                "z": _grid_json(surface_grid(one).loss if drawable else values.loss),
                **_point_data(one, values),
                "positive": values.positive,
                "drawable": drawable,
            }
        )
    return out


def _critical_points(surface: Surface) -> dict[str, list[list[float | None]]] | None:
    """Minima (the global one first) and saddles as [x, y, loss] rows; None without any."""
    found = surface_topology(surface)
    if found is None:
        return None
    minima, saddles = most_persistent(found, MARKED_MINIMA, significant_only=True)

    def row(x: float, y: float, loss: float) -> list[float | None]:
        return [x, y, loss if math.isfinite(loss) else None]

    return {
        "minima": [row(m.x, m.y, m.loss) for m in minima],
        "saddles": [row(s.x, s.y, s.loss) for s in saddles],
    }


def _points(points: np.ndarray) -> list[list[float]]:
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return [[float(x), float(y)] for x, y in arr if math.isfinite(x) and math.isfinite(y)]


def render_page(data: Mapping[str, Any]) -> str:
    """The page's HTML text for :func:`page_data`'s output."""
    # "<" escaped so that no string in the data can close the <script> block.
    blob = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")
    parts = {
        "TITLE": html.escape(str(data["title"])),
        "VERSION": html.escape(str(data["version"])),
        "DATA": blob,
        "PLOTLY": _script(plotly_js()),
        "OPTIMIZERS": _script(asset("optimizers.js")),
        "VIEWER": _script(asset("viewer.js")),
    }
    # One pass: text inserted for one placeholder is never searched for another.
    return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], asset("template.html"))


@dataclass(frozen=True)
class ViewerPage:
    """The viewer page in memory: a notebook shows it inline (an iframe holding the whole
    self-contained page, so it works offline too); :meth:`save` writes it as a file."""

    html: str
    height: int = 1000  # pixels of the inline frame: the controls and both plots

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the page to ``path`` (atomically); return the path."""
        out = Path(path)
        atomic_write_bytes(out, self.html.encode("utf-8"))
        return out

    def __repr__(self) -> str:
        # Short: a notebook stores the repr beside the HTML, and the page is megabytes.
        return f"ViewerPage({len(self.html):,} characters of HTML; .save(path) writes it)"

    def _repr_html_(self) -> str:
        # The page is an attribute value: escaping &, <, >, " and ' keeps every character of it
        # (scripts and data included) inside the attribute, and the browser unescapes it once.
        # The sandbox gives the frame its own origin: its scripts run but cannot reach the
        # notebook's page.
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" '
            'sandbox="allow-scripts allow-downloads" title="lossland viewer" '
            f'style="width:100%;height:{self.height}px;border:0"></iframe>'
        )


@overload
def write_viewer(
    surface: Surface,
    out: None = None,
    *,
    paths: Sequence[OptimizerPath] = (),
    title: str | None = None,
    log: bool = False,
    interpolation: Interpolation = "cubic",
) -> ViewerPage: ...


@overload
def write_viewer(
    surface: Surface,
    out: str | os.PathLike[str],
    *,
    paths: Sequence[OptimizerPath] = (),
    title: str | None = None,
    log: bool = False,
    interpolation: Interpolation = "cubic",
    overwrite: bool = False,
) -> Path: ...


def write_viewer(
    surface: Surface,
    out: str | os.PathLike[str] | None = None,
    *,
    paths: Sequence[OptimizerPath] = (),
    title: str | None = None,
    log: bool = False,
    interpolation: Interpolation = "cubic",
    overwrite: bool = False,
) -> Path | ViewerPage:
    """The self-contained viewer page for ``surface`` (``lossland.view``).

    Args:
        surface: a 2-D surface with at least 2 points on each axis.
        out: the HTML file to write (atomically); None returns the page instead (shown inline
            in notebooks).
        paths: optimizer paths to draw (the page can also descend itself).
        title: the page's title (default: from the surface).
        log: open on the log scale; ``interpolation``: the page's interpolation at start.
        overwrite: replace an existing ``out``.

    Returns:
        The path written, or with ``out=None`` a :class:`ViewerPage`.

    Raises:
        LosslandError: a line or a grid too small to draw, no finite loss, a log scale over
            non-positive losses, or an ``out`` that exists (without ``overwrite``).

    Example:
        >>> lossland.view(s, "viewer.html")
        >>> lossland.view(s)            # in a notebook: the viewer inline
    """
    if out is not None:
        check_output(Path(out), overwrite=overwrite)
    if title is None:
        title = f"lossland: {default_title(surface)}"
    data = page_data(surface, paths=paths, title=title, log=log, interpolation=interpolation)
    page = ViewerPage(render_page(data))
    note = surface.values().note()
    if note:  # the page's hover says it point by point
        warnings.warn(f"the page shows {note}", LosslandWarning, stacklevel=2)
    return page if out is None else page.save(out)


IDLE_TIMEOUT_S = 30.0  # a connection that sends or reads nothing this long is closed
_LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def make_server(
    file: str | os.PathLike[str], port: int = 0, *, timeout: float = IDLE_TIMEOUT_S
) -> http.server.ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 that serves ``file`` at ``/`` (re-read on each request).

    Only requests addressed to this server are answered: a Host header other than
    127.0.0.1 or localhost with the bound port (a page elsewhere that rebinds its DNS name to
    127.0.0.1) gets 421. A connection idle for ``timeout`` seconds is closed, and clients that
    go away mid-download end their connection quietly."""
    page = Path(file)
    if not page.is_file():
        raise LosslandError(f"page {printable(page)} not found: write it with lossland view first")
    try:
        # Loopback only: the page is for this machine's browser, not the network.
        server = _Server(("127.0.0.1", port), _handler(page, timeout))
    except OSError as exc:
        raise LosslandError(
            f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}): "
            f"choose another {arg('port')}, "
            "or 0 for any free one"
        ) from None
    bound = server.server_address[1]
    hosts = {f"{name}:{bound}" for name in _LOOPBACK_NAMES}
    server.hosts = frozenset(hosts | set(_LOOPBACK_NAMES) if bound == 80 else hosts)
    return server


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    hosts: frozenset[str] = frozenset()  # the Host headers it answers (make_server sets them)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet on a client that went away or stalled; any other failure is one note."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        warnings.warn(
            f"the viewer server could not answer a request: {first_line(exc) if exc else '?'}",
            LosslandWarning,
            stacklevel=1,
        )


def _handler(page: Path, idle: float) -> type[http.server.BaseHTTPRequestHandler]:
    names = ("/", "/" + page.name, "/index.html")

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = idle  # seconds each read and write of a connection may wait

        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").strip().lower()
            if host not in getattr(self.server, "hosts", frozenset()):
                self.send_error(421, "this server answers requests to 127.0.0.1 only")
                return
            # A name that is not UTF-8 comes percent-encoded: compare it as Path decodes it.
            wanted = urllib.parse.unquote(self.path.split("?")[0], errors="surrogateescape")
            if wanted not in names:
                self.send_error(404, "only the viewer page is served here")
                return
            try:
                body = page.read_bytes()
            except OSError:
                self.send_error(500, "the page could not be read")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # no log line per request on the terminal

    return Handler


def serve(
    file: str | os.PathLike[str],
    *,
    port: int = 0,
    open_browser: bool = True,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve the page on http://127.0.0.1:PORT/ until Ctrl-C (port 0: any free port);
    ``announce`` receives the page's URL once the server listens."""
    server = make_server(file, port)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    if announce is not None:
        announce(url)
    try:
        if open_browser:
            webbrowser.open(url)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
