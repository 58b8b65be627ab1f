"""Which validated model becomes `best.keras`: the model-selection rules.

A closed-set validation set often reaches 100 % accuracy early; the rule that
picks among the tied models then decides what ships. Each rule compares one
validation result with the best so far:

  first  the first validation that reaches the best metric (ties keep the earlier model)
  last   the authors' release: metric rounded to 4 decimals >= the best so far (ties go to the later model)
  nll    the best metric (rounded to 4 decimals), ties broken by the lower validation cross-entropy
  final  the model of the last validation, whatever its metric

The same function serves the training loop (online) and `pick`, which replays
a run's validation log, so a benchmark can compare the rules on one run.
"""
import math

SELECTION_RULES = ("first", "last", "nll", "final")


def _rounded(value):
    return round(float(value), 4)


def is_better(rule, metric, nll, best_metric, best_nll):
    """True when a validation result (metric, nll) replaces the best so far.

    `best_metric` is -inf and `best_nll` +inf before the first validation.
    """
    if rule == "first":
        return metric > best_metric
    if rule == "last":
        return _rounded(metric) >= _rounded(best_metric) if math.isfinite(best_metric) else True
    if rule == "nll":
        if not math.isfinite(best_metric) or _rounded(metric) > _rounded(best_metric):
            return True
        return _rounded(metric) == _rounded(best_metric) and nll < best_nll
    if rule == "final":
        return True
    raise ValueError(f"select: expected one of {SELECTION_RULES}, received {rule!r}.")


def pick(records, rule, metric="accuracy"):
    """The step a rule keeps, replaying validation records in step order.

    Args:
      records: iterable of dicts with `step`, `metric` and `nll` keys (the
        `kind == "val"` lines of metrics.jsonl).
      rule: one of SELECTION_RULES.
      metric: the key compared (`accuracy` or `macro_f1`).

    Returns the picked step, or None without records.
    """
    best_step, best_metric, best_nll = None, -math.inf, math.inf
    for record in sorted(records, key=lambda r: r["step"]):
        if is_better(rule, record[metric], record.get("nll", math.inf), best_metric, best_nll):
            best_step, best_metric, best_nll = record["step"], record[metric], record.get("nll", math.inf)
    return best_step
