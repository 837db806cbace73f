"""How an uncertainty is computed: one place for every ``±`` lossland prints.

* A mean over n independent replicates (Hutchinson probes, Lanczos-quadrature probes) has
  the standard error s/√n, but s is itself estimated from n values: the interval that covers
  the truth 95 % of the time is ``mean ± t₀.₉₇₅(n − 1)·s/√n``, not ``± 2·SE`` (with 10 probes
  |z| > 3 happens 1.5 % of the time, not 0.27 %). :func:`interval` gives that half-width and
  :func:`plus_minus` prints it with the level and the degrees of freedom.
* A difference of two losses computed on the same samples (a barrier: saddle − minimum) has
  the *paired* standard error of the per-sample differences, not √(SE₁² + SE₂²): the samples'
  own difficulty cancels. :func:`paired_se` computes it from per-unit sums and weights.
"""

from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95  # the coverage every printed interval aims at


def t_quantile(dof: int, level: float = LEVEL) -> float:
    """The two-sided Student-t quantile t_{(1+level)/2}(dof); inf for dof < 1."""
    if dof < 1:
        return math.inf
    from scipy.stats import t  # lazy: scipy is heavy to import

    return float(t.ppf((1 + level) / 2, dof))


def interval(se: float, n: int, level: float = LEVEL) -> float:
    """Half-width of the ``level`` interval of a mean of n replicates with standard error
    ``se`` (estimated from those replicates): t(n − 1)·se; NaN when n < 2 or se is NaN."""
    if n < 2 or not math.isfinite(se):
        return math.nan
    return t_quantile(n - 1, level) * se


def plus_minus(value: float, se: float, n: int, *, fmt: str = ".4g", level: float = LEVEL) -> str:
    """``value ± half-width (95 %, t, n−1 df)``; just the value when n < 2 or se is NaN."""
    half = interval(se, n, level)
    if math.isnan(half):
        return format(value, fmt)
    return f"{value:{fmt}} ± {half:.2g} ({level:.0%} interval, t with {n - 1} df; SE {se:.2g})"


def paired_se(
    sums_a: np.ndarray, counts_a: np.ndarray, sums_b: np.ndarray, counts_b: np.ndarray
) -> float:
    """Standard error of mean_b − mean_a, each a weighted mean Σs/Σn over the same m units
    (sums (m,), counts (m,) per unit, in the same order at both points).

    Linearised as for a ratio estimator: unit u contributes r_u = (s_bu − mean_b·n_bu)/N_b −
    (s_au − mean_a·n_au)/N_a, and SE² = m/(m − 1)·Σ r_u². With unit weights this is the SE
    of the per-sample differences. NaN with fewer than two units."""
    a_s, a_n = np.asarray(sums_a, float), np.asarray(counts_a, float)
    b_s, b_n = np.asarray(sums_b, float), np.asarray(counts_b, float)
    m = len(a_s)
    if m < 2 or a_s.shape != b_s.shape or a_n.shape != b_n.shape:
        return math.nan
    na, nb = float(a_n.sum()), float(b_n.sum())
    ra = (a_s - a_s.sum() / na * a_n) / na  # (m,) each unit's share of mean_a's deviation
    rb = (b_s - b_s.sum() / nb * b_n) / nb
    return math.sqrt(m / (m - 1) * float(np.sum((rb - ra) ** 2)))


def share_upper(k: int, n: int, level: float = LEVEL) -> float | None:
    """One-sided ``level`` upper bound (Clopper–Pearson) on a share of which a random sample
    of n showed k (e.g. 0 of 45 sampled points off by more than tol: below 6.4 %); None for
    n = 0."""
    if n < 1:
        return None
    if k >= n:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(level, k + 1, n - k))
