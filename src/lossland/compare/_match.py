"""Matching B's units to A's: weight matching (Ainsworth et al. 2023, "Git Re-Basin",
Algorithm 1) and activation matching (their §3.1), both through one assignment step per group.

For a group with parts (one, or two for attention heads) and a similarity matrix ``S_p``
(units × units) per part, the best permutation is a linear assignment: for plain groups
``argmax_p Σ_i S[i, p[i]]``; for heads, the best within-head assignment of every pair of heads
(A's head h, B's head h') per part, then the assignment of heads on the sum of those values.
This is exact: given the heads' assignment, the parts' within-head assignments are independent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from lossland.compare._permutation import (
    Axis,
    Group,
    Part,
    Permutation,
    head_structured,
    permute_axis,
    unit_rows,
)

_GAIN = 1e-12  # a new assignment must raise the objective by this fraction of it (ties: keep)


def assignment(similarity: Tensor) -> tuple[Tensor, float]:
    """The permutation ``p`` maximising ``Σ_i S[i, p[i]]`` and that sum (Hungarian algorithm,
    ``scipy.optimize.linear_sum_assignment``)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(similarity.numpy(), maximize=True)
    p = torch.as_tensor(cols, dtype=torch.long)
    return p, float(similarity[torch.as_tensor(rows), p].sum())


def solve(group: Group, similarities: Sequence[Tensor]) -> list[Tensor]:
    """One unit permutation per part: heads (and the dimensions within each) by assignment."""
    heads, size = group.heads, group.head_size
    value = torch.zeros(heads, heads, dtype=torch.float64)
    within: list[dict[tuple[int, int], Tensor]] = [{} for _ in similarities]
    for index, s in enumerate(similarities):
        blocks = s.reshape(heads, size, heads, size)
        for h in range(heads):
            for k in range(heads):
                within[index][h, k], found = assignment(blocks[h, :, k, :])
                value[h, k] += found
    order, _ = assignment(value)
    return [
        head_structured(order, torch.stack([w[h, int(order[h])] for h in range(heads)]))
        for w in within
    ]


def score(similarities: Sequence[Tensor], perms: Sequence[Tensor]) -> float:
    return sum(
        float(s.gather(1, p[:, None]).sum()) for s, p in zip(similarities, perms, strict=True)
    )


class WeightMatching:
    """Algorithm 1: coordinate ascent over the groups, each group's permutation the best given
    the others', until a pass improves nothing. The passes visit the groups in a seeded random
    order, except the first, which goes from the inputs to the outputs (the groups' order): a
    group then meets its input side already aligned, where a random first pass can lock wide
    layers into a matching of each other's unaligned units (a local optimum it never leaves).
    """

    def __init__(
        self, a: Mapping[str, Tensor], b: Mapping[str, Tensor], groups: tuple[Group, ...],
        params: frozenset[str],
    ) -> None:  # fmt: skip
        keys = {ax.key for g in groups for part in g.parts for ax in part.axes} & params
        self.a = {k: a[k].detach().to("cpu", torch.float64) for k in keys}
        self.b = {k: b[k].detach().to("cpu", torch.float64) for k in keys}
        self.groups = groups
        self.perms = {g.name: list(Permutation.identity((g,)).perms[g.name]) for g in groups}
        # Every (group, part, axis) that reorders each tensor.
        self.touching: dict[str, list[tuple[str, int, Axis]]] = {k: [] for k in keys}
        for g in groups:
            for index, part in enumerate(g.parts):
                for axis in part.axes:
                    if axis.key in keys:
                        self.touching[axis.key].append((g.name, index, axis))

    def run(self, *, max_iterations: int, seed: int) -> tuple[Permutation, int]:
        generator = torch.Generator().manual_seed(seed)
        iteration = 0
        for iteration in range(1, max_iterations + 1):
            progress = False
            order = torch.randperm(len(self.groups), generator=generator).tolist()
            if iteration == 1:  # inputs to outputs: each group meets its input side aligned
                order = list(range(len(self.groups)))
            for index in order:
                progress = self._step(self.groups[index]) or progress
            if not progress:
                break
        perms = {name: tuple(ps) for name, ps in self.perms.items()}
        return Permutation(self.groups, perms), iteration

    def _step(self, group: Group) -> bool:
        similarities = [
            self._similarity(group, index, part) for index, part in enumerate(group.parts)
        ]
        old = score(similarities, self.perms[group.name])
        new_perms = solve(group, similarities)
        new = score(similarities, new_perms)
        if new > old + _GAIN * max(abs(old), 1.0):
            self.perms[group.name] = new_perms
            return True
        return False

    def _similarity(self, group: Group, index: int, part: Part) -> Tensor:
        """Σ over the part's axes of A's rows times B's rows (B reordered on every other axis
        by the current permutations): units × units."""
        total = torch.zeros(group.units, group.units, dtype=torch.float64)
        for axis in part.axes:
            if axis.key not in self.a:
                continue  # a buffer (running statistics): moved, never matched
            b = self.b[axis.key]
            for name, other, ax in self.touching[axis.key]:
                if ax != axis:
                    b = permute_axis(b, ax, self.perms[name][other])
            total += (
                unit_rows(self.a[axis.key], axis, group.units) @ unit_rows(b, axis, group.units).T
            )
        return total


def weight_objective(
    a: Mapping[str, Tensor], b: Mapping[str, Tensor], keys: frozenset[str]
) -> float:
    """Σ over ``keys`` of ⟨θ_A, θ_B⟩: what weight matching maximises."""
    return sum(
        float((a[k].detach().double().cpu() * b[k].detach().double().cpu()).sum())
        for k in sorted(keys)
    )
