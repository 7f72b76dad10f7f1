"""Anytime-valid statistics: confidence sequences that stay valid however often the gate looks.

A release gate looks at its evidence many times: the probation sensor every poll, and the shadow
gate whenever it is asked. A fixed-sample 95 % interval checked at every look is wrong far more
than 5 % of the time over the whole run (with 20 looks a true null is "shown" in roughly a quarter
of runs). A *confidence sequence* (CS) is a sequence of intervals that covers the true value at
every sample size simultaneously with probability ≥ 1 − α, so stopping at the first look that
decides keeps the error at α.

We use the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas,
"Time-uniform central limit theory and asymptotic confidence sequences" (Annals of Statistics,
2024; arXiv:2103.06476, Theorem 2.2), the Gaussian-mixture boundary of Robbins applied to a
sample mean with an estimated standard deviation σ̂ₜ:

    μ̂ₜ ± σ̂ₜ · sqrt( 2(tρ² + 1) / (t²ρ²) · log( sqrt(tρ² + 1) / α ) )

ρ > 0 tunes where the sequence is tightest; ρ² = (−2 log α + log(1 − 2 log α)) / t* makes it
tightest near t = t* (their Appendix B.2). We set t* to the sample size the policy plans for, so
the interval is narrowest where decisions are expected.

The estimators here are means of per-event terms, or asymptotically linear in them: ΔAP is
approximated by the mean of its per-event influence-function values (:func:`ap_influence`), which
also gives its standard error in O(n log n), without a bootstrap. The tests check the boundary
against the paper's formula, the influence-function standard error against a bootstrap, and
time-uniform coverage by simulation (fixed intervals peeked at fail; the sequence does not).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def rho_squared(t_opt: float, alpha: float) -> float:
    """ρ² that makes the two-sided boundary tightest near ``t_opt`` observations."""
    if t_opt <= 0:
        raise ValueError(f"t_opt must be > 0, got {t_opt}")
    la = -2.0 * math.log(alpha)
    return (la + math.log(1.0 + la)) / t_opt


def cs_multiplier(t: float, *, alpha: float, t_opt: float) -> float:
    """The factor ``m`` with radius = m · σ̂ / sqrt(t): the Gaussian-mixture boundary at ``t``.

    (A fixed-sample 95 % interval would use m = 1.96; the sequence pays about 3.0 at ``t_opt`` for
    being valid at every t.)
    """
    if t <= 0:
        return math.inf
    r2 = rho_squared(t_opt, alpha)
    tr = t * r2
    return math.sqrt(2.0 * (tr + 1.0) / tr * math.log(math.sqrt(tr + 1.0) / alpha))


def cs_radius(sd: float, t: float, *, alpha: float, t_opt: float) -> float:
    """Half-width of the confidence sequence of a mean of ``t`` terms with standard deviation ``sd``."""
    if t <= 0 or not math.isfinite(sd):
        return math.inf
    return sd * cs_multiplier(t, alpha=alpha, t_opt=t_opt) / math.sqrt(t)


@dataclass(frozen=True)
class SequentialEstimate:
    """A point estimate with its fixed-sample interval (for reading) and its confidence sequence
    (for deciding)."""

    estimate: float
    #: Standard error of the estimate (σ̂ / sqrt(t)).
    se: float
    #: Number of terms the estimate is a mean of.
    t: int
    #: Fixed-sample interval at the same α (shown to people; not used to decide).
    ci: tuple[float, float]
    #: Confidence sequence: valid at every look (used to decide).
    cs: tuple[float, float]
    alpha: float
    t_opt: float

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["ci"], doc["cs"] = list(self.ci), list(self.cs)
        return doc


def sequential_mean(
    terms: np.ndarray, *, alpha: float, t_opt: float, estimate: float | None = None
) -> SequentialEstimate:
    """CS for the mean of i.i.d. ``terms`` (or for an asymptotically linear estimator ``estimate``
    whose influence-function values are ``terms``: then ``terms`` should have mean ≈ 0)."""
    from statistics import NormalDist

    import numpy as np

    x = np.asarray(terms, dtype=np.float64)
    t = len(x)
    point = float(x.mean()) if estimate is None else float(estimate)
    if t < 2:
        return SequentialEstimate(
            point, math.inf, t, (-math.inf, math.inf), (-math.inf, math.inf), alpha, t_opt
        )
    sd = float(x.std(ddof=1))
    se = sd / math.sqrt(t)
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    r = cs_radius(sd, t, alpha=alpha, t_opt=t_opt)
    return SequentialEstimate(
        point, se, t, (point - z * se, point + z * se), (point - r, point + r), alpha, t_opt
    )


def average_precision(scores: np.ndarray, y: np.ndarray) -> float:
    """Average precision, scikit-learn's definition (ties share a threshold)."""
    ap, _ = _ap_and_influence(scores, y, influence=False)
    return ap


