"""Tests for the HTML viewer: its JavaScript optimizers against PyTorch, the page, the CLI."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lossland.analysis import (
    OPTIMIZERS,
    Interpolant,
    Interpolation,
    descend,
    resolve_hyper,
    surface_grid,
    surface_topology,
)
from lossland.cli import main
from lossland.errors import LosslandError, LosslandWarning
from lossland.io import Surface, write_paths
from lossland.show import (
    ViewerPage,
    make_server,
    page_data,
    serve,
    write_viewer,
)

X = np.linspace(-1.0, 1.0, 21)
Y = np.linspace(-1.2, 0.9, 17)  # not square, not symmetric: catches x/y mix-ups
OPTIMIZERS_JS = Path(str(resources.files("lossland.show.viewer").joinpath("optimizers.js")))


def make_surface(loss: np.ndarray | None = None, **attrs: Any) -> Surface:
    gx, gy = np.meshgrid(X, Y)
    if loss is None:
        loss = 0.5 + gx**2 + 2 * gy**2 + 0.3 * gx * gy + 0.2 * np.sin(3 * gx)
    return Surface(
        x=X,
        y=Y,
        loss=loss,
        acc=np.full_like(loss, 0.75),
        loss_sem=np.zeros_like(loss),
        done=np.ones(loss.shape, dtype=bool),
        attrs={"model": "bowl", **attrs},
        trajectories={"training": np.array([[0.8, -0.9], [0.4, -0.4], [0.1, -0.1]])},
    )


def need(program: str) -> str:
    """The program's path; a skip, or under LOSSLAND_REQUIRE_BROWSER=1 a failure, without it."""
    found = shutil.which(program)
    if found is None:
        reason = f"{program} is not installed"
        if os.environ.get("LOSSLAND_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason} but LOSSLAND_REQUIRE_BROWSER=1")
        pytest.skip(reason)
    return found


