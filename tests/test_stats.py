"""Paired statistics against their closed forms."""

from __future__ import annotations

import math

import pytest

from nsiter.stats import mean_and_se, paired_difference


def test_mean_and_standard_error_closed_form():
    # values 1, 2, 3, 6: mean 3, sample variance (4 + 1 + 0 + 9) / 3 = 14/3, se = sqrt(14/3) / 2
    mean, se = mean_and_se([1, 2, 3, 6])
    assert mean == 3.0 and se == pytest.approx(math.sqrt(14 / 3) / 2, rel=1e-15)
    assert mean_and_se([0.25]) == (0.25, 0.0)
    assert mean_and_se([1.0, math.inf]) == (math.inf, math.inf)  # a diverged run is not averaged away
    with pytest.raises(ValueError, match="at least one"):
        mean_and_se([])


def test_pairing_removes_the_shared_variation():
    """Two arms that differ by exactly 0.5 on every pair: the paired se is 0 although each arm varies."""
    a = {s: 10.0 * s + 0.5 for s in range(5)}
    b = {s: 10.0 * s for s in range(5)}
    d = paired_difference(a, b)
    assert (d.n, d.mean, d.se, d.median, d.min, d.max) == (5, 0.5, 0.0, 0.5, 0.5, 0.5)
    assert mean_and_se(a.values())[1] > 1  # unpaired, the same difference is lost in the spread


def test_only_complete_pairs_count_and_ints_stay_ints():
    d = paired_difference({0: 7, 1: None, 2: 5, 3: 4}, {0: 3, 1: 2, 2: 6})
    assert (d.n, d.median, d.min, d.max) == (2, 1.5, -1, 4)
    assert isinstance(d.min, int)
    assert paired_difference({0: None}, {0: 1}) is None


def test_verdict_is_the_named_two_standard_error_rule():
    """Differences 1, 2, 3, 6 (mean 3, se sqrt(14/3)/2 = 1.0801): 3 > 2 se, so significant; the same values
    shifted to mean 2 (2 < 2 se = 2.1602) are not; the sign decides lower/higher."""
    zero = dict.fromkeys(range(4), 0.0)
    d = paired_difference(dict(enumerate([1.0, 2.0, 3.0, 6.0])), zero)
    assert d.verdict() == "higher" and d.verdict(threshold=2.7) == "higher"  # 3 > 2.7 se = 2.916
    assert d.verdict(threshold=2.8) == "no significant difference"  # 3 < 2.8 se = 3.024
    assert (
        paired_difference(zero, dict(enumerate([0.0, 1.0, 2.0, 5.0]))).verdict()
        == "no significant difference"
    )
    assert paired_difference(zero, dict(enumerate([1.0, 2.0, 3.0, 6.0]))).verdict() == "lower"
    assert paired_difference({0: 1.5, 1: 2.5}, {0: 1.0, 1: 2.0}).verdict() == "higher"  # se 0, mean 0.5
    assert paired_difference({0: 1.0}, {0: 1.0}).verdict() == "no significant difference"
    with pytest.raises(ValueError, match="non-finite"):
        paired_difference({0: 1.0, 1: 2.0}, {0: math.inf, 1: 1.0}).verdict()
    with pytest.raises(ValueError, match="threshold"):
        d.verdict(threshold=0)
