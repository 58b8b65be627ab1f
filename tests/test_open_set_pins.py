"""Pins of the open-set score and the export's parity/int8 figures against hand computations (DESIGN.md: class means
and one shared covariance of pooled features, shrunk towards its diagonal, Mahalanobis distance; an image is
unknown when its score is ABOVE the threshold; the temperature is fitted on the validation logits)."""
import json
import os

import numpy as np
import pytest

from dnadet_tf import openset
from dnadet_tf.exports import parity


def _labelled_paths(root, class_names):
    """(paths, labels) of ROOT/<class>/*.png in class order."""
    paths, labels = [], []
    for label, name in enumerate(class_names):
        folder = os.path.join(root, name)
        for f in sorted(os.listdir(folder)):
            if f.endswith(".png"):
                paths.append(os.path.join(folder, f))
                labels.append(label)
    return paths, np.array(labels, np.int64)


def _png_paths(root):
    return sorted(os.path.join(folder, f) for folder, _, files in os.walk(root) for f in files if f.endswith(".png"))


# --- temperature: fitted on the validation logits (M21) -----------------------------------------------------------

def test_calibration_temperature_is_fitted_on_validation_logits(tiny_run, upsampling_data):
    from dnadet_tf.predictor import KerasPredictor, features_and_logits

    with open(os.path.join(tiny_run, "calibration.json"), encoding="utf-8") as f:
        report = json.load(f)
    model = KerasPredictor(tiny_run).model
    val_paths, val_labels = _labelled_paths(upsampling_data["val"], model.class_names)
    train_paths, train_labels = _labelled_paths(upsampling_data["train"], model.class_names)
    _, val_logits = features_and_logits(model, val_paths)
    _, train_logits = features_and_logits(model, train_paths)
    expected = openset.fit_temperature(val_logits, val_labels)
    from_training = openset.fit_temperature(train_logits, train_labels)
    # the guard: the training logits give another temperature, so fitting on them would show
    assert from_training != pytest.approx(expected, rel=1e-3)
    assert report["val_images"] == len(val_labels)
    assert report["temperature"] == pytest.approx(expected, rel=1e-6)
    assert report["val_nll_before"] == pytest.approx(openset.nll(val_logits, val_labels), rel=1e-5)
    assert report["val_nll_after"] == pytest.approx(openset.nll(val_logits, val_labels, expected), rel=1e-5)


# --- class statistics: pooled within-class scatter, shrinkage, floor (M03, M04, M05) ------------------------------

def _hand_covariance(features, labels, num_classes, shrinkage=0.1):
    """As class_statistics documents it: the within-class scatter / N, (1 - s) S + s diag(S), plus a floor of
    1e-6 times its mean variance on the diagonal; and the class means."""
    features = np.asarray(features, np.float64)
    means = np.stack([features[labels == c].mean(axis=0) for c in range(num_classes)])
    scatter = np.zeros((features.shape[1], features.shape[1]))
    for f, c in zip(features, labels):
        d = (f - means[c])[:, None]
        scatter += d @ d.T
    s = scatter / len(features)
    shrunk = 0.9 * s + 0.1 * np.diag(np.diag(s))
    floor = 1e-6 * np.mean(np.diag(shrunk))
    return means, shrunk + floor * np.eye(len(s))


def _hand_distances(queries, means, covariance):
    inverse = np.linalg.inv(covariance)
    return np.array([[(q - m) @ inverse @ (q - m) for m in means] for q in queries])


def _three_class_features():
    """3 classes, D = 4, 10 features each, every class with its own (correlated) covariance."""
    rng = np.random.default_rng(7)
    mixes = [np.array([[1.0, 0.8, 0.0, 0.0], [0.0, 0.6, 0.5, 0.0], [0.0, 0.0, 1.0, 0.3], [0.2, 0.0, 0.0, 0.7]]),
             np.array([[2.0, 0.0, 0.0, 0.0], [1.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.3, 0.0], [0.0, 0.0, 0.9, 1.1]]),
             np.array([[0.4, 0.0, 0.0, 0.0], [0.0, 0.4, 0.0, 0.0], [0.0, 0.0, 0.4, 0.0], [0.0, 0.0, 0.0, 0.4]])]
    centres = np.array([[0.0, 0.0, 0.0, 0.0], [3.0, -1.0, 2.0, 0.5], [-2.0, 2.0, 1.0, -1.0]])
    features = np.concatenate([centres[c] + rng.normal(size=(10, 4)) @ mixes[c] for c in range(3)])
    labels = np.repeat(np.arange(3), 10)
    return features, labels


