"""Open-set scores and calibration: the NumPy math, the `Calibration` layer, `calibrate`, `predict` and
`evaluate --unknown` (issue 12)."""
import json
import os
import shutil

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dnadet_tf import openset
from dnadet_tf.model import Backbone, Calibration, Classifier, attribute, load_classifier, probabilities
from clirun import run_cli as _cli


def _clusters(rng, centres, per_class, spread):
    features = np.concatenate([c + spread * rng.standard_normal((per_class, len(c))) for c in centres])
    labels = np.repeat(np.arange(len(centres)), per_class)
    return features.astype(np.float32), labels


def test_mahalanobis_and_cosine_separate_unknown_clusters():
    rng = np.random.default_rng(0)
    centres = 4.0 * rng.standard_normal((3, 16))
    train, train_labels = _clusters(rng, centres, 60, 1.0)
    val, val_labels = _clusters(rng, centres, 20, 1.0)
    unknown, _ = _clusters(rng, 4.0 * rng.standard_normal((2, 16)), 30, 1.0)
    logits = lambda f: -((f[:, None, :] - centres[None]) ** 2).sum(-1) / 8  # noqa: E731
    statistics, report = openset.fit_statistics("mahalanobis", train, train_labels, 3, val, logits(val), val_labels)
    for score in ("mahalanobis", "cosine"):
        statistics.score = score
        known_scores = openset.scores(score, val, logits(val), statistics)
        unknown_scores = openset.scores(score, unknown, logits(unknown), statistics)
        assert openset.auroc(known_scores, unknown_scores) > 0.95, score
    assert 0.9 <= report["known_rate"] <= 0.95 + 1e-9
    statistics.score = "mahalanobis"
    # The threshold keeps 95 % of the validation images as known.
    assert abs(np.mean(openset.scores("mahalanobis", val, logits(val), statistics) <= report["threshold"]) - 0.95) < 0.05
    # Another known rate: the threshold is that quantile of the same validation scores, and the report says so.
    val_scores = openset.scores("mahalanobis", val, logits(val), statistics)
    lower, lower_report = openset.fit_statistics("mahalanobis", train, train_labels, 3, val, logits(val), val_labels,
                                                 known_rate=0.5)
    assert lower.threshold == pytest.approx(np.median(val_scores)) and lower_report["known_rate"] == 0.5
    assert lower.threshold < statistics.threshold
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"known_rate: expected the share of validation images kept as known"):
            openset.fit_statistics("mahalanobis", train, train_labels, 3, val, logits(val), val_labels, known_rate=bad)


def test_auroc_and_fpr95_against_hand_and_sklearn():
    rng = np.random.default_rng(1)
    known, unknown = rng.normal(0, 1, 200), rng.normal(1, 1, 150)
    known[:10] = unknown[:10]  # ties count one half
    expected = roc_auc_score(np.r_[np.zeros(200), np.ones(150)], np.r_[known, unknown])
    assert abs(openset.auroc(known, unknown) - expected) < 1e-12
    assert openset.auroc([0, 1], [2, 3]) == 1.0 and openset.auroc([2, 3], [0, 1]) == 0.0
    # Known 1..100: the 95 % threshold is 95.05; unknowns at or below it pass as known.
    assert openset.fpr_at_known_rate(np.arange(1, 101), [10, 95, 96, 200]) == 0.5


def test_ece_by_hand():
    # Two bins used: confidence 0.9 (right 1 of 2) and 0.6 (right 2 of 2).
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6)
    assert abs(openset.expected_calibration_error(p, labels) - expected) < 1e-12


def test_temperature_scaling_lowers_held_out_nll():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, 2000)
    clean = rng.standard_normal((2000, 4)) + 2.0 * np.eye(4)[labels]
    # The Bayes posterior's logits are 2 * clean (unit-variance Gaussians 2 apart), so 4 * clean is too
    # sharp by a factor 2: the right temperature is 2.
    overconfident = 4.0 * clean
    temperature = openset.fit_temperature(overconfident[:1000], labels[:1000])
    assert 1.6 < temperature < 2.5
    held_out = overconfident[1000:], labels[1000:]
    assert openset.nll(*held_out, temperature) < openset.nll(*held_out) - 0.1
    # Validation without a single error cannot tell how sharp is too sharp: no sharpening then.
    separable = 3.0 * np.eye(4)[labels[:50]]
    assert openset.fit_temperature(separable, labels[:50]) == pytest.approx(1.0, abs=1e-3)
    ece_before = openset.expected_calibration_error(openset.softmax(held_out[0]), held_out[1])
    ece_after = openset.expected_calibration_error(openset.softmax(held_out[0], temperature), held_out[1])
    assert ece_after < ece_before


