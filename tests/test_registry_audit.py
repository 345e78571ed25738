"""Registry audit (docs/registry_audit.md): sets added or fixed in the audit, and provenance that says where.

Transcription checks compare each entry with the digits typed from its source in ``tests/published.py``;
the structural checks derive what the source's convention implies (p(x / s) scales c_k by s^-(2k+1); a
relaxed band's maxima; a verdict in the notes recomputed from certified errors).
"""

from __future__ import annotations

import re
from fractions import Fraction
from math import sqrt
from pathlib import Path

import numpy as np
import pytest

from nsiter.analysis import analyze, certified_error
from nsiter.polynomial import OddPolynomial
from nsiter.registry import available_schedules, load_schedule
from tests.published import (
    CANS_5,
    GNS_SAFETY_FACTOR,
    GNS_UNMODIFIED_PE,
    NEMO_CANS,
    NEMO_CUBIC5,
    PE_PRINTED,
    TURBO_MUON,
    TURBO_MUON_V0,
)

ALL = available_schedules()
PUBLISHED = [n for n in ALL if load_schedule(n).provenance.kind in ("paper", "repository", "record")]


def _fr(triple) -> tuple[Fraction, ...]:
    return tuple(Fraction(v) for v in triple)


# ------------------------------------------------------------------------------------ provenance
@pytest.mark.parametrize("name", [n for n in ALL if load_schedule(n).provenance.kind == "repository"])
def test_repository_entries_name_a_file_and_a_commit(name):
    """Every entry read from a repository names its file and a version: a commit, a wheel hash or a merged PR."""
    src = load_schedule(name).provenance.source
    version = r"\b[0-9a-f]{40}\b|sha256 [0-9a-f]{64}\b|pull request #\d+"
    assert re.search(version, src), src
    assert re.search(r"[\w-]+/[\w.-]+ \S+\.(py|rst\.txt|txt)\b", src), src


def test_the_old_turbo_set_is_kept_under_a_name_that_says_what_it_is():
    v0, v1 = load_schedule("turbo-muon-v0-rowscale"), load_schedule("turbo-muon")
    assert [p.exact for p in v0] == [_fr(t) for t in TURBO_MUON_V0]
    assert [p.exact for p in v1] == [_fr(t) for t in TURBO_MUON]
    assert v0.normalization == v1.normalization
    assert "b73111d0" in v0.provenance.source and "cdb03db" in v1.provenance.source


def test_current_turbo_set_keeps_every_singular_value_positive():
    """Unlike the v0 set (p_1(1) < 0), p_1(x)/x = a + b t + c t^2 (t = x^2) has no real root: b^2 < 4ac."""
    a, b, c = _fr(TURBO_MUON[0])
    assert b * b - 4 * a * c < 0 and a > 0
    assert sum(_fr(TURBO_MUON_V0[0])) < 0
    y = np.linspace(0.0, 1.0, 100001)[1:]  # AOL bounds sigma by 1 (Prach & Lampert 2022, Thm 1)
    for p in load_schedule("turbo-muon"):
        y = p(y)
        assert np.all(y > 0)


# --------------------------------------------------------------------- gram-newton-schulz (1.05)
def test_gram_package_starts_from_the_printed_polar_express_list():
    """The package's unmodified coefficients are the first five of Algorithm 1's printed list."""
    assert PE_PRINTED[:5] == GNS_UNMODIFIED_PE
    params = load_schedule("polar-express-gram").provenance.parameters
    assert params["unmodified_coefficients"] == [list(t) for t in GNS_UNMODIFIED_PE]
    assert params["safety_factor"] == GNS_SAFETY_FACTOR == 1.05


def test_gram_polar_express_is_the_package_arithmetic_bit_for_bit():
    s = load_schedule("polar-express-gram")
    f = GNS_SAFETY_FACTOR
    assert [p.coefficients for p in s] == [(a / f, b / f**3, c / f**5) for a, b, c in GNS_UNMODIFIED_PE]
    n = s.normalization
    assert (n.norm, n.scale, n.eps) == ("frobenius", 1.0, 1e-7)
    assert s.restarts == (2,)  # GramNewtonSchulz's default reset before iteration index 2