def test_class_statistics_whitening_is_the_shrunk_pooled_covariance_by_hand():
    features, labels = _three_class_features()
    means, covariance = _hand_covariance(features, labels, 3)
    centres, whitening = openset.class_statistics(features, labels, 3)
    np.testing.assert_allclose(centres, means, rtol=1e-5, atol=1e-6)
    inverse = np.linalg.inv(covariance)
    w = np.asarray(whitening, np.float64)
    np.testing.assert_allclose(w @ w.T, inverse, rtol=1e-4, atol=1e-4 * np.abs(inverse).max())
    queries = np.array([[0.5, 0.2, -0.3, 1.0], [2.0, -0.5, 1.5, 0.0], [-1.0, 1.0, 0.0, -0.5]])
    statistics = openset.OpenSetStatistics("mahalanobis", centres, whitening)
    got = openset.class_distances("mahalanobis", queries, statistics)
    np.testing.assert_allclose(got, _hand_distances(queries, means, covariance), rtol=1e-4)
    np.testing.assert_allclose(openset.scores("mahalanobis", queries, np.zeros((3, 3)), statistics),
                               _hand_distances(queries, means, covariance).min(axis=1), rtol=1e-4)


def test_class_statistics_floor_with_fewer_images_than_dimensions():
    """N = 4 < D = 6, one feature constant (no within-class variance): only the floor makes it invertible."""
    rng = np.random.default_rng(3)
    features = rng.normal(size=(4, 6))
    features[:, 5] = 1.5
    labels = np.array([0, 0, 1, 1])
    means, covariance = _hand_covariance(features, labels, 2)
    centres, whitening = openset.class_statistics(features, labels, 2)
    inverse = np.linalg.inv(covariance)
    w = np.asarray(whitening, np.float64)
    np.testing.assert_allclose(w @ w.T, inverse, rtol=1e-4, atol=1e-4 * np.abs(inverse).max())
    # the constant dimension's inverse variance is 1 / floor
    floor = covariance[5, 5]  # the constant dimension: its whole variance is the floor
    assert floor == pytest.approx(1e-6 * np.mean(np.diag(covariance - floor * np.eye(6))), rel=1e-9)
    assert (w @ w.T)[5, 5] == pytest.approx(1.0 / floor, rel=1e-4)
    queries = means + np.array([[0.1, -0.2, 0.0, 0.3, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1e-3]])
    statistics = openset.OpenSetStatistics("mahalanobis", centres, whitening)
    got = openset.class_distances("mahalanobis", queries, statistics)
    np.testing.assert_allclose(got, _hand_distances(queries, means, covariance), rtol=1e-3)


# --- parity figures (E01, E02, E03) -------------------------------------------------------------------------------

REFERENCE = np.array([[0.9, 0.1], [0.2, 0.8]])
CANDIDATE = np.array([[0.6, 0.4], [0.7, 0.3]])


def test_compare_by_hand():
    row = parity.compare(REFERENCE, CANDIDATE, np.array([0, 0]))
    assert row["images"] == 2
    assert row["top1_agreement"] == pytest.approx(0.5)
    assert row["max_abs_diff"] == pytest.approx(0.5)
    assert row["mean_abs_diff"] == pytest.approx(0.4)
    assert row["accuracy"] == pytest.approx(1.0)


class _Stub:
    """A predictor whose outputs are fixed probabilities, whatever the pixels."""

    def __init__(self, probabilities):
        self.probabilities = np.asarray(probabilities, np.float32)
        self.class_names = ["a", "b"]
        self.open_set = None

    def attribute_pixels(self, pixels):
        return {"probabilities": self.probabilities[: len(pixels)]}

    def predict_pixels(self, pixels):
        return self.attribute_pixels(pixels)["probabilities"]


