"""Which validated model becomes `best.keras`: the model-selection rules.

A closed-set validation set often reaches 100 % accuracy early; the rule that
picks among the tied models then decides what ships. Each rule compares one
validation result with the best so far:

  first  the first validation that reaches the best metric (ties keep the earlier model)
  last   the authors' release: metric rounded to 4 decimals >= the best so far (ties go to the later model)
  nll    the best metric (rounded to 4 decimals), ties broken by the lower validation cross-entropy
  final  the model of the last validation, whatever its metric
  average  the mean of the weights (and batch-norm statistics) of the last
         `average_last` validated models, whatever their metric

The same function serves the training loop (online) and `pick`, which replays
a run's validation log, so a benchmark can compare the rules on one run.
`average` keeps no single validated model: `averaged_steps` names the ones it
averages and `average_weights` averages them.

Why `average`: on the demo zoo, single validated models of one run swing by tens
of points on the cross-tests from one validation to the next (cross-seed 100, 0,
100, 52 % at steps 300-600 of one run) while the closed-set validation stays at
100 %, so no rule that picks one of them can be reliable; the mean of the last
four is stable (docs/results.md, "Model selection").
"""
import math

import numpy as np

SELECTION_RULES = ("first", "last", "nll", "final", "average")


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
    if rule in ("final", "average"):
        return True  # the newest validated model replaces the last one, or joins the average
    raise ValueError(f"select: expected one of {SELECTION_RULES}, received {rule!r}.")


def pick(records, rule, metric="accuracy"):
    """The step a rule keeps, replaying validation records in step order.

    Args:
      records: iterable of dicts with `step`, `metric` and `nll` keys (the
        `kind == "val"` lines of metrics.jsonl).
      rule: one of SELECTION_RULES (`average`: the newest of the steps it averages).
      metric: the key compared (`accuracy` or `macro_f1`).

    Returns the picked step, or None without records.
    """
    best_step, best_metric, best_nll = None, -math.inf, math.inf
    for record in sorted(records, key=lambda r: r["step"]):
        if is_better(rule, record[metric], record.get("nll", math.inf), best_metric, best_nll):
            best_step, best_metric, best_nll = record["step"], record[metric], record.get("nll", math.inf)
    return best_step


def averaged_steps(records, count):
    """The steps whose models rule `average` averages: the last `count` validations, in step order."""
    if count < 1:
        raise ValueError(f"average_last: expected at least 1 validated model, received {count}.")
    return sorted(record["step"] for record in records)[-count:]


def average_weights(members):
    """The element-wise mean of several models' weights.

    Args:
      members: list of M weight lists, each as `model.get_weights()` gives it (the
        same shapes and dtypes in the same order).

    Returns:
      one weight list: floating arrays averaged in float64 and cast back to their dtype,
      other arrays (counters, random states) as the last member's.
    """
    if not members:
        raise ValueError("average: expected at least one validated model, received none.")
    averaged = []
    for arrays in zip(*members):
        last = np.asarray(arrays[-1])
        if np.issubdtype(last.dtype, np.floating):
            total = np.sum([np.asarray(a, np.float64) for a in arrays], axis=0)
            averaged.append((total / len(arrays)).astype(last.dtype))
        else:
            averaged.append(last)
    return averaged