def run_node(script: str, payload: Any) -> Any:
    node = need("node")
    result = subprocess.run(
        [node, "-e", script, str(OPTIMIZERS_JS)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def js_grid(surface: Surface) -> dict[str, Any]:
    grid = surface_grid(surface)
    z = [[v if np.isfinite(v) else None for v in row] for row in grid.loss.tolist()]
    return {"x": grid.x.tolist(), "y": grid.y.tolist(), "z": z}


DESCEND_JS = """
const o = require(process.argv[1]);
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = input.cases.map((c) => o.descend(input.grid, c));
process.stdout.write(JSON.stringify(out));
"""

# Every optimizer with its defaults, plus variants that take other branches of the update rules.
VARIANTS: list[tuple[str, dict[str, float]]] = [(name, {}) for name in OPTIMIZERS] + [
    ("sgd", {"weight_decay": 0.3}),
    ("momentum", {"momentum": 0.6, "dampening": 0.3, "weight_decay": 0.1}),
    ("nesterov", {"momentum": 0.7, "weight_decay": 0.2}),
    ("adam", {"amsgrad": 1.0, "weight_decay": 0.1, "beta1": 0.8}),
    ("adam", {"decoupled_weight_decay": 1.0, "weight_decay": 0.5, "eps": 1e-3}),
    ("nadam", {"weight_decay": 0.1, "momentum_decay": 0.01}),
    ("nadam", {"decoupled_weight_decay": 1.0, "weight_decay": 0.2, "beta1": 0.9}),
    ("rmsprop", {"centered": 1.0, "momentum": 0.5, "weight_decay": 0.1, "alpha": 0.9}),
    ("rmsprop", {"momentum": 0.3}),
]


def compare(surface: Surface, cases: list[dict[str, Any]]) -> None:
    payload = [{**c, "hyper": resolve_hyper(c["optimizer"], c.get("extra", {}))} for c in cases]
    results = run_node(DESCEND_JS, {"grid": js_grid(surface), "cases": payload})
    for case, js in zip(cases, results, strict=True):
        py = descend(
            surface,
            start=tuple(case["start"]),
            optimizer=case["optimizer"],
            lr=case["lr"],
            steps=case["steps"],
            log=case["log"],
            interpolation=case["interpolation"],
            **case.get("extra", {}),
        )
        what = f"{case}"
        assert js["stopped"] == py.stopped, what
        points = np.array(js["points"])
        assert points.shape == py.points.shape, what
        np.testing.assert_allclose(points, py.points, rtol=0, atol=1e-5, err_msg=what)
        np.testing.assert_allclose(js["losses"], py.losses, rtol=1e-5, atol=1e-5, err_msg=what)
        # In practice they agree to rounding; a looser match would hide a wrong update rule.
        assert np.abs(points - py.points).max() < 1e-9, what


@pytest.mark.parametrize("interpolation", ["cubic", "bilinear"])
def test_js_optimizers_match_pytorch(interpolation: str) -> None:
    cases = [
        {
            "start": [0.7, 0.6],
            "optimizer": name,
            "lr": 0.01 if name == "rmsprop" else 0.05,
            "steps": 40,
            "log": log,
            "interpolation": interpolation,
            "extra": extra,
        }
        for name, extra in VARIANTS
        for log in (False, True)
    ]
    compare(make_surface(), cases)


def test_js_and_pytorch_stop_alike() -> None:
    loss = make_surface().loss.copy()
    loss[7:10, 8:11] = np.nan  # a hole around the minimum
    loss[0, :3] = np.inf
    cases: list[dict[str, Any]] = [
        # leaves the grid
        {"start": [0.9, 0.8], "optimizer": "sgd", "lr": 0.9, "steps": 20},
        # steps into the hole
        {"start": [0.8, 0.7], "optimizer": "nadam", "lr": 0.1, "steps": 80},
        # diverges
        {"start": [0.9, 0.8], "optimizer": "sgd", "lr": 1e308, "steps": 5},
        # starts on the edge and steps out at once
        {"start": [1.0, 0.0], "optimizer": "sgd", "lr": 5.0, "steps": 5},
    ]
    for case in cases:
        case.update(log=False, interpolation="cubic")
    surface = make_surface(loss)
    compare(surface, cases)
    stops: list[str | None] = []
    for c in cases:
        path = descend(
            surface, start=tuple(c["start"]), optimizer=c["optimizer"], lr=c["lr"], steps=c["steps"]
        )
        stops.append(path.stopped.split(" at ")[0] if path.stopped else None)
    assert stops == [
        "left the grid",
        "reached a hole (not evaluated, or NaN)",
        "diverged",
        "left the grid",
    ]


def test_js_interpolant_matches_python() -> None:
    surface = make_surface()
    rng = np.random.default_rng(3)
    points = np.column_stack([rng.uniform(-1, 1, 50), rng.uniform(-1.2, 0.9, 50)]).tolist()
    points += [[1.0, 0.9], [-1.0, -1.2], [float(X[4]), float(Y[5])]]
    script = """
    const o = require(process.argv[1]);
    const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const out = {};
    for (const interpolation of ["cubic", "bilinear"]) {
      for (const log of [false, true]) {
        const f = o.makeInterpolant(input.grid, { interpolation, log });
        out[interpolation + log] = input.points.map(([x, y]) => f.evaluate(x, y));
      }
    }
    process.stdout.write(JSON.stringify(out));
    """
    out = run_node(script, {"grid": js_grid(surface), "points": points})
    import torch

    interpolations: tuple[Interpolation, ...] = ("cubic", "bilinear")
    for interpolation in interpolations:
        for log in (False, True):
            f = Interpolant(surface_grid(surface), interpolation=interpolation, log=log)
            for (x, y), js in zip(points, out[interpolation + str(log).lower()], strict=True):
                xy = torch.tensor([x, y], dtype=torch.float64, requires_grad=True)
                value = f(xy)
                (grad,) = torch.autograd.grad(value, xy)
                np.testing.assert_allclose(
                    js, [value.item(), *grad.tolist()], rtol=1e-12, atol=1e-12
                )


# --- the page ----------------------------------------------------------------------------------


def embedded_data(html: str) -> dict[str, Any]:
    match = re.search(
        r'<script type="application/json" id="lossland-data">(.*?)</script>', html, re.S
    )
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_page_is_self_contained(tmp_path: Path) -> None:
    loss = make_surface().loss.copy()
    loss[2, 3] = np.nan
    surface = make_surface(loss, note="</script><b>x</b>")
    paths = [descend(surface, start=(0.5, 0.5), steps=5)]
    with pytest.warns(LosslandWarning, match="1 NaN"):
        out = write_viewer(surface, tmp_path / "page.html", paths=paths, title="a <title> & more")
    html = out.read_text(encoding="utf-8")
    # Offline: no external scripts, styles or frames.
    assert not re.search(r"<(script|link|iframe|img)[^>]+(src|href)=", html, re.I)
    assert "plotly.js v" in html  # inlined from the plotly package
    assert "root.LosslandOptimizers = api" in html
    assert "<title>a &lt;title&gt; &amp; more</title>" in html
    # Only the template's own <script> tags close scripts: the attrs cannot break out.
    assert html.count("</script>") == 4
    data = embedded_data(html)
    assert data["grid"]["z"][2][3] is None
    assert len(data["grid"]["z"]) == len(Y) and len(data["grid"]["z"][0]) == len(X)
    assert data["paths"][0]["label"] == "nadam lr=0.1"
    assert data["trajectories"][0]["name"] == "training"
    assert set(data["optimizers"]) == set(OPTIMIZERS)
    assert data["log_allowed"] is True
    assert ["model", "bowl"] in data["metadata"]


def test_page_marks_the_significant_minima_and_their_saddles() -> None:
    """Two wells at x = ±0.6 (the left one deeper) under a small noise floor: the page lists
    the global minimum first, the other well and the saddle between them, as [x, y, loss]."""
    gx, gy = np.meshgrid(X, Y)
    loss = 1.0 + (gx**2 - 0.36) ** 2 * 4 + gy**2 + 0.1 * gx
    surface = make_surface(loss)
    found = surface_topology(surface)
    assert found is not None and len(found.minima) == 2
    (merge,) = found.merges
    critical = page_data(surface, title="t")["critical"]
    assert critical["minima"] == [[m.x, m.y, m.loss] for m in found.minima]
    assert critical["saddles"] == [[merge.x, merge.y, merge.loss]]
    assert critical["minima"][0][0] < 0 < critical["minima"][1][0]  # the deeper well first
    # A minimum within the noise (barrier ≤ 2 SE) is not marked.
    noisy = Surface(X, Y, loss, loss * 0, np.full_like(loss, 1.0), surface.done)
    assert page_data(noisy, title="t")["critical"] == {
        "minima": [critical["minima"][0]],
        "saddles": [],
    }


def test_view_without_a_file_shows_inline_in_notebooks(tmp_path: Path) -> None:
    surface = make_surface(note="\"quotes\" & <tags> 'apostrophes'")
    page = write_viewer(surface, title="inline")
    assert isinstance(page, ViewerPage)
    frame = page._repr_html_()
    match = re.fullmatch(r'<iframe srcdoc="([^"]*)" ([^>]*)></iframe>', frame)
    assert match is not None  # the whole page is one attribute value: no bare quote inside
    assert html.unescape(match.group(1)) == page.html  # and it unescapes to the page exactly
    assert 'sandbox="allow-scripts' in match.group(2)
    assert "<" not in match.group(1) and "'" not in match.group(1)
    written = write_viewer(surface, tmp_path / "v.html", title="inline")
    assert written == tmp_path / "v.html" and written.read_text(encoding="utf-8") == page.html
    assert page.save(tmp_path / "saved.html").read_text(encoding="utf-8") == page.html


def test_page_data_matches_the_descent_grid() -> None:
    x = X[::-1].copy()
    surface = make_surface()
    flipped = Surface(
        x=x,
        y=surface.y,
        loss=surface.loss[:, ::-1].copy(),
        acc=np.tile(np.arange(len(x), dtype=float), (len(Y), 1)),
        loss_sem=surface.loss_sem,
        done=surface.done,
    )
    data = page_data(flipped, title="t")
    grid = surface_grid(flipped)
    assert data["grid"]["x"] == grid.x.tolist()
    np.testing.assert_array_equal(np.array(data["grid"]["z"], dtype=float), grid.loss)
    # Accuracies are flipped with the losses: column j holds the value stored for x[j].
    assert data["acc"][0][0] == len(x) - 1


def test_page_refuses_1d_and_empty_surfaces(tmp_path: Path) -> None:
    line = Surface(X, None, X**2, X * 0, X * 0, np.ones(len(X), dtype=bool))
    with pytest.raises(LosslandError, match="1-D"):
        write_viewer(line, tmp_path / "p.html")
    empty = Surface.empty(X, Y, split="train")
    with pytest.raises(LosslandError, match="no evaluated points"):
        write_viewer(empty, tmp_path / "p.html")


def test_log_toggle_is_disabled_for_non_positive_losses(tmp_path: Path) -> None:
    surface = make_surface(make_surface().loss - 1.0)
    data = page_data(surface, title="t")
    assert data["log_allowed"] is False
    with pytest.raises(LosslandError, match="positive"):
        page_data(surface, title="t", log=True)


# --- serving -----------------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    page = tmp_path / "page.html"
    page.write_bytes(b"<!DOCTYPE html><title>x</title>")
    httpd = make_server(page, 0)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        host, port = httpd.server_address[:2]
        assert host == "127.0.0.1"
        yield f"http://127.0.0.1:{port}", page.read_bytes()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_server_serves_the_page_on_loopback_only(server: tuple[str, bytes]) -> None:
    url, body = server
    for path in ("/", "/page.html"):
        with urllib.request.urlopen(url + path, timeout=5) as response:
            assert response.read() == body
            assert response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url + "/../../etc/passwd", timeout=5)
    assert info.value.code == 404
    info.value.close()


def test_serve_prints_a_loopback_url_opens_it_and_stops_on_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "p.html"
    page.write_text("<!DOCTYPE html>")
    opened: list[str] = []

    def interrupt(self: object, poll_interval: float = 0.5) -> None:
        raise KeyboardInterrupt

    def open_url(url: str) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr("webbrowser.open", open_url)
    monkeypatch.setattr("http.server.ThreadingHTTPServer.serve_forever", interrupt)
    serve(page, port=0, open_browser=True, announce=print)  # returns instead of raising
    (url,) = opened
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
    assert url in capsys.readouterr().out


def test_server_errors(tmp_path: Path) -> None:
    with pytest.raises(LosslandError, match="not found"):
        make_server(tmp_path / "missing.html")
    page = tmp_path / "p.html"
    page.write_text("x")
    first = make_server(page, 0)
    try:
        with pytest.raises(LosslandError, match="choose another port") as info:
            make_server(page, first.server_address[1])
        # The error names the argument, which the command line shows as its flag.
        assert "choose another --port" in info.value.render(lambda name: "--" + name)
    finally:
        first.server_close()


# --- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def surface_file(tmp_path: Path) -> Path:
    return make_surface().save(tmp_path / "bowl.h5")


def test_cli_view(surface_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_paths(
        [descend(make_surface(), start=(0.5, 0.5), optimizer="adam")], tmp_path / "p.csv"
    )
    assert main(["view", str(surface_file), "--path", str(paths), "--log"]) == 0
    out = surface_file.with_suffix(".html")
    assert capsys.readouterr().out.strip() == str(out)
    data = embedded_data(out.read_text(encoding="utf-8"))
    assert data["title"] == "lossland: bowl.h5"
    assert data["defaults"]["log"] is True
    assert data["paths"][0]["label"] == "adam lr=0.1"


def test_cli_view_serve(
    surface_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Path, int, bool]] = []

    def fake_serve(
        file: Path, *, port: int = 0, open_browser: bool = True, announce: object = None
    ) -> None:
        calls.append((Path(file), port, open_browser))

    monkeypatch.setattr(sys.modules["lossland.cli._show"], "serve", fake_serve)
    out = tmp_path / "v.html"
    args = ["view", str(surface_file), "-o", str(out), "--serve", "--port", "0", "--no-browser"]
    assert main(args) == 0
    assert calls == [(out, 0, False)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.h5"], "not found"),
        (["{surface}", "-o", "no/such/folder/p.html"], "does not exist"),
        (["{surface}", "--path", "nope.csv"], "not found"),
    ],
)
def test_cli_view_errors(
    surface_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(surface_file.parent)
    assert main(["view", *[a.format(surface=surface_file) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lossland: error: ") and message in err and err.count("\n") == 1