def test_gram_polar_express_is_p_of_x_over_1_05_on_every_step():
    """Dividing the input by 1.05 scales c_k (the x^(2k+1) coefficient) by 1.05^-(2k+1), the last step included."""
    s = load_schedule("polar-express-gram")
    x = np.linspace(-1.2, 1.2, 2001)
    for p, printed in zip(s, GNS_UNMODIFIED_PE, strict=True):
        q = OddPolynomial(printed)
        np.testing.assert_allclose(p(x), q(x / 1.05), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(p(x), q.scaled_input(1.05)(x), rtol=1e-14, atol=1e-14)
    # so the composed map is the printed one on inputs shrunk by 1.05 before each step: phi(1) < the printed
    printed = [OddPolynomial(t) for t in GNS_UNMODIFIED_PE]
    y = 1.0
    for q in printed:
        y = q(y / 1.05)
    assert s.apply(1.0) == pytest.approx(y, rel=1e-13)


# ------------------------------------------------------------------- NVIDIA Emerging-Optimizers
def test_relaxed_cubic_5_matches_nemo_cubic5():
    s = load_schedule("relaxed-cubic-5")
    assert [p.exact for p in s] == [_fr(t) for t in NEMO_CUBIC5]
    assert all(p.degree == 3 for p in s) and s.matmuls == 10
    n = s.normalization
    assert (n.norm, n.scale, n.eps) == ("frobenius", 1.0, 0.0)


def test_relaxed_cubic_5_steps_peak_at_the_band_top():
    """Each cubic a x + b x^3 (b < 0) peaks at x* = sqrt(-a / 3b) with p(x*) = (2a/3) x* = 1.3, the band top.

    The coefficients are printed to 7 decimals: |delta a|, |delta b| <= 5e-8, and at the stationary point
    p(x*) moves by x* delta a + x*^3 delta b (x* < 1), so the peaks must equal 1.3 within 1e-7.
    """
    for a, b in (tuple(float(v) for v in t) for t in NEMO_CUBIC5):
        x_star = sqrt(-a / (3 * b))
        assert 0 < x_star < 1
        assert abs((2 * a / 3) * x_star - 1.3) < 1e-7


def test_relaxed_cubic_5_maps_its_interval_into_the_relaxed_band():
    """Certified: phi_5([7e-3, 1]) lies inside [0.7, 1.3] (the relaxed band, l0 = 7e-3)."""
    res = analyze(load_schedule("relaxed-cubic-5"), 7e-3, 1.0)
    final = res.bands[-1]
    assert final.lo > 0.7 and final.hi <= 1.3
    # and no tighter band: the top is every step's peak, the bottom about 0.774
    assert final.hi > 1.3 - 1e-7 and final.lo < 0.78


def test_cans_5_nemo_matches_emerging_optimizers():
    s = load_schedule("cans-5-nemo")
    assert [p.exact for p in s] == [_fr(t) for t in NEMO_CANS]
    n = s.normalization
    assert (n.norm, n.scale, n.eps) == ("frobenius", 1.0, 0.0)


def test_cans_5_nemo_is_a_different_set_from_cans_5():
    """Same method, different numbers: no step of the 4-decimal NeMo set is a step of cans-5 rounded to 4 decimals."""
    for nemo, full in zip(NEMO_CANS, CANS_5, strict=True):
        rounded = tuple(round(Fraction(v), 4) for v in full)
        assert _fr(nemo) != rounded
    # yet both are CANS-shaped: a large first slope, then steps close to each other (within 0.12 in a)
    assert abs(float(NEMO_CANS[0][0]) - CANS_5[0][0]) < 0.01
    assert max(abs(float(n[0]) - f[0]) for n, f in zip(NEMO_CANS, CANS_5, strict=True)) < 0.12


# ---------------------------------------------------------------------- search entries (derived)
def _published_at_cost(matmuls: int) -> list[str]:
    return [n for n in PUBLISHED if load_schedule(n).matmuls == matmuls]


@pytest.mark.parametrize("name", [n for n in ALL if re.fullmatch(r"nsiter-\d+step", n)])
def test_search_entry_verdict_against_published_schedules_is_recomputed(name):
    """The notes' comparison with published schedules at equal cost holds for today's registry.

    Every published schedule of the same matmul count is named; those with a lower certified error on
    [1e-3, 1] are named after 'except'; AOL entries (no scalar certificate) are said to have none.
    """
    s = load_schedule(name)
    notes = s.provenance.notes
    params = s.provenance.parameters
    assert len(s) == params["steps"] and all(p.degree == params["degree"] for p in s)
    ours = certified_error(s, *s.normalization.polynomial_interval(params["lo"], params["hi"]))
    same = _published_at_cost(s.matmuls)
    if not same:
        assert f"No published schedule in the registry costs {s.matmuls} matmuls" in notes
    for other in same:
        assert re.search(rf"\b{re.escape(other)}\b(?!-)", notes), (name, other)
        o = load_schedule(other)
        if o.normalization.norm == "aol":
            assert "no scalar certificate" in notes
            continue
        lower = certified_error(o, *o.normalization.polynomial_interval(params["lo"], params["hi"])) < ours
        named_lower = re.search(rf"except {re.escape(other)}\b(?!-)", notes) is not None
        assert named_lower == lower, (name, other)


def test_search_prefixes_agree():
    """Greedy minimax: the k-step winner's first k-1 steps are the 7-step winner's (safety on all but the last)."""
    seven = load_schedule("nsiter-7step")
    for k in range(3, 7):
        s = load_schedule(f"nsiter-{k}step")
        assert [p.coefficients for p in s[: k - 1]] == [p.coefficients for p in seven[: k - 1]], k
    bf16 = load_schedule("nsiter-21mm-bf16")
    seq = bf16.provenance.parameters["sequence"]
    assert [p.degree for p in bf16] == seq and bf16.matmuls == bf16.provenance.parameters["budget"]
    assert [p.coefficients for p in bf16[:5]] == [p.coefficients for p in seven[:5]]


def test_audit_document_quotes_the_certified_errors_the_code_computes():
    """docs/registry_audit.md's certified errors at 15 matmuls (for sigma/||G|| in [1e-3, 1], through each
    schedule's scale) and the two on [1e-3, 1] itself are what ``certified_error`` gives, to the digits quoted."""
    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "registry_audit.md").read_text().split())
    para = text[text.index("Certified worst-case errors for") :]
    para = para[: para.index("(it targets the band")]
    quoted = re.findall(r"`([a-z0-9-]+)`(?: \(10 matmuls\):)? (\d\.\d{4})", para)
    assert len(quoted) == 8, quoted
    for name, value in quoted:
        s = load_schedule(name)
        lo, hi = (1e-3, 1.0) if name == "relaxed-cubic-5" else s.normalization.polynomial_interval(1e-3, 1.0)
        assert f"{certified_error(s, lo, hi):.4f}" == value, name
    itself = re.search(r"on \[1e-3, 1\] itself it has (\d\.\d{4})", para).group(1)
    assert f"{certified_error('polar-express-5', 1e-3, 1.0):.4f}" == itself
