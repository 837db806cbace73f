"""bf16's stored error against the whole grid in fp32 on a small MLP: the check's points spread
over the grid, its stored fp32 values are the fp32 surface's, and its largest relative error
bounds the grid's 90th percentile of it, as the summary line claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossland
from helpers import torch_threads


@pytest.mark.parametrize(
    ("x", "y"), [("-1:1:21", "-1:1:21"), ("-2:2:31", "-1:1:7"), ("-1:1:41", None)]
)
def test_bf16_check_spreads_over_the_grid_and_bounds_its_error(x: str, y: str | None) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
    data = (torch.randn(128, 10), torch.randint(0, 3, (128,)))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(net(data[0]), data[1]).backward()
        opt.step()
    d = lossland.random_directions(net, seed=1, ndim=1 if y is None else 2)
    grid = {"x": x, "y": y, "directions": d, "progress": False, "device": "cpu"}
    with torch_threads(1):
        bf16 = lossland.surface(net.eval(), data, precision="bf16", **grid)
        fp32 = lossland.surface(net, data, **grid)
    check = bf16.attrs["precision_check"]
    points = np.array(check["points"])
    ys = fp32.y if fp32.y is not None else np.zeros(1)
    cols = [int(np.flatnonzero(fp32.x == px)[0]) for px in points[:, 0]]
    rows = [int(np.flatnonzero(ys == py)[0]) for py in points[:, 1]]
    full = fp32.loss.reshape(len(ys), len(fp32.x))
    np.testing.assert_allclose(check["fp32"], full[rows, cols], rtol=1e-5)
    # Spread: a point in each of five consecutive blocks of every axis.
    for index, n in ((cols, len(fp32.x)), (rows, len(ys))):
        for block in np.array_split(np.arange(n), min(5, n)):
            assert set(block) & set(index)
    relative = np.abs(bf16.loss - fp32.loss) / np.abs(fp32.loss)
    assert check["max_relative"] == pytest.approx(
        float(np.max(np.abs(np.array(check["bf16"]) - full[rows, cols]) / full[rows, cols])),
        rel=1e-3,
    )
    assert np.quantile(relative, check["quantile"]) <= check["max_relative"]
    assert check["confidence"] == pytest.approx(1 - 0.9 ** len(points))