def test_class_radii_by_hand():
    # Distances of 14 known images to 3 classes; each class's radius is its own images' quantile of their
    # distance to their own class; class 2, with fewer than MIN_RADIUS_IMAGES images, gets the quantile of all.
    labels = np.array([0] * 10 + [2] * 4)
    own = np.concatenate([np.arange(1.0, 11.0), [50.0, 60.0, 70.0, 80.0]])
    distances = np.full((len(labels), 3), 999.0)
    distances[np.arange(len(labels)), labels] = own
    radii = openset.class_radii(distances, labels, rate=0.5, min_images=10)
    assert radii[0] == pytest.approx(5.5)  # median of 1..10
    assert radii[1] == radii[2] == pytest.approx(np.median(own))  # no image of class 1, too few of class 2
    assert openset.class_radii(np.zeros((10, 2)), np.zeros(10, int)).min() > 0  # never a division by 0


def test_per_class_radii_keep_each_classs_rate_and_flag_what_passes_a_shared_scale():
    # Class 0 is tight, class 1 spreads 4 times as far; an unknown cluster beside class 0 is closer to it
    # than class 1's own images are to class 1, so one shared scale lets it pass and per-class radii do not.
    rng = np.random.default_rng(5)
    centres = np.zeros((2, 8))
    centres[1, 0] = 40.0
    train = np.concatenate([centres[0] + rng.standard_normal((200, 8)), centres[1] + 4 * rng.standard_normal((200, 8))])
    val = np.concatenate([centres[0] + rng.standard_normal((100, 8)), centres[1] + 4 * rng.standard_normal((100, 8))])
    train_labels, val_labels = np.repeat([0, 1], 200), np.repeat([0, 1], 100)
    unknown = centres[0] + np.r_[6.0, np.zeros(7)] + rng.standard_normal((50, 8))
    logits = lambda f: np.stack([-np.abs(f - c).sum(1) for c in centres], 1)  # noqa: E731
    flagged = {}
    for radii in openset.RADII:
        statistics, report = openset.fit_statistics("mahalanobis", train, train_labels, 2, val, logits(val),
                                                    val_labels, radii=radii)
        assert report["radii"] == radii
        val_scores = openset.scores("mahalanobis", val, logits(val), statistics)
        assert np.mean(val_scores <= statistics.threshold) >= 0.95 - 1 / len(val)
        flagged[radii] = np.mean(openset.scores("mahalanobis", unknown, logits(unknown), statistics) > statistics.threshold)
        if radii == "per-class":
            assert report["class_radii"][1] > 4 * report["class_radii"][0]
            own = openset.class_distances("mahalanobis", val, statistics)[np.arange(len(val)), val_labels]
            for c in (0, 1):  # each radius keeps 95 % of its own class's validation images
                assert np.mean(own[val_labels == c] <= statistics.class_radii[c] * (1 + 1e-6)) >= 0.95 - 1e-9
        else:
            assert statistics.class_radii is None and report["class_radii"] is None
    assert flagged["shared"] < 0.2 and flagged["per-class"] > 0.9, flagged
    with pytest.raises(ValueError, match=r"radii: expected one of per-class, shared, received 'each'"):
        openset.fit_statistics("mahalanobis", train, train_labels, 2, val, logits(val), val_labels, radii="each")


@pytest.mark.parametrize("score,radii,means", [(score, "shared", "class") for score in openset.SCORES]
                         + [(score, "per-class", "class") for score in openset.RADIUS_SCORES]
                         + [(score, radii, "image") for score in openset.RADIUS_SCORES
                            for radii in ("shared", "per-class")] + [("mahalanobis", "shared", 2)])