def ap_influence(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """(AP, per-event influence-function values) with ``AP ≈ AP_true + mean(influence)``.

    AP as a functional: with π = P(Y=1), F(s) = P(S ≥ s), G(s) = P(Y=1, S ≥ s),
    AP = E[Y · G(S)/F(S)] / π (precision at each fraud's own score, averaged over frauds). Its
    influence function at an event (y, s) is

        IF(y, s) = (y/π)·(G(s)/F(s) − AP + A(s)) − B(s)/π,
        A(s) = E[Y·1{S ≤ s} / F(S)],   B(s) = E[Y·G(S)·1{S ≤ s} / F(S)²],

    from differentiating the three places the distribution enters (the outer mean, G and F).
    Everything is evaluated at the empirical distribution with cumulative sums over the distinct
    score levels: O(n log n). The paired difference of two models on the same events is the
    difference of their influence values, row by row.
    """
    return _ap_and_influence(scores, y, influence=True)  # type: ignore[return-value]


def _ap_and_influence(
    scores: np.ndarray, y: np.ndarray, *, influence: bool
) -> tuple[float, np.ndarray | None]:
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    n = len(s)
    n_pos = float(yy.sum())
    if n == 0 or n_pos == 0:
        raise ValueError(f"average precision needs at least one fraud (rows={n}, frauds={n_pos:g})")
    levels, inverse = np.unique(s, return_inverse=True)  # ascending
    count = np.bincount(inverse, minlength=len(levels)).astype(np.float64)
    pos = np.bincount(inverse, weights=yy, minlength=len(levels))
    # F, G at each level: share of events (frauds) with score >= level (suffix sums).
    f = np.cumsum(count[::-1])[::-1] / n
    g = np.cumsum(pos[::-1])[::-1] / n
    prec = g / f
    ap = float((pos * prec).sum() / n_pos)
    if not influence:
        return ap, None
    pi = n_pos / n
    a = np.cumsum(pos / f) / n  # A at each level: frauds at or below it
    b = np.cumsum(pos * g / (f * f)) / n
    at = inverse
    infl = (yy / pi) * (prec[at] - ap + a[at]) - b[at] / pi
    return ap, infl


@dataclass(frozen=True)
class PairedAP:
    """AP of two models on the same events and the confidence sequence of their difference."""

    ap_candidate: float
    ap_incumbent: float
    delta: SequentialEstimate
    #: Standard deviation of the per-event influence of ΔAP scaled to one fraud (σ · sqrt(π)):
    #: the number the sample-size formula needs (``GatePolicy.ap_delta_sd_per_fraud``).
    sd_per_fraud: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "ap_candidate": self.ap_candidate,
            "ap_incumbent": self.ap_incumbent,
            "delta": self.delta.to_dict(),
            "sd_per_fraud": self.sd_per_fraud,
        }


def paired_ap(
    y: np.ndarray, incumbent: np.ndarray, candidate: np.ndarray, *, alpha: float, t_opt: float
) -> PairedAP:
    """ΔAP (candidate − incumbent) on the same events with its confidence sequence."""
    import numpy as np

    ap_i, inf_i = ap_influence(incumbent, y)
    ap_c, inf_c = ap_influence(candidate, y)
    d = inf_c - inf_i
    est = sequential_mean(d, alpha=alpha, t_opt=t_opt, estimate=ap_c - ap_i)
    pi = float(np.mean(y))
    sd = float(np.std(d, ddof=1)) if len(d) > 1 else math.inf
    return PairedAP(ap_c, ap_i, est, sd * math.sqrt(pi))
