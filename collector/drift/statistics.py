"""Two-sample drift tests with calibrated p-values, and the rule that turns repeated tests into events.

Pure functions over numpy arrays; no state, no I/O, safe from any thread.

Embeddings: :func:`two_sample_test` is a kernel two-sample test (MMD with a Gaussian RBF kernel whose
bandwidth is the median pairwise squared distance of the pooled sample) with a permutation p-value.
The permutation p-value ``(1 + #{permuted >= observed}) / (1 + permutations)`` is exact under the null
hypothesis that reference and current spans are exchangeable (no drift), whatever the embedding
dimension, window sizes or data distribution, which is why it is used instead of a fixed distance
threshold. The bandwidth is a symmetric function of the pooled sample, so it does not break that
exactness. The pooled kernel matrix is computed once; a permutation is an indicator vector, and the
statistic of a block of permutations is one matrix product with that block.

Numbers: :func:`ks_test` (Kolmogorov-Smirnov, p-value from scipy; conservative with ties, such as token
counts), :func:`wasserstein` (effect size in units of the reference's spread) and
:func:`population_stability_index` for dashboards (PSI has no p-value and is never used for decisions).
Categories: :func:`chi_squared_test` on the 2×C contingency table (Monte Carlo conditional p-value
when expected counts are small).

Repeated testing: see :class:`AlarmRule`.

>>> rng = np.random.default_rng(0)
>>> same = two_sample_test(rng.normal(size=(50, 8)), rng.normal(size=(50, 8)), alpha=0.05, seed=1)
>>> shifted = two_sample_test(rng.normal(size=(50, 8)), rng.normal(1.0, size=(50, 8)), alpha=0.05, seed=1)
>>> same.drifted, shifted.drifted
(False, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = [
    "AlarmRule",
    "AlarmTracker",
    "DriftResult",
    "Transition",
    "chi_squared_test",
    "ks_test",
    "population_stability_index",
    "population_stability_index_categorical",
    "two_sample_test",
    "wasserstein",
]

FloatArray = npt.NDArray[np.floating]

# Permutations are evaluated in blocks; the first block is small so that a clear no-drift window
# (the common case) stops after it, see _stop_early.
_FIRST_BLOCK = 64
_BLOCK = 256


@dataclass(frozen=True, slots=True)
class DriftResult:
    """One test of a current window against the reference.

    ``score`` is the test statistic (MMD², KS D, Cramér's V), ``p_value`` its p-value and ``drifted``
    whether ``p_value <= alpha`` at the level the test was called with.
    """

    score: float
    p_value: float
    drifted: bool


def _as_matrix(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float32]:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d array (samples × dimensions), got shape {array.shape}")
    if array.shape[0] < 2:
        raise ValueError(f"{name}: expected at least 2 samples, got {array.shape[0]}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: expected finite values")
    return array


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: expected a level between 0 and 1, got {alpha!r}")


def two_sample_test(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    alpha: float,
    seed: int,
    permutations: int = 499,
) -> DriftResult:
    """MMD² (RBF kernel, median heuristic) of ``current`` against ``reference``, permutation p-value.

    ``reference`` is n×d and ``current`` m×d (n, m ≥ 2). ``score`` is the unbiased MMD² estimate
    (about 0 without drift, may be slightly negative). The test is exact at level ``alpha`` for any
    ``permutations``; more permutations give more power at small ``alpha`` (the smallest attainable
    p-value is ``1 / (permutations + 1)``, so keep ``permutations >= 2 / alpha``). Permutations stop
    early once the p-value is certain to exceed ``alpha``; the decision is then the same as with all
    of them and the reported p-value is the (valid) one of the permutations run. Deterministic for a
    given ``seed``. Raises ``ValueError`` on shapes that do not match or non-finite values.
    """
    _check_alpha(alpha)
    if permutations < 1:
        raise ValueError(f"permutations: expected at least 1, got {permutations}")
    x = _as_matrix(reference, "reference")
    y = _as_matrix(current, "current")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"expected the same dimension, got {x.shape[1]} (reference) and {y.shape[1]} (current)"
        )
    n, m = x.shape[0], y.shape[0]
    kernel = _rbf_kernel(np.vstack((x, y)))
    row_sums = kernel.sum(axis=1, dtype=np.float64)
    total = float(row_sums.sum())

    def mmd(s_xx: npt.NDArray[np.float64], r_x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        # Sums of kernel blocks from the reference block sum and the reference rows' sums (see module doc).
        s_xy = r_x - s_xx
        s_yy = total - 2.0 * r_x + s_xx
        value: npt.NDArray[np.float64] = (
            (s_xx - n) / (n * (n - 1)) + (s_yy - m) / (m * (m - 1)) - 2.0 * s_xy / (n * m)
        )
        return value

    rng = np.random.default_rng(seed)
    labels = np.zeros(n + m, dtype=np.float32)
    labels[:n] = 1.0
    # Column 0 is the observed labelling, so the observed statistic is computed exactly as the
    # permuted ones are (no rounding difference between the two).
    observed: float | None = None
    exceed = 0
    done = 0
    block = _FIRST_BLOCK
    while done < permutations:
        size = min(block, permutations - done)
        indicators = rng.permuted(np.tile(labels, (size + (observed is None), 1)), axis=1).T
        if observed is None:
            indicators[:, 0] = labels
        projected = kernel @ indicators
        s_xx = np.einsum("ij,ij->j", indicators, projected, dtype=np.float64)
        r_x = row_sums @ indicators.astype(np.float64)
        values = mmd(s_xx, r_x)
        if observed is None:
            observed = float(values[0])
            values = values[1:]
        exceed += int(np.count_nonzero(values >= observed - 1e-9 * max(1.0, abs(observed))))
        done += size
        if _stop_early(exceed, permutations, alpha):
            break
        block = _BLOCK
    assert observed is not None
    p_value = (exceed + 1) / (done + 1)
    return DriftResult(score=observed, p_value=p_value, drifted=p_value <= alpha)


def _stop_early(exceed: int, permutations: int, alpha: float) -> bool:
    """True once ``(exceed + 1) / (permutations + 1) > alpha`` whatever the remaining permutations give."""
    return exceed + 1 > alpha * (permutations + 1)


def _rbf_kernel(pooled: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """exp(-‖a-b‖² / h) over the pooled sample, h the median squared distance between distinct points."""
    norms = np.einsum("ij,ij->i", pooled, pooled)
    squared: npt.NDArray[np.float32] = norms[:, None] + norms[None, :] - 2.0 * (pooled @ pooled.T)
    np.maximum(squared, 0.0, out=squared)
    np.fill_diagonal(squared, 0.0)
    size = pooled.shape[0]
    # Median over distinct pairs: the full matrix holds each pair twice and `size` zeros on the diagonal,
    # which sort first, so the pair median sits at this order statistic of the flattened matrix.
    kth = size + (size * (size - 1)) // 2
    flat = squared.ravel().copy()
    bandwidth = float(np.partition(flat, kth)[kth])
    if not bandwidth > 0.0:
        # Most points coincide: fall back to the mean distance, or 1 when all are equal (kernel all ones).
        mean = float(flat.mean())
        bandwidth = mean if mean > 0.0 else 1.0
    squared *= np.float32(-1.0 / bandwidth)
    np.exp(squared, out=squared)
    return squared


def _as_vector(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[np.isfinite(array)]
    if array.size < 1:
        raise ValueError(f"{name}: expected at least one finite value")
    return array


def ks_test(reference: npt.ArrayLike, current: npt.ArrayLike, *, alpha: float) -> DriftResult:
    """Two-sample Kolmogorov-Smirnov test; ``score`` is the KS distance D in [0, 1].

    Non-finite values are dropped. With ties (integer counts) the p-value is conservative: the false
    alarm rate is at most ``alpha``.
    """
    _check_alpha(alpha)
    ref = _as_vector(reference, "reference")
    cur = _as_vector(current, "current")
    result = stats.ks_2samp(ref, cur, alternative="two-sided", method="auto")
    p_value = float(result.pvalue)
    return DriftResult(score=float(result.statistic), p_value=p_value, drifted=p_value <= alpha)


def wasserstein(reference: npt.ArrayLike, current: npt.ArrayLike, *, normalise: bool = True) -> float:
    """Earth mover's distance between the two samples; divided by the reference's standard deviation
    when ``normalise`` (0 when the reference is constant and the current equals it)."""
    ref = _as_vector(reference, "reference")
    cur = _as_vector(current, "current")
    distance = float(stats.wasserstein_distance(ref, cur))
    if not normalise:
        return distance
    spread = float(ref.std())
    if spread > 0.0:
        return distance / spread
    return 0.0 if distance == 0.0 else math.inf


def chi_squared_test(
    reference: Mapping[str, int],
    current: Mapping[str, int],
    *,
    alpha: float,
    seed: int = 0,
    min_expected: float = 5.0,
    resamples: int | None = None,
) -> DriftResult:
    """Chi-squared test of homogeneity of two category counts; ``score`` is Cramér's V in [0, 1].

    When every expected cell count is at least ``min_expected`` the p-value is scipy's asymptotic
    one. Otherwise (a rare or brand-new category: an error type that was absent from the reference)
    the asymptotic p-value is unreliable, and pooling rare categories would hide exactly that change,
    so the p-value is a Monte Carlo conditional one: ``resamples`` draws (default ``20 / alpha``, at
    least 999) of the current sample's counts from the pooled counts (multivariate hypergeometric, i.e.
    the table's margins fixed, as in Fisher's exact test), valid at any sample size. One category in
    all means nothing to compare: p-value 1.
    """
    _check_alpha(alpha)
    keys = sorted(
        k for k in set(reference) | set(current) if reference.get(k, 0) > 0 or current.get(k, 0) > 0
    )
    ref = np.array([max(0, reference.get(k, 0)) for k in keys], dtype=np.int64)
    cur = np.array([max(0, current.get(k, 0)) for k in keys], dtype=np.int64)
    n_ref, n_cur = int(ref.sum()), int(cur.sum())
    if n_ref <= 0 or n_cur <= 0:
        raise ValueError("expected at least one count in each sample")
    if len(keys) < 2:
        return DriftResult(score=0.0, p_value=1.0, drifted=False)
    column = ref + cur
    total = n_ref + n_cur
    observed = _chi_squared(cur[None, :], column, n_cur, total)[0]
    cramer_v = math.sqrt(observed / total)
    if float(column.min()) * min(n_ref, n_cur) / total >= min_expected:
        p = float(stats.chi2.sf(observed, len(keys) - 1))
    else:
        draws = resamples or max(999, math.ceil(20.0 / alpha))
        rng = np.random.default_rng(seed)
        simulated = rng.multivariate_hypergeometric(column, n_cur, size=draws)
        exceed = int(np.count_nonzero(_chi_squared(simulated, column, n_cur, total) >= observed * (1 - 1e-9)))
        p = (exceed + 1) / (draws + 1)
    return DriftResult(score=cramer_v, p_value=p, drifted=p <= alpha)


def _chi_squared(
    current_rows: npt.NDArray[np.int64], column: npt.NDArray[np.int64], n_cur: int, total: int
) -> npt.NDArray[np.float64]:
    """Pearson's statistic of 2 × C tables given by their current rows and the fixed column totals."""
    expected_cur = column * (n_cur / total)
    expected_ref = column - expected_cur
    current = current_rows.astype(np.float64)
    reference = column - current
    value: npt.NDArray[np.float64] = ((current - expected_cur) ** 2 / expected_cur).sum(axis=1) + (
        (reference - expected_ref) ** 2 / expected_ref
    ).sum(axis=1)
    return value


