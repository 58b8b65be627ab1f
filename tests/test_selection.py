"""Model-selection rules: which validated model becomes best.keras."""
import math

import pytest

from dnadet_tf.selection import SELECTION_RULES, is_better, pick

# A closed-set validation that saturates at step 200; cross-entropy keeps falling until 400.
RECORDS = [
    {"step": 100, "accuracy": 0.95, "macro_f1": 0.94, "nll": 0.30},
    {"step": 200, "accuracy": 1.00, "macro_f1": 1.00, "nll": 0.10},
    {"step": 300, "accuracy": 1.00, "macro_f1": 1.00, "nll": 0.05},
    {"step": 400, "accuracy": 1.00, "macro_f1": 1.00, "nll": 0.02},
    {"step": 500, "accuracy": 1.00, "macro_f1": 1.00, "nll": 0.04},
    {"step": 600, "accuracy": 0.99, "macro_f1": 0.99, "nll": 0.03},
]


@pytest.mark.parametrize("rule, step", [("first", 200), ("last", 500), ("nll", 400), ("final", 600)])
def test_each_rule_picks_its_step(rule, step):
    assert pick(RECORDS, rule) == step
    assert pick(list(reversed(RECORDS)), rule) == step  # order of the log lines does not matter


def test_last_rule_rounds_like_the_release():
    records = [{"step": 1, "accuracy": 0.91234, "nll": 1.0}, {"step": 2, "accuracy": 0.91226, "nll": 1.0}]
    assert pick(records, "last") == 2  # both round to 0.9123
    assert pick(records, "first") == 1


def test_first_validation_is_always_kept_and_bad_rule_is_named():
    for rule in SELECTION_RULES:
        assert is_better(rule, 0.0, math.inf, -math.inf, math.inf)
    with pytest.raises(ValueError, match="select"):
        is_better("best", 1.0, 0.0, 0.0, 1.0)
    assert pick([], "nll") is None