def test_parity_rows_compare_the_candidate_with_keras_by_hand():
    batches = [np.zeros((2, 4, 4, 3), np.float32)]
    rows = parity.parity_rows(_Stub(REFERENCE), [("int8", _Stub(CANDIDATE), 123)], batches, labels=np.array([0, 0]),
                              latency_runs=1, warmup=0)
    keras, candidate = rows
    assert keras["format"] == "keras" and candidate["format"] == "int8" and candidate["size_bytes"] == 123
    assert keras["top1_agreement"] == 1.0 and keras["max_abs_diff"] == 0.0 and keras["accuracy"] == pytest.approx(0.5)
    assert candidate["top1_agreement"] == pytest.approx(0.5)
    assert candidate["max_abs_diff"] == pytest.approx(0.5, abs=1e-6)
    assert candidate["mean_abs_diff"] == pytest.approx(0.4, abs=1e-6)
    assert candidate["accuracy"] == pytest.approx(1.0)


# --- unknown means score > threshold (M07, E11) -------------------------------------------------------------------

def test_open_set_accuracy_at_the_threshold_by_hand():
    # known: right class, score == threshold -> right; unknown: score == threshold -> not flagged, 3.0 -> flagged
    accuracy = openset.open_set_accuracy([0], [0], [2.0], [2.0, 3.0], 2.0)
    assert accuracy == pytest.approx(2.0 / 3.0)


# --- int8 export: calibrated on the calibration images, not the parity ones (E05) ---------------------------------

@pytest.fixture(scope="module")
def int8_export(tiny_run, upsampling_data, tmp_path_factory):
    """(recorded representative-dataset paths, int8 .tflite path) of one `export --formats int8` of the tiny run with
    --eval test and --calibration val."""
    from dnadet_tf.exports import export as export_module
    from clirun import run_cli

    recorded = []
    original = export_module._representative_dataset

    def recording(paths, preprocess):
        recorded.append(list(paths))
        return original(paths, preprocess)

    out = str(tmp_path_factory.mktemp("pins_export"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export_module, "_representative_dataset", recording)
        code, _, stderr = run_cli(["export", "--model", tiny_run, "--out", out, "--formats", "int8",
                                   "--eval", upsampling_data["test"], "--calibration", upsampling_data["val"],
                                   "--calibration-images", "6", "--max-eval", "4", "--threads", "1"])
    assert code == 0, stderr
    found = [os.path.join(folder, f) for folder, _, files in os.walk(out) for f in files if f.endswith(".tflite")]
    assert len(found) == 1, found
    return recorded, found[0]


def test_int8_export_is_calibrated_on_the_calibration_images(int8_export, upsampling_data):
    recorded, _ = int8_export
    assert len(recorded) == 1
    paths = {os.path.realpath(p) for p in recorded[0]}
    calibration = {os.path.realpath(p) for p in _png_paths(upsampling_data["val"])}
    evaluation = {os.path.realpath(p) for p in _png_paths(upsampling_data["test"])}
    assert not paths & evaluation, "int8 calibration must not use the parity (--eval) images"
    assert paths <= calibration
    assert len(paths) == 6


def test_tflite_image_at_its_own_threshold_is_not_unknown(int8_export, upsampling_data):
    from dnadet_tf.exports.predictors import TFLitePredictor
    from dnadet_tf.pipeline import inference_dataset

    _, path = int8_export
    predictor = TFLitePredictor(path, num_threads=1)
    assert predictor.open_set, "the tiny run is calibrated: its int8 file carries an open-set score"
    pixels = np.concatenate(list(inference_dataset(_png_paths(upsampling_data["test"])[:6], predictor.preprocess,
                                                   6).as_numpy_iterator()))
    scores = predictor.attribute_pixels(pixels)["ood_score"]
    threshold = float(np.min(scores))
    assert np.any(scores > threshold)
    predictor.open_set = dict(predictor.open_set, threshold=threshold)
    out = predictor.attribute_pixels(pixels)
    np.testing.assert_array_equal(out["ood_score"], scores)
    np.testing.assert_array_equal(out["unknown"], scores > threshold)
    assert not out["unknown"][int(np.argmin(scores))]
