"""Check builders: one rule applied to numbers already computed, returning a GateCheck with its reason.

Kept free of arrays and policy loading so each rule's wording and edge cases (undefined metric, CI crossing
zero, a pass too close to its bound) live in one place and are tested through the decision.
"""

from __future__ import annotations

from pipelines.gate.policy import Bounds, ChangeRule, RegressionLimit
from pipelines.gate.report import CheckKind, GateCheck, format_number


def bound_check(
    *,
    name: str,
    kind: CheckKind,
    metric: str,
    value: float | None,
    bounds: Bounds | None,
    slice_name: str | None = None,
    baseline: float | None = None,
    undefined_reason: str | None = None,
    approval_margin: float | None = None,
) -> GateCheck:
    """Value within [min, max]. No bounds: reported as info. Passing by less than `approval_margin`: review."""
    fields = {
        "name": name,
        "kind": kind,
        "metric": metric,
        "slice": slice_name,
        "value": value,
        "baseline": baseline,
        "delta": None if value is None or baseline is None else value - baseline,
    }
    if value is None:
        return GateCheck(**fields, verdict="fail", reason=f"{metric} is undefined: {undefined_reason}.")
    if bounds is None:
        reason = f"{metric} = {format_number(value)}; the policy sets no bound."
        return GateCheck(**fields, verdict="info", reason=reason)
    if bounds.min is not None and value < bounds.min:
        reason = f"{metric} = {format_number(value)} is below its minimum {format_number(bounds.min)}."
        return GateCheck(**fields, threshold=bounds.min, verdict="fail", reason=reason)
    if bounds.max is not None and value > bounds.max:
        reason = f"{metric} = {format_number(value)} is above its maximum {format_number(bounds.max)}."
        return GateCheck(**fields, threshold=bounds.max, verdict="fail", reason=reason)
    sides = [(value - bounds.min, "minimum", bounds.min)] if bounds.min is not None else []
    sides += [(bounds.max - value, "maximum", bounds.max)] if bounds.max is not None else []
    margin, side, threshold = min(sides)
    if approval_margin is not None and margin < approval_margin:
        reason = (
            f"{metric} = {format_number(value)} passes its {side} {format_number(threshold)} "
            f"by only {format_number(margin)}, within the approval margin {approval_margin:g}: a human should look."
        )
        return GateCheck(**fields, threshold=threshold, verdict="needs_approval", reason=reason)
    reason = f"{metric} = {format_number(value)} meets its {side} {format_number(threshold)}."
    return GateCheck(**fields, threshold=threshold, verdict="pass", reason=reason)


def change_check(
    *,
    name: str,
    kind: CheckKind,
    rule: RegressionLimit,
    value: float | None,
    baseline: float | None,
    ci: tuple[float, float] | None,
    confidence: float,
    slice_name: str | None = None,
    approval_margin: float | None = None,
) -> GateCheck:
    """Challenger vs champion on one metric, judged only on changes the bootstrap CI supports.

    A regression fails when the point estimate is beyond the tolerance AND the CI of the difference lies
    entirely on the worse side of zero. An improvement earns promotion (a ChangeRule with `min_improvement`)
    when the point estimate reaches it AND the CI lies entirely on the better side. Anything else is noise.
    """
    metric = rule.metric
    min_improvement = rule.min_improvement if isinstance(rule, ChangeRule) else None
    fields = {"name": name, "kind": kind, "metric": metric, "slice": slice_name, "value": value, "baseline": baseline}
    if value is None or baseline is None:
        which = "challenger" if value is None else "champion"
        return GateCheck(**fields, verdict="fail", reason=f"{metric} is undefined for the {which}.")
    delta = value - baseline
    fields |= {"delta": delta}
    if ci is None:
        reason = f"{metric} is undefined on every bootstrap resample: the change cannot be judged."
        return GateCheck(**fields, verdict="fail", reason=reason)
    fields |= {"ci_low": ci[0], "ci_high": ci[1]}
    sign = rule.sign
    gain = sign * delta
    gain_low, gain_high = sorted((sign * ci[0], sign * ci[1]))
    tolerance = rule.tolerance(baseline)
    threshold = None if tolerance is None else -sign * tolerance
    change = (
        f"{metric} {'improved' if gain >= 0 else 'worsened'} by {abs(delta):.4f} "
        f"({confidence:.0%} CI of the difference {ci[0]:+.4f} to {ci[1]:+.4f})"
    )
    if tolerance is not None and gain < -tolerance:
        if gain_high < 0:
            reason = f"{change}: a supported regression beyond the allowed {tolerance:.4g}."
            return GateCheck(**fields, threshold=threshold, verdict="fail", reason=reason)
        verdict_reason = f"{change}: beyond the allowed {tolerance:.4g}, but the CI includes 0 (noise)"
    elif min_improvement is not None and gain_low > 0 and gain >= min_improvement:
        reason = f"{change}: a supported improvement of at least {min_improvement:g}."
        return GateCheck(**fields, threshold=threshold, verdict="pass", reason=reason, supports_promotion=True)
    elif min_improvement is not None:
        verdict_reason = f"{change}: not a supported improvement of at least {min_improvement:g}"
    elif tolerance is not None:
        verdict_reason = f"{change}: within the allowed regression {tolerance:.4g}"
    else:
        verdict_reason = change
    margin = None if tolerance is None else gain + tolerance
    if approval_margin is not None and margin is not None and margin < approval_margin:
        reason = f"{verdict_reason}; within {approval_margin:g} of its limit: a human should look."
        return GateCheck(**fields, threshold=threshold, verdict="needs_approval", reason=reason)
    return GateCheck(**fields, threshold=threshold, verdict="pass", reason=f"{verdict_reason}.")


def agreement_check(share: float, *, min_share: float | None, review_below: float | None) -> GateCheck:
    """Share of rows where both models take the same decision: below `min_share` fails, below
    `review_below` needs a human (the challenger may be better on average yet act very differently)."""
    fields = {"name": "agreement/decisions", "kind": "agreement", "metric": "decision_agreement", "value": share}
    stated = f"The models agree on {share:.1%} of decisions"
    if min_share is not None and share < min_share:
        reason = f"{stated}, below the minimum {min_share:.1%}."
        return GateCheck(**fields, threshold=min_share, verdict="fail", reason=reason)
    if review_below is not None and share < review_below:
        reason = f"{stated}, below {review_below:.1%}: a behaviour change a human must approve."
        return GateCheck(**fields, threshold=review_below, verdict="needs_approval", reason=reason)
    if min_share is None and review_below is None:
        return GateCheck(**fields, verdict="info", reason=f"{stated}; the policy sets no bound.")
    bound = max(value for value in (min_share, review_below) if value is not None)
    return GateCheck(**fields, threshold=bound, verdict="pass", reason=f"{stated} (at least {bound:.1%}).")
