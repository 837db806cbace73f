"""The viewer in a real browser: headless Chromium opens the page from disk, sliders move the path,
the minima and saddles are marked on the contour; the notebook's inline frame runs the same page.

Needs Chromium (``/usr/bin/chromium`` or ``$LOSSLAND_CHROMIUM``) and the playwright package; the
test is skipped without them, and fails instead when ``LOSSLAND_REQUIRE_BROWSER=1`` (CI). The
screenshot is saved to ``artifacts/viewer.png`` at the repository root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lossland.analysis import descend
from lossland.io import SCALARS, Recording, Surface
from lossland.show import write_recording_viewer, write_viewer

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]

pytestmark = pytest.mark.browser


def unavailable(reason: str) -> None:
    if os.environ.get("LOSSLAND_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} but LOSSLAND_REQUIRE_BROWSER=1")
    pytest.skip(reason)


def chromium() -> str:
    chosen = os.environ.get("LOSSLAND_CHROMIUM")
    candidates = [chosen] if chosen else ["/usr/bin/chromium", "chromium", "chromium-browser"]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found is not None:
            return found
    unavailable(f"Chromium is not installed (looked for {', '.join(candidates)})")
    raise AssertionError("unreachable")


# What a page may load: itself and what it makes; anything else goes over the network (a bug:
# the viewer is one offline file).
LOCAL_URLS = ("file://", "data:", "blob:", "about:")


@contextlib.contextmanager
def browser_page(width: int, height: int) -> Iterator[tuple[Any, list[str]]]:
    """A page of headless Chromium and the problems it reports while open: page errors,
    console errors and network requests (skipped without Chromium or playwright)."""
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed")
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on(
                "request",
                lambda r: (
                    None
                    if r.url.startswith(LOCAL_URLS)
                    else problems.append(f"network request: {r.url}")
                ),
            )
            yield page, problems
        finally:
            browser.close()


def landscape() -> Surface:
    """A tilted double well with a ridge, so paths from different starts differ visibly."""
    x = np.linspace(-1.0, 1.0, 41)
    y = np.linspace(-1.0, 1.0, 41)
    gx, gy = np.meshgrid(x, y)
    loss = (
        0.3
        + 1.2 * (gx**2 - 0.4) ** 2
        + 1.5 * gy**2
        + 0.25 * gx
        + 0.1 * np.sin(4 * gx) * np.cos(3 * gy)
    )
    return Surface(
        x=x,
        y=y,
        loss=loss,
        acc=np.clip(1.0 - loss / loss.max(), 0, 1),
        loss_sem=np.zeros_like(loss),
        done=np.ones(loss.shape, dtype=bool),
        attrs={"model": "double-well", "samples": 1024, "settings": {"norm": "filter"}},
        trajectories={"training": np.array([[0.9, -0.9], [0.7, -0.5], [0.6, -0.2], [0.65, 0.0]])},
    )


def test_viewer_renders_and_follows_sliders(tmp_path: Path) -> None:
    surface = landscape()
    stored = [descend(surface, start=(-0.8, 0.8), optimizer="adam", lr=0.05, steps=40)]
    page_file = write_viewer(surface, tmp_path / "viewer.html", paths=stored, title="double well")

    with browser_page(1400, 1000) as (page, problems):
        page.goto(page_file.as_uri())
        page.wait_for_function(
            "window.losslandViewer && window.losslandViewer.ready", timeout=30_000
        )

        assert page.title() == "double well"
        assert page.locator("#surface3d .gl-container canvas, #surface3d canvas").count() > 0
        assert page.locator("#contour .contour").count() > 0
        assert page.locator("#optimizer option").count() == 6
        assert page.locator("#metadata tr").count() > 3
        # The topology's minima (the global one a star) and saddle, drawn on the contour.
        critical: Any = page.evaluate("window.losslandViewer.data.critical")
        markers: Any = page.evaluate(
            "(() => Object.fromEntries(document.getElementById('contour').data"
            ".filter(t => ['global minimum', 'minima', 'saddles'].includes(t.name))"
            ".map(t => [t.name, [t.x, t.y, t.marker.symbol || 'circle']])))()"
        )
        assert len(critical["minima"]) == 2 and len(critical["saddles"]) == 1
        (best, other), (saddle,) = critical["minima"], critical["saddles"]
        assert markers == {
            "global minimum": [[best[0]], [best[1]], "star"],
            "minima": [[other[0]], [other[1]], "circle"],
            "saddles": [[saddle[0]], [saddle[1]], "x"],
        }
        assert page.locator("#contour .scatterlayer .point").count() >= 3
        before: Any = page.evaluate("window.losslandViewer.path.points")
        info_before = page.inner_text("#path-info")
        assert len(before) == 31  # the default 30 steps

        # Move the start-x slider as a user would: value, then an input event.
        page.eval_on_selector(
            "#start-x",
            "e => { e.value = '-0.6'; e.dispatchEvent(new Event('input', {bubbles: true})); }",
        )
        after: Any = page.evaluate("window.losslandViewer.path.points")
        assert after[0][0] == pytest.approx(-0.6)
        assert after != before
        assert page.inner_text("#path-info") != info_before
        # The drawn path (the contour's path trace) follows.
        drawn: Any = page.evaluate(
            "(() => { const d = document.getElementById('contour').data;"
            " return d.find(t => t.name === 'path').x[0]; })()"
        )
        assert drawn == pytest.approx(-0.6)

        # The screenshot: default optimizer, the start moved, hovering over the contour.
        page.eval_on_selector(
            "#camera-azimuth",
            "e => { e.value = '235'; e.dispatchEvent(new Event('input', {bubbles: true})); }",
        )
        page.hover("#contour .nsewdrag", position={"x": 200, "y": 150})
        page.wait_for_timeout(300)
        assert page.inner_text("#hover-info").startswith("x ")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer.png"), full_page=True)

        # Steps, optimizer and the log toggle change the path too.
        page.eval_on_selector(
            "#steps",
            "e => { e.value = '12'; e.dispatchEvent(new Event('input', {bubbles: true})); }",
        )
        assert len(page.evaluate("window.losslandViewer.path.points")) <= 13
        page.select_option("#optimizer", "momentum")
        assert page.locator("#hyper-momentum").count() == 1
        assert page.inner_text("#path-info").startswith("momentum lr=0.1")
        page.check("#log")
        page.wait_for_function(
            "document.getElementById('surface3d').layout.scene.zaxis.title.text === 'ln loss'"
        )
        page.eval_on_selector(
            "#camera-azimuth",
            "e => { e.value = '300'; e.dispatchEvent(new Event('input', {bubbles: true})); }",
        )
        eye: Any = page.evaluate("document.getElementById('surface3d').layout.scene.camera.eye")
        assert eye["y"] < 0  # azimuth 300° looks from -y

    assert problems == []
    assert (ARTIFACTS / "viewer.png").stat().st_size > 10_000


def test_inline_frame_runs_the_viewer(tmp_path: Path) -> None:
    """What a notebook shows for ``lossland.view(s)``: the page inside an iframe's srcdoc."""
    frame_html = write_viewer(landscape(), title="inline")._repr_html_()
    notebook = tmp_path / "notebook.html"
    notebook.write_text(f"<!DOCTYPE html><html><body>{frame_html}</body></html>", "utf-8")
    with browser_page(1200, 1100) as (page, problems):
        page.goto(notebook.as_uri())
        frame = page.frame_locator("iframe")
        frame.locator("body[data-ready='1']").wait_for(timeout=30_000)
        assert frame.locator("#contour .contour").count() > 0
        assert frame.locator("#title").inner_text() == "inline"
    assert problems == []


