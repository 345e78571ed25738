"""Paired comparisons of measured runs: the statistics nsiter reports next to measured errors.

Two schedules (or optimizers) run on the *same* matrices (or seeds) give paired observations; their
per-pair differences ``d_i = a_i - b_i`` remove the variation the pairs share, so a difference too small to
see in two separate means can be clear in the paired one (Student 1908; any statistics text, e.g.
Wasserman, *All of Statistics*, 2004, sec. 10.7).  Reported: the mean difference with its standard error
``sd(d) / sqrt(n)`` (``ddof = 1``), and the median and range, which do not assume a distribution.

A verdict on such a difference names its rule: :meth:`PairedDifference.verdict` calls a difference
significant when ``|mean| > k se`` with ``k = SIGNIFICANCE_SE = 2`` standard errors (for the 30 to 100 pairs
of nsiter's comparisons about the two-sided 5% level of the paired t-test, whose critical value is 2.04 at
30 pairs and 1.98 at 100), and says "no significant difference" otherwise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["SIGNIFICANCE_SE", "PairedDifference", "mean_and_se", "paired_difference"]

SIGNIFICANCE_SE = 2.0  # a paired difference is significant when |mean| > 2 standard errors


def mean_and_se(values: Iterable[float]) -> tuple[float, float]:
    """``(mean, standard error of the mean)``; the error is 0 for a single value and both are ``inf`` when any
    value is (a diverged run makes the mean infinite, not silently smaller)."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("mean_and_se needs at least one value")
    if any(not math.isfinite(x) for x in v):
        return math.inf, math.inf
    if len(v) == 1:
        return v[0], 0.0
    return statistics.fmean(v), statistics.stdev(v) / math.sqrt(len(v))


@dataclass(frozen=True)
class PairedDifference:
    """Differences ``a_i - b_i`` over the pairs both sides have: count, mean with standard error, median, range."""

    n: int
    mean: float
    se: float
    median: float
    min: float
    max: float

    def verdict(self, threshold: float = SIGNIFICANCE_SE) -> str:
        """``"lower"`` (``a < b``), ``"higher"`` or ``"no significant difference"``, by ``|mean| > threshold se``.

        A difference equal on every pair (``se = 0``) is significant unless it is 0.  A non-finite mean (a
        run that diverged on one side) has no verdict: ``ValueError``.
        """
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not 0 < threshold < math.inf
        ):
            raise ValueError(f"threshold must be a positive number of standard errors, got {threshold!r}")
        if not (math.isfinite(self.mean) and math.isfinite(self.se)):
            raise ValueError(f"no verdict on a non-finite paired difference (mean {self.mean}, se {self.se})")
        if abs(self.mean) <= threshold * self.se or self.mean == 0:
            return "no significant difference"
        return "lower" if self.mean < 0 else "higher"


def paired_difference(
    a: Mapping[Hashable, float | None], b: Mapping[Hashable, float | None]
) -> PairedDifference | None:
    """``a - b`` over the keys (matrix, seed, ...) present in both with values that are not ``None``.

    Returns ``None`` when no pair is complete.
    """
    d = [a[k] - b[k] for k in a if k in b and a[k] is not None and b[k] is not None]  # ints stay ints
    if not d:
        return None
    mean, se = mean_and_se(d)
    return PairedDifference(len(d), mean, se, statistics.median(d), min(d), max(d))
