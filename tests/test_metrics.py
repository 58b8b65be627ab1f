"""Classification metrics against scikit-learn's, which the authors' release uses."""
import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from dnadet_tf.metrics import classification_metrics

NAMES = ["real", "a", "b", "c", "d"]


@pytest.mark.parametrize("case", range(20))
def test_macro_averages_match_scikit_learn(case):
    rng = np.random.default_rng(case)
    present = rng.choice(5, size=rng.integers(1, 6), replace=False)
    y_true = rng.choice(present, size=40)
    y_pred = np.where(rng.random(40) < 0.6, y_true, rng.integers(0, 5, size=40))
    metrics = classification_metrics(y_true, y_pred, NAMES)
    assert metrics["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert metrics["macro_recall"] == pytest.approx(recall_score(y_true, y_pred, average="macro", zero_division=0))


def test_one_true_class_is_not_inflated_by_classes_nobody_predicted():
    # A cross-seed split: 10 ProGAN images, 8 right, 2 taken for class b.
    y_true = np.full(10, 1)
    y_pred = np.array([1] * 8 + [2] * 2)
    metrics = classification_metrics(y_true, y_pred, NAMES)
    # Averaged over {a, b}: F1(a) = 2*1*0.8/1.8, F1(b) = 0; recall(a) = 0.8, recall(b) = 0.
    assert metrics["macro_f1"] == pytest.approx((2 * 0.8 / 1.8 + 0.0) / 2)
    assert metrics["macro_recall"] == pytest.approx(0.4)
    assert metrics["per_class_recall"] == {"a": pytest.approx(0.8)}
    perfect = classification_metrics(y_true, y_true, NAMES)
    assert perfect["macro_f1"] == 1.0 and perfect["macro_recall"] == 1.0