def recording() -> Recording:
    """Four steps of a bowl that sharpens and moves, with the run so far on each plane."""
    x = np.linspace(-1.0, 1.0, 21)
    gx, gy = np.meshgrid(x, x)
    count = 4
    loss = np.stack([0.2 + (1 + k) * gx**2 + 0.5 * gy**2 + 0.1 * k * gx for k in range(count)])
    paths = np.full((count, count, 2), np.nan)
    for k in range(count):  # earlier records lead to the origin of step k's plane
        paths[k, : k + 1] = [[0.1 * (k - s), -0.05 * (k - s)] for s in range(k + 1)]
    scalars = {name: np.full(count, np.nan) for name in SCALARS}
    scalars["lambda_max"] = 2.0 * (1 + np.arange(count))
    return Recording(
        x=x,
        y=x,
        steps=np.array([0, 10, 20, 30]),
        loss=loss,
        acc=np.full(loss.shape, 50.0),
        scalars=scalars,
        paths=paths,
    )


def test_recording_viewer_step_slider_changes_surface_point_and_trajectory(tmp_path):
    page_file = write_recording_viewer(recording(), tmp_path / "rec.html", title="recording")

    def drawn(page: Any) -> Any:
        return page.evaluate(
            "(() => { const d = document.getElementById('contour').data;"
            " const c = d.find(t => t.type === 'contour');"
            " const run = d.find(t => t.name === 'trajectory run so far');"
            " const now = d.find(t => (t.name || '').startsWith('weights at step'));"
            " return {z: c.z[10][15], run: run ? run.x.length : 0, now: now.name,"
            " label: document.getElementById('step-value').textContent}; })()"
        )

    with browser_page(1400, 1000) as (page, problems):
        page.goto(page_file.as_uri())
        page.wait_for_function(
            "window.losslandViewer && window.losslandViewer.ready", timeout=30_000
        )
        assert page.locator("#step").is_visible()
        assert not page.locator("#seed").is_visible()  # one seed: its control stays hidden
        last = drawn(page)  # the last step first: its surface, 4 records, its weights
        assert last["run"] == 4 and last["now"] == "weights at step 30"
        assert last["label"].startswith("30") and "8" in last["label"]
        seen = [last["z"]]
        for index, step in ((0, 0), (2, 20)):
            page.eval_on_selector(
                "#step",
                f"e => {{ e.value = '{index}'; "
                "e.dispatchEvent(new Event('input', {bubbles: true})); }",
            )
            now = drawn(page)
            assert now["now"] == f"weights at step {step}"
            assert now["run"] == index + 1  # the trajectory so far
            assert now["label"].startswith(str(step))
            seen.append(now["z"])
        # the contour's value at x = 0.5, y = 0 follows the step's surface
        expected = [0.2 + (1 + k) * 0.25 + 0.05 * k for k in (3, 0, 2)]
        assert seen == pytest.approx(expected)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer_steps.png"), full_page=True)
    assert problems == []