def test_calibration_layer_matches_numpy_and_survives_saving(score, radii, means, tmp_path):
    rng = np.random.default_rng(3)
    model = Classifier(Backbone(width=0.0625), 3, class_names=["real", "a", "b"])
    pixels = rng.uniform(-1, 1, (5, 64, 64, 3)).astype("float32")
    features = model.backbone(pixels).numpy()
    logits = model(pixels).numpy()
    train = features + 0.1 * rng.standard_normal(features.shape).astype("float32")
    # with every image its own mean, a validation image among the training ones would lie at distance 0
    second = features if means == "class" else features + 0.2 * rng.standard_normal(features.shape).astype("float32")
    statistics, _ = openset.fit_statistics(score, np.concatenate([train, second]), np.array([0, 1, 2, 0, 1] * 2),
                                           3, features, logits, np.array([0, 1, 2, 0, 1]), radii=radii,
                                           means=means)
    assert statistics.means_per_class == ({"image": 4, 2: 2}.get(means, 1) if score in openset.RADIUS_SCORES else 1)
    if radii == "per-class":  # 5 images are too few for a radius per class: give the classes different ones
        statistics.class_radii = statistics.class_radii * np.array([1.0, 3.0, 0.5], np.float32)
    model.calibrate(statistics)
    expected = openset.scores(score, features, logits, statistics)
    outputs = {k: v.numpy() for k, v in attribute(model, pixels).items()}
    np.testing.assert_allclose(outputs["ood_score"], expected, rtol=2e-3, atol=1e-4)
    np.testing.assert_array_equal(outputs["unknown"], outputs["ood_score"] > statistics.threshold)
    np.testing.assert_allclose(outputs["probabilities"], openset.softmax(logits, statistics.temperature), atol=1e-5)
    np.testing.assert_allclose(probabilities(model, pixels).numpy(), outputs["probabilities"], atol=1e-6)
    model.save(tmp_path / "m.keras")
    loaded = load_classifier(str(tmp_path / "m.keras"))
    assert isinstance(loaded.calibration, Calibration) and loaded.calibration.score == score
    assert loaded.calibration.class_radii == (radii == "per-class")
    assert loaded.calibration.means_per_class == statistics.means_per_class
    held = loaded.calibration.statistics()  # what evaluate scores every score with
    np.testing.assert_array_equal(held.class_means, statistics.class_means)
    assert (held.means_per_class, held.class_radii is None) == (statistics.means_per_class,
                                                                statistics.class_radii is None)
    np.testing.assert_allclose(attribute(loaded, pixels)["ood_score"].numpy(), outputs["ood_score"], rtol=1e-6)


