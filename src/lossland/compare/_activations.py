"""Activation matching (Ainsworth et al. 2023, §3.1): run A and B on the same batches, read each
group's units where the derivation says they can be seen (a layer's input or output, caught by
forward hooks), and match B's units to A's by the correlation of their activations."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from lossland.compare._match import score, solve
from lossland.compare._permutation import Group, Permutation, Site
from lossland.engine import Batch, Evaluator
from lossland.errors import LosslandError


class _Moments:
    """Running sums for the correlation of A's units (rows) with B's units (columns)."""

    def __init__(self, units: int) -> None:
        zeros = torch.zeros(units, dtype=torch.float64)
        self.count = 0
        self.sum_a, self.sum_b, self.sq_a, self.sq_b = (
            zeros,
            zeros.clone(),
            zeros.clone(),
            zeros.clone(),
        )
        self.cross = torch.zeros(units, units, dtype=torch.float64)

    def add(self, a: Tensor, b: Tensor) -> None:
        """``a``, ``b``: (samples, units) activations of the same inputs."""
        a, b = a.double().cpu(), b.double().cpu()
        self.count += a.shape[0]
        self.sum_a += a.sum(0)
        self.sum_b += b.sum(0)
        self.sq_a += (a * a).sum(0)
        self.sq_b += (b * b).sum(0)
        self.cross += a.T @ b

    def correlation(self) -> Tensor:
        """Pearson correlation (units × units); 0 where a unit never varies (a dead ReLU)."""
        n = max(self.count, 1)
        mean_a, mean_b = self.sum_a / n, self.sum_b / n
        std_a = (self.sq_a / n - mean_a**2).clamp_min(0).sqrt()
        std_b = (self.sq_b / n - mean_b**2).clamp_min(0).sqrt()
        covariance = self.cross / n - mean_a[:, None] * mean_b[None, :]
        scale = std_a[:, None] * std_b[None, :]
        return torch.where(scale > 0, covariance / scale.clamp_min(1e-300), 0.0)


def site_rows(value: Any, site: Site, units: int) -> Tensor:
    """(samples, units): the site's units, every other position (batch, tokens, pixels, a
    flattened unit's block) a sample."""
    if isinstance(value, (tuple, list)):
        value = value[0]
    if not isinstance(value, Tensor):
        raise LosslandError(
            f"module {site.module!r} gave {type(value).__name__}, not a tensor, where its "
            "units were to be read: use method='weights'"
        )
    moved = value.detach().movedim(site.channel, -1)
    moved = moved.narrow(-1, site.start, units * site.block)
    return moved.reshape(-1, units, site.block).transpose(1, 2).reshape(-1, units)


@contextmanager
def _captured(model: nn.Module, sites: Iterable[Site]) -> Iterator[dict[Site, list[Any]]]:
    """Forward hooks that keep what each site's module sees (input) or gives (output)."""
    found: dict[Site, list[Any]] = {s: [] for s in sites}
    handles = []
    for site in found:
        module = model.get_submodule(site.module)
        keep = found[site]
        if site.io == "input":

            def before(_: nn.Module, args: tuple[Any, ...], keep: list[Any] = keep) -> None:
                keep.append(args[0] if args else None)

            handles.append(module.register_forward_pre_hook(before))
        else:

            def after(_: nn.Module, __: Any, out: Any, keep: list[Any] = keep) -> None:
                keep.append(out)

            handles.append(module.register_forward_hook(after))
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()


def activation_matching(
    a: nn.Module,
    b: nn.Module,
    groups: tuple[Group, ...],
    batches: Iterable[Batch],
    evaluator: Evaluator,
) -> tuple[Permutation, float, float]:
    """The permutation of B maximising each group's summed correlations, and the mean
    correlation of matched units before (identity) and after."""
    moments = {
        (g.name, index, site): _Moments(g.units)
        for g in groups
        for index, part in enumerate(g.parts)
        for site in part.sites
    }
    sites = {site for _, _, site in moments}
    units = {site: g.units for g in groups for part in g.parts for site in part.sites}
    with torch.no_grad(), _captured(a, sites) as seen_a, _captured(b, sites) as seen_b:
        for batch in batches:
            evaluator.run(a, batch)
            evaluator.run(b, batch)
            for (_, _, site), m in moments.items():
                for va, vb in zip(seen_a[site], seen_b[site], strict=True):
                    m.add(site_rows(va, site, units[site]), site_rows(vb, site, units[site]))
            for seen in (seen_a, seen_b):
                for kept in seen.values():
                    kept.clear()
    return _assign(groups, moments)


def _assign(
    groups: tuple[Group, ...], moments: dict[tuple[str, int, Site], _Moments]
) -> tuple[Permutation, float, float]:
    perms, before, after, count = {}, 0.0, 0.0, 0
    for g in groups:
        correlations = [
            sum(
                (
                    m.correlation()
                    for (name, i, _), m in moments.items()
                    if (name, i) == (g.name, index)
                ),
                torch.zeros(g.units, g.units, dtype=torch.float64),
            )
            for index in range(len(g.parts))
        ]
        perms[g.name] = tuple(solve(g, correlations))
        identity = [torch.arange(g.units) for _ in g.parts]
        before += score(correlations, identity)
        after += score(correlations, perms[g.name])
        count += g.units * sum(len(part.sites) for part in g.parts)
    if count == 0 or all(m.count == 0 for m in moments.values()):
        raise LosslandError("activation matching saw no activations: the data gave no batches")
    return Permutation(groups, perms), before / count, after / count