_PSI_FLOOR = 1e-4  # share given to an empty bin, so that log(0) never happens; the usual convention


def population_stability_index(reference: npt.ArrayLike, current: npt.ArrayLike, *, bins: int = 10) -> float:
    """PSI over bins at the reference's quantiles: Σ (c - r) ln(c / r); about 0.1 is often read as a
    moderate and 0.25 as a large shift. For dashboards only: it has no calibrated false-alarm rate."""
    ref = _as_vector(reference, "reference")
    cur = _as_vector(current, "current")
    edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1) / ref.size
    cur_share = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=edges.size + 1) / cur.size
    return _psi(ref_share, cur_share)


def population_stability_index_categorical(reference: Mapping[str, int], current: Mapping[str, int]) -> float:
    """PSI of two category counts (see :func:`population_stability_index`)."""
    keys = sorted(set(reference) | set(current))
    ref = np.array([reference.get(k, 0) for k in keys], dtype=np.float64)
    cur = np.array([current.get(k, 0) for k in keys], dtype=np.float64)
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError("expected at least one count in each sample")
    return _psi(ref / ref.sum(), cur / cur.sum())


def _psi(ref_share: npt.NDArray[np.float64], cur_share: npt.NDArray[np.float64]) -> float:
    r = np.maximum(ref_share, _PSI_FLOOR)
    c = np.maximum(cur_share, _PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """How repeated window tests become drift events, with a false-event rate the user sets.

    ``alpha`` is the probability that, without drift, a given window decision starts a drift event.
    An event needs ``consecutive`` alarms in a row (k); drift ends after k clear windows in a row.

    - **Tumbling windows** (disjoint): each window is tested at ``alpha ** (1 / k)`` against one of
      k disjoint **folds** of the reference, in rotation (:meth:`fold`). Any k consecutive tests then
      share no data at all, neither window nor reference values, so without drift (spans exchangeable
      over time) they are independent, and k alarms in a row have probability at most
      ``(alpha ** (1 / k)) ** k = alpha``: exactly for the permutation test and the Monte Carlo
      chi-squared p-value, at most for KS with ties, approximately for asymptotic chi-squared. Testing every window against the whole reference instead would
      make consecutive tests positively correlated (an unusual reference makes every window look
      drifted) and the product rule would not hold.
    - **Sliding windows** overlap, so neighbouring tests are strongly dependent and the product rule
      does not hold. Each window is tested at ``alpha`` itself: an event at a decision needs an alarm
      at that decision, so the rate stays at most ``alpha`` under any dependence (conservative).
    - ``signals`` > 1 (Bonferroni across the signals of one group): the level is divided by the
      number of signals tested, so ``alpha`` bounds the event rate of the whole group, not of each
      signal.
    """

    alpha: float = 0.01
    consecutive: int = 2
    disjoint_windows: bool = True
    signals: int = 1

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)
        if self.consecutive < 1:
            raise ValueError(f"consecutive: expected at least 1, got {self.consecutive}")
        if self.signals < 1:
            raise ValueError(f"signals: expected at least 1, got {self.signals}")

    @property
    def test_alpha(self) -> float:
        """The level each single window test runs at."""
        per_signal = self.alpha / self.signals
        if self.disjoint_windows:
            return float(per_signal ** (1.0 / self.consecutive))
        return per_signal

    def fold(self, decision: int) -> tuple[int, int]:
        """``(start, stride)``: the reference rows ``reference[start::stride]`` that window number
        ``decision`` (0, 1, 2, ...) is tested against; the whole reference unless the rule needs folds."""
        if not self.disjoint_windows or self.consecutive == 1:
            return 0, 1
        return decision % self.consecutive, self.consecutive

    def permutations_for(self, minimum: int = 199) -> int:
        """Permutations a permutation test needs to reach ``test_alpha`` with room for power:
        at least 20 / ``test_alpha`` − 1, rounded to a multiple of 100 minus 1."""
        needed = math.ceil(20.0 / self.test_alpha / 100.0) * 100 - 1
        return max(minimum, needed)


class Transition(StrEnum):
    """What one decision did to the drift state."""

    NONE = "none"
    STARTED = "started"
    ENDED = "ended"


class AlarmTracker:
    """The 0/1 drift state of one signal of one group under an :class:`AlarmRule`.

    Not thread safe: one owner calls :meth:`update` once per window decision.
    """

    __slots__ = ("_clear_run", "_hit_run", "drifted", "rule")

    def __init__(self, rule: AlarmRule, drifted: bool = False) -> None:
        self.rule = rule
        self.drifted = drifted
        self._hit_run = 0
        self._clear_run = 0

    def update(self, alarm: bool) -> Transition:
        """Record one window decision; return whether it started or ended a drift event."""
        if alarm:
            self._hit_run += 1
            self._clear_run = 0
            if not self.drifted and self._hit_run >= self.rule.consecutive:
                self.drifted = True
                return Transition.STARTED
        else:
            self._clear_run += 1
            self._hit_run = 0
            if self.drifted and self._clear_run >= self.rule.consecutive:
                self.drifted = False
                return Transition.ENDED
        return Transition.NONE