def test_fit_calibrates_and_predict_json_has_the_open_set_fields(tiny_run, upsampling_data):
    with open(os.path.join(tiny_run, "calibration.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["score"] == openset.DEFAULT_SCORE and report["temperature"] > 0
    assert report["val_nll_after"] <= report["val_nll_before"] + 1e-9
    code, out, err = _cli(["predict", "--model", tiny_run, "--json", os.path.join(upsampling_data["test"], "real")])
    assert code == 0 and "no open-set score" not in err
    records = [json.loads(line) for line in out.splitlines()]
    assert records and all(isinstance(r["unknown"], bool) and isinstance(r["ood_score"], float) for r in records)
    assert all(r["ood_threshold"] == pytest.approx(report["threshold"], rel=1e-5) for r in records)


def test_a_run_without_a_score_still_predicts_and_says_how_to_fit_one(tiny_run, upsampling_data, tmp_path):
    old = str(tmp_path / "old")
    shutil.copytree(tiny_run, old)
    model = load_classifier(os.path.join(old, "best.keras"))
    plain = Classifier(model.backbone, model.num_classes, class_names=model.class_names,
                       preprocessing=model.preprocessing)
    plain.save(os.path.join(old, "best.keras"))
    code, out, err = _cli(["predict", "--model", old, "--json", os.path.join(upsampling_data["test"], "real")])
    assert code == 0
    assert err.count("stores no open-set score") == 1 and f"dnadet-tf calibrate {old}" in err
    records = [json.loads(line) for line in out.splitlines()]
    assert records and all("unknown" not in r for r in records)
    # `calibrate` fits one for that run dir.
    code, out, err = _cli(["calibrate", old, "--score", "cosine"])
    assert code == 0, err
    assert load_classifier(os.path.join(old, "best.keras")).calibration.score == "cosine"
    with open(os.path.join(old, "calibration.json"), encoding="utf-8") as f:
        default = json.load(f)
    assert default["known_rate"] == openset.KNOWN_RATE
    # --known-rate moves the threshold to that share of the validation images, and calibration.json records it.
    code, out, err = _cli(["calibrate", old, "--score", "cosine", "--known-rate", "0.5"])
    assert code == 0, err
    with open(os.path.join(old, "calibration.json"), encoding="utf-8") as f:
        half = json.load(f)
    assert half["known_rate"] == 0.5 and half["threshold"] <= default["threshold"]
    assert float(load_classifier(os.path.join(old, "best.keras")).calibration.threshold.numpy()) == pytest.approx(
        half["threshold"], rel=1e-6)
    assert "keeps 50 % of validation images as known" in out
    code, out, err = _cli(["calibrate", old, "--known-rate", "1.5"])
    assert code != 0 and err.strip().splitlines()[-1].endswith(
        "--known-rate: expected the share of validation images kept as known, above 0 and at most 1, received 1.5.")


def test_evaluate_unknown_reports_open_set_figures(tiny_run, upsampling_data, tmp_path):
    # Unknown: noise images, unlike every class of the run.
    from PIL import Image

    unknown = tmp_path / "unknown" / "noise"
    unknown.mkdir(parents=True)
    rng = np.random.default_rng(4)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(unknown / f"{i}.png")
    out_json = str(tmp_path / "eval.json")
    code, out, err = _cli(["evaluate", "--model", tiny_run, "--data", upsampling_data["test"],
                           "--unknown", str(tmp_path / "unknown"), "--json", out_json])
    assert code == 0, err
    with open(out_json, encoding="utf-8") as f:
        rows = json.load(f)
    assert rows[0]["metrics"]["ece_uncalibrated"] >= 0 and "ece" in rows[0]["metrics"]
    row = rows[-1]
    assert row["kind"] == "open_set" and row["metrics"]["unknown_images"] == 8
    m = row["metrics"]
    assert 0 <= m["auroc"] <= 1 and 0 <= m["fpr_at_95_tpr"] <= 1 and 0 <= m["open_set_accuracy"] <= 1
    assert set(m["by_score"]) == set(openset.SCORES) and list(m["auroc_by_group"]) == ["noise"]
    # The figures are the run's stored score of the known (test) images against the unknown ones, the unknown
    # images the positives (AUROC 1 would be every unknown image scoring above every known one), recomputed here.
    from dnadet_tf.data import find_images
    from dnadet_tf.predictor import KerasPredictor, attribute_files

    predictor = KerasPredictor(tiny_run)
    known_scores = attribute_files(predictor, find_images(upsampling_data["test"]))["ood_score"]
    unknown_scores = attribute_files(predictor, find_images(str(tmp_path / "unknown")))["ood_score"]
    threshold = predictor.open_set["threshold"]
    assert m["score"] == predictor.open_set["score"] and m["known_images"] == len(known_scores)
    assert m["auroc"] == pytest.approx(openset.auroc(known_scores, unknown_scores))
    assert m["auroc_by_group"]["noise"] == pytest.approx(m["auroc"])
    assert m["fpr_at_95_tpr"] == pytest.approx(openset.fpr_at_known_rate(known_scores, unknown_scores))
    assert m["unknown_flagged"] == pytest.approx(np.mean(unknown_scores > threshold))
    assert m["known_flagged"] == pytest.approx(np.mean(known_scores > threshold))
    assert "open set (8 unknown" in out


def test_the_threshold_keeps_the_known_rate_within_one_image():
    rng = np.random.default_rng(3)
    for n in range(1, 60):
        scores = np.round(rng.normal(0, 1, n), 1)  # ties, as an int8 model's few score levels give
        threshold = openset.threshold_at_known_rate(scores)
        assert np.mean(scores <= threshold) >= openset.KNOWN_RATE - 1 / n, n


def test_validation_images_among_the_training_ones_are_scored_leave_one_out():
    rng = np.random.default_rng(5)
    centres = 3.0 * rng.standard_normal((3, 12))
    train, labels = _clusters(rng, centres, 6, 1.0)  # few images per class, as `adapt --labeled` gives
    logits = -((train[:, None, :] - centres[None]) ** 2).sum(-1)
    # By hand: row 4's distances with the statistics of the other 17 images.
    others = np.arange(len(labels)) != 4
    alone = openset.OpenSetStatistics("mahalanobis", *openset.class_statistics(train[others], labels[others], 3))
    loo = openset.leave_one_out_distances("mahalanobis", train, labels, 3, [4, 9])
    assert loo.shape == (2, 3)
    np.testing.assert_allclose(loo[0], openset.class_distances("mahalanobis", train[4:5], alone)[0], rtol=1e-6)
    for score in openset.RADIUS_SCORES:
        inside, inside_report = openset.fit_statistics(score, train, labels, 3, train, logits, labels)
        left, left_report = openset.fit_statistics(score, train, labels, 3, train, logits, labels,
                                                   val_in_train=np.arange(len(labels)))
        # The same class statistics; the threshold is the known-rate quantile of the left-out scores, above the
        # in-sample one (an image's own feature pulls its class mean to it).
        np.testing.assert_array_equal(inside.class_means, left.class_means)
        every = openset.leave_one_out_distances(score, train, labels, 3, range(len(labels)))
        assert left.threshold == pytest.approx(np.quantile(every.min(axis=1), openset.KNOWN_RATE))
        assert left.threshold > inside.threshold
        assert (inside_report["val_left_out"], left_report["val_left_out"]) == (0, len(labels))
        # Per-class radii come from the left-out distances too.
        radii, _ = openset.fit_statistics(score, train, labels, 3, train, logits, labels, radii="per-class",
                                          val_in_train=np.arange(len(labels)))
        np.testing.assert_allclose(radii.class_radii, openset.class_radii(every, labels), rtol=1e-5)
    # Only the validation images that are training images are left out; a logits score leaves none.
    rows = np.where(np.arange(len(labels)) % 2 == 0, np.arange(len(labels)), -1)
    _, half = openset.fit_statistics("mahalanobis", train, labels, 3, train, logits, labels, val_in_train=rows)
    assert (half["val_in_train"], half["val_left_out"]) == (9, 9)
    _, energy = openset.fit_statistics("energy", train, labels, 3, train, logits, labels, val_in_train=rows)
    assert (energy["val_in_train"], energy["val_left_out"]) == (9, 0)


def test_every_image_its_own_mean_by_hand():
    rng = np.random.default_rng(8)
    centres = 3.0 * rng.standard_normal((3, 6))
    features, labels = _clusters(rng, centres, 4, 1.0)
    features, labels = features[:-1], labels[:-1]  # class 2 has 3 images, the others 4
    means, whitening = openset.class_statistics(features, labels, 3, means="image")
    class_centres, class_whitening = openset.class_statistics(features, labels, 3)
    np.testing.assert_array_equal(whitening, class_whitening)  # the covariance is the one around the class means
    assert means.shape == (4 * 3, 6)
    for c in range(3):  # row g * C + c: the c-th class's g-th image; class 2's fourth repeats its first
        own = features[labels == c]
        np.testing.assert_allclose(means[np.arange(4) * 3 + c], np.concatenate([own, own[:1]])[:4], rtol=1e-6)
    statistics = openset.statistics_of("mahalanobis", features, labels, 3, "image")
    queries = rng.standard_normal((5, 6)).astype(np.float32)
    precision = whitening.astype(np.float64) @ whitening.T.astype(np.float64)
    by_hand = np.array([[min((q - f) @ precision @ (q - f) for f in features[labels == c]) for c in range(3)]
                        for q in queries])
    np.testing.assert_allclose(openset.class_distances("mahalanobis", queries, statistics), by_hand, rtol=1e-4)
    # Left out: an image's distance to its own class is that to the nearest other image of it, the covariance
    # refitted without it.
    others = np.arange(len(labels)) != 1
    _, alone = openset.class_statistics(features[others], labels[others], 3)
    precision = alone.astype(np.float64) @ alone.T.astype(np.float64)
    loo = openset.leave_one_out_distances("mahalanobis", features, labels, 3, [1], means="image")[0]
    expected = [min((features[1] - f) @ precision @ (features[1] - f) for f in features[others][labels[others] == c])
                for c in range(3)]
    np.testing.assert_allclose(loo, expected, rtol=1e-4)
    # A class with no image gets the mean of all of them, as with class means; energy has no means.
    empty = openset.statistics_of("mahalanobis", features[labels < 2], labels[labels < 2], 3, "image")
    np.testing.assert_allclose(empty.class_means[2::3], np.repeat(features[labels < 2].mean(0)[None], 4, 0),
                               rtol=1e-5)
    _, report = openset.fit_statistics("energy", features, labels, 3, features, features[:, :3], labels,
                                       means="image")
    assert report["means"] is None
    with pytest.raises(ValueError, match=r"means: expected one of class, image or a positive number of centres per "
                                         r"class, received 'each'"):
        openset.class_statistics(features, labels, 3, means="each")


def test_k_means_centres_per_class_by_hand():
    # Each class is two tight clumps far apart: its 2 k-means centres are the clumps' means, numbered in the order
    # of their first image, and its distance is that to the nearer clump.
    rng = np.random.default_rng(11)
    clumps = 6.0 * rng.standard_normal((3, 2, 5))
    order = np.array([0, 1, 1, 0, 1, 0])  # which clump each of a class's 6 images is in
    features = np.concatenate([clumps[c][order] + 0.01 * rng.standard_normal((6, 5)) for c in range(3)])
    labels = np.repeat(np.arange(3), 6)
    centres, whitening = openset.class_statistics(features, labels, 3, means=2)
    assert centres.shape == (2 * 3, 5)
    for c in range(3):
        own = features[labels == c]
        np.testing.assert_allclose(centres[0 * 3 + c], own[order == 0].mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(centres[1 * 3 + c], own[order == 1].mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(whitening, openset.class_statistics(features, labels, 3)[1])
    statistics = openset.statistics_of("mahalanobis", features, labels, 3, 2)
    assert statistics.means_per_class == 2
    queries = rng.standard_normal((4, 5))
    precision = whitening.astype(np.float64) @ whitening.T.astype(np.float64)
    by_hand = np.array([[min((q - m) @ precision @ (q - m) for m in centres[[c, 3 + c]]) for c in range(3)]
                        for q in queries])
    np.testing.assert_allclose(openset.class_distances("mahalanobis", queries, statistics), by_hand, rtol=1e-4)
    # As many centres as a class has images or more: every image its own, as "image" gives them; 1 is the class mean.
    np.testing.assert_array_equal(openset.class_statistics(features, labels, 3, means=6)[0],
                                  openset.class_statistics(features, labels, 3, means="image")[0])
    np.testing.assert_array_equal(openset.class_statistics(features, labels, 3, means=1)[0],
                                  openset.class_statistics(features, labels, 3)[0])
    _, report = openset.fit_statistics("mahalanobis", features, labels, 3, features, features[:, :3], labels,
                                       means=2)
    assert report["means"] == 2 and report["points_per_class"] == [2, 2, 2]
    # A class with fewer images than K keeps each of them; one with none, the mean of all.
    assert openset.points_per_class([0, 0, 0, 1], 3, 2) == [2, 1, 1]
    assert openset.points_per_class([0, 0, 0, 1], 3, "image") == [3, 1, 1]
    assert openset.points_per_class([0, 0, 0, 1], 3, "class") == [1, 1, 1]
    assert (openset.check_means(1), openset.check_means(np.int64(3)), openset.parse_means("8"),
            openset.parse_means("image")) == ("class", 3, 8, "image")
    for wrong in (0, -2, True, 2.5, "0"):
        with pytest.raises(ValueError, match="expected one of class, image or a positive number of centres"):
            openset.parse_means(wrong) if isinstance(wrong, str) else openset.check_means(wrong)


def test_leave_one_out_with_k_means_clusters_only_the_left_out_class_again(monkeypatch):
    # The other classes keep their groups; the distances are those of clustering every class of the other N - 1
    # features again (statistics_of without groups), to the bit, a class of one image left empty included.
    rng = np.random.default_rng(12)
    centres = 4.0 * rng.standard_normal((4, 6))
    features, labels = _clusters(rng, centres, 7, 1.0)
    features, labels = np.concatenate([features[labels < 3], features[labels == 3][:1]]), np.concatenate(
        [labels[labels < 3], [3]])  # class 3: one image
    rows = [0, 8, 15, len(labels) - 1]
    for score in openset.RADIUS_SCORES:
        fast = openset.leave_one_out_distances(score, features, labels, 4, rows, means=3)
        for i, row in enumerate(rows):
            others = np.arange(len(labels)) != row
            again = openset.statistics_of(score, features[others], labels[others], 4, 3)
            np.testing.assert_array_equal(fast[i], openset.class_distances(score, features[row:row + 1], again)[0])
    # k-means runs once over every class, then once per left-out image on its class alone.
    from dnadet_tf import prototypes

    sizes = []
    clustering = prototypes.cluster_groups

    def counted(features, labels, count, seed=0):
        sizes.append(len(np.unique(labels)))
        return clustering(features, labels, count, seed)

    monkeypatch.setattr(prototypes, "cluster_groups", counted)
    openset.leave_one_out_distances("mahalanobis", features, labels, 4, rows, means=3)
    assert sizes == [4, 1, 1, 1, 0]  # the last row's class is left empty


def test_calibrate_on_its_own_training_images_says_it_leaves_each_out(tiny_run, upsampling_data, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(tiny_run, run)
    code, out, err = _cli(["calibrate", run, "--data", upsampling_data["val"], "--val", upsampling_data["val"]])
    assert code == 0, err
    with open(os.path.join(run, "calibration.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["val_in_train"] == report["val_images"] == report["val_left_out"] == report["train_images"] > 0
    assert (f"--val: {report['val_images']} of the {report['val_images']} validation images are training images too; "
            "each is scored with the class statistics fitted without it (leave-one-out)") in out
    code, out, err = _cli(["calibrate", run, "--score", "energy", "--data", upsampling_data["val"],
                           "--val", upsampling_data["val"]])
    assert code == 0, err
    assert "the 'energy' score cannot leave them out" in out
    # Apart, as fit calibrates, nothing is left out and no line is printed.
    code, out, err = _cli(["calibrate", run])
    assert code == 0 and "training images too" not in out


def test_calibrate_refuses_training_images_that_miss_a_class(tiny_run, upsampling_data, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(tiny_run, run)
    before = open(os.path.join(run, "best.keras"), "rb").read()
    partial = tmp_path / "partial"
    shutil.copytree(os.path.join(upsampling_data["val"], "real"), partial / "real")
    shutil.copytree(os.path.join(upsampling_data["val"], "nearest"), partial / "nearest")
    code, _, err = _cli(["calibrate", run, "--data", str(partial), "--val", upsampling_data["val"]])
    assert code == 2 and err.strip() == (
        f"dnadet-tf calibrate: error: --data {partial}: expected training images of every class of the run, received "
        "none of transposed (a class's statistics need its own images).")
    assert open(os.path.join(run, "best.keras"), "rb").read() == before


def test_calibrate_on_few_validation_images_says_so(tiny_run, upsampling_data, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(tiny_run, run)
    few = tmp_path / "few" / "real"
    few.mkdir(parents=True)
    source = os.path.join(upsampling_data["val"], "real")
    for name in sorted(os.listdir(source))[:3]:
        shutil.copy(os.path.join(source, name), few / name)
    code, out, err = _cli(["calibrate", run, "--val", str(tmp_path / "few")])
    assert code == 0, err
    assert "warning: 3 validation images; the temperature and the open-set threshold" in out
    code, out, _ = _cli(["calibrate", run])  # its own 36 validation images
    assert code == 0 and "validation images; the temperature" not in out
    # Per-class radii need 10 validation images of a class: the classes with fewer take the shared one, and say so.
    code, out, err = _cli(["calibrate", run, "--val", str(tmp_path / "few"), "--radii", "per-class"])
    assert code == 0, err
    assert ("warning: --radii per-class: fewer than 10 validation images of real, nearest, transposed; their radius "
            "is the one of every validation image (shared)") in out
    with open(os.path.join(run, "calibration.json"), encoding="utf-8") as f:
        assert json.load(f)["shared_radius_classes"] == [0, 1, 2]
    code, out, _ = _cli(["calibrate", run, "--radii", "per-class"])  # 12 of each class
    assert code == 0 and "warning: --radii per-class" not in out


def test_calibrate_says_how_many_centres_a_class_with_fewer_images_keeps(tiny_run, tmp_path):
    # --means K keeps at most a class's training images as its centres: 24 per class here, so K = 30 keeps 24.
    run = str(tmp_path / "run")
    shutil.copytree(tiny_run, run)
    code, out, err = _cli(["calibrate", run, "--means", "30"])
    assert code == 0, err
    assert ("distances to the nearest of 30 k-means centres of each class (as many as its training images where "
            "fewer: real 24, nearest 24, transposed 24)") in out
    with open(os.path.join(run, "calibration.json"), encoding="utf-8") as f:
        assert json.load(f)["points_per_class"] == [24, 24, 24]
    code, out, err = _cli(["calibrate", run, "--means", "8"])
    assert code == 0 and "of 8 k-means centres of each class);" in out
    with open(os.path.join(run, "calibration.json"), encoding="utf-8") as f:
        assert json.load(f)["points_per_class"] == [8, 8, 8]


def test_calibrate_reads_a_validation_image_that_is_a_training_image_once(tiny_run, upsampling_data, monkeypatch):
    from dnadet_tf import calibrate, predictor
    from dnadet_tf.data import find_images
    from dnadet_tf.runs import RunDir

    model = RunDir(tiny_run).load_model()
    train = find_images(upsampling_data["val"])[:8]
    val = train[2:6] + find_images(upsampling_data["test"])[:3]  # 4 shared, 3 new
    train_features, train_logits = predictor.features_and_logits(model, train)
    read = []
    encode = predictor.features_and_logits

    def counted(model, paths, *args, **kwargs):
        read.append(list(paths))
        return encode(model, paths, *args, **kwargs)

    monkeypatch.setattr(calibrate, "features_and_logits", counted)
    in_train = calibrate.rows_among(val, train)
    features, logits = calibrate.validation_outputs(model, val, in_train, train_features, train_logits)
    assert read == [val[4:]]  # only the images that are not training images
    every_features, every_logits = encode(model, val)
    np.testing.assert_allclose(features, every_features, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, every_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(features[:4], train_features[2:6])
    read.clear()
    calibrate.validation_outputs(model, train, calibrate.rows_among(train, train), train_features, train_logits)
    assert read == []  # --val equal to --data: every image read once, for the training statistics


def test_calibrated_means_is_what_calibration_json_records(tmp_path):
    from dnadet_tf.calibrate import calibrated_means

    assert calibrated_means(str(tmp_path)) is None  # no calibration.json
    path = tmp_path / "calibration.json"
    for report, expected in (({"score": "mahalanobis"}, "class"),  # written before means existed
                             ({"score": "cosine", "means": "image"}, "image"),
                             ({"score": "mahalanobis", "means": 64}, 64),
                             ({"score": "energy", "means": None}, None)):
        path.write_text(json.dumps(report), encoding="utf-8")
        assert calibrated_means(str(tmp_path)) == expected, report


def test_calibration_line_names_what_distances_measure_to():
    from dnadet_tf.calibrate import points_text

    names = ["real", "progan"]
    assert points_text({"means": "class", "points_per_class": [1, 1]}, names) == ""
    assert points_text({"means": None, "points_per_class": None}, names) == ""
    assert points_text({"means": "image", "points_per_class": [5, 3]}, names) == (
        "; distances to the nearest training image of each class")
    assert points_text({"means": 4, "points_per_class": [4, 3]}, names) == (
        "; distances to the nearest of 4 k-means centres of each class (as many as its training images where "
        "fewer: progan 3)")


def test_a_class_with_one_image_that_is_also_its_validation_image_is_refused():
    """Scored with itself left out, a class's only training image leaves the class no statistics (calibrate of an
    `adapt --labeled` run with one image of a class fitted a threshold of 1.6e19, so nothing was ever unknown)."""
    import io
    import types

    from dnadet_tf.calibrate import check_calibration_files
    from dnadet_tf.data import LabeledFiles
    from dnadet_tf.errors import DataError

    model = types.SimpleNamespace(class_names=["real", "gan"])
    labeled = LabeledFiles(["r1.png", "r2.png", "g1.png"], np.array([0, 0, 1]), ["real", "gan"], "labeled")
    with pytest.raises(DataError, match=r"^--data labeled: expected 2 or more training images of every class whose "
                                        r"validation images are training images too .* received one of gan;"):
        check_calibration_files(model, labeled, labeled, "labeled", "labeled", io.StringIO())
    other = LabeledFiles(["g2.png"], np.array([1]), ["real", "gan"], "other")
    check_calibration_files(model, labeled, other, "labeled", "other", io.StringIO())  # other images: fine


def test_radii_and_means_with_a_score_that_reads_the_logits_are_refused(tiny_run):
    """`--radii per-class` or `--means` only change a distance score; with energy or max_softmax they were dropped
    without a word (calibration.json said radii None)."""
    for flags, named in ((["--radii", "per-class"], "--radii"), (["--means", "3"], "--means")):
        code, _, stderr = _cli(["calibrate", tiny_run, "--score", "energy"] + flags)
        assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
        assert stderr.startswith(f"dnadet-tf calibrate: error: {named}: expected with a distance score (mahalanobis, "
                                 f"cosine), received ") and "with score 'energy', which reads the logits." in stderr
