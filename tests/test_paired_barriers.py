"""A plane's barriers get the paired standard error of saddle − minimum over the samples both
points share (stored as ``barrier_se``, read by the basins' significance), checked against
per-sample losses computed by hand; with a shared per-sample difficulty it is several times
smaller than the independent √(SE₁² + SE₂²), and real basins become significant."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossland
from lossland.analysis import describe, surface_topology, topology_lines
from lossland.directions import Directions


class Wells(torch.nn.Module):
    """Two parameters; along p[0] the loss has three wells (cos 3α), and the feature x[:, 1]
    (scaled by ``shared``) makes some samples harder than others at every point."""

    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(2))

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        z = torch.cos(3 * self.p[0]) * xb[:, 0] + (1 + 0.3 * self.p[1] ** 2) * xb[:, 1]
        return torch.stack([z, -z], 1)


def _losses(
    model: Wells, data: tuple[torch.Tensor, torch.Tensor], a: float, b: float
) -> np.ndarray:
    """(samples,) float64 per-sample losses at p = (a, b), by hand."""
    with torch.no_grad():
        model.p.copy_(torch.tensor([a, b], dtype=torch.float64))
        out = F.cross_entropy(model(data[0]), data[1], reduction="none").numpy()
        model.p.zero_()
    return out


@pytest.mark.parametrize(("shared", "batch_size"), [(2.0, None), (2.0, 64), (0.0, None)])
def test_paired_barrier_errors_match_a_hand_computation(
    shared: float, batch_size: int | None
) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=gen, dtype=torch.float64) * torch.tensor([1.0, shared])
    y = (torch.rand(400, generator=gen) < 0.5).long()
    model = Wells().double()
    d = Directions(x={"p": torch.tensor([1.0, 0.0])}, y={"p": torch.tensor([0.0, 1.0])})
    s = lossland.surface(
        model, (x, y), x="-1.5:1.5:31", y="-1:1:11", directions=d, progress=False,
        dtype="float64", batch_size=batch_size,
    )  # fmt: skip
    records = s.attrs["barrier_se"]
    t = surface_topology(s)
    assert t is not None and len(records) == sum(0 < m.persistence < math.inf for m in t.minima)
    assert s.y is not None
    for r in records:
        (mi, mj), (si, sj) = r["minimum"], r["saddle"]
        low = _losses(model, (x, y), float(s.x[mj]), float(s.y[mi]))
        high = _losses(model, (x, y), float(s.x[sj]), float(s.y[si]))
        diff = high - low
        assert r["barrier"] == pytest.approx(float(diff.mean()), rel=1e-9)
        assert r["paired_se"] == pytest.approx(
            float(diff.std(ddof=1)) / math.sqrt(len(diff)), rel=1e-9
        )
        independent = math.hypot(low.std(ddof=1), high.std(ddof=1)) / math.sqrt(len(diff))
        assert r["independent_se"] == pytest.approx(independent, rel=1e-6)
        if shared:
            assert r["independent_se"] > 2.5 * r["paired_se"]  # several times smaller
        # The significance flag uses the paired error: barrier > 2·paired SE.
        m = next(m for m in t.minima if (m.row, m.col) == (mi, mj))
        assert m.significant == (m.persistence > 2 * r["paired_se"])
    if shared:
        # Real basins that independent errors called insignificant are significant now.
        flipped = [
            r for r in records if 2 * r["paired_se"] < r["barrier"] <= 2 * r["independent_se"]
        ]
        assert flipped
    assert topology_lines(s)[0].endswith(f"barrier SEs: {len(records)} paired, 0 independent")
    assert f"barrier_se: paired standard errors of {len(records)} barriers" in describe(s)
