"""`dnadet-tf adapt` and `calibrate`: the calibration of a run `adapt --photos --blend 0` leaves unchanged, the
warning for a --photos folder of few usable photos, and the temperature of a leave-one-out calibration."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from clirun import run_cli
from dnadet_tf import openset
from dnadet_tf.predictor import KerasPredictor
from synthetic import make_photos


def _json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _calibration(run):
    """(threshold, temperature) of the calibration stored in the run's best.keras."""
    calibration = KerasPredictor(run).model.calibration
    return float(calibration.threshold.numpy()), float(calibration.temperature.numpy())


def test_adapt_photos_blend_0_keeps_the_runs_calibration_and_copies_its_file(tiny_run, tmp_path, monkeypatch):
    # A blend of 0 keeps every statistic: the model is the run's, so is its calibration (it was dropped).
    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))
    photos = make_photos(str(tmp_path / "photos"), 5, size=(200, 150))
    out = str(tmp_path / "adapted")
    code, stdout, stderr = run_cli(["adapt", tiny_run, "--photos", photos, "--blend", "0", "--out", out])
    assert code == 0, stderr
    assert _json(os.path.join(out, "calibration.json")) == _json(os.path.join(tiny_run, "calibration.json"))
    assert _calibration(out) == _calibration(tiny_run)
    report = _json(os.path.join(out, "adaptation.json"))
    assert report["calibration_dropped"] is False and report["calibration"].startswith("the run's own, kept")
    assert "and calibration.json (the run's own, kept: --blend 0 left its model unchanged)" in stdout
    assert "calibration was dropped" not in stdout
    # all 5 photos usable: one warning, without the count of unusable ones
    assert stdout.count("fewer than 20") == 1 and (
        f"warning: --photos {photos}: 5 photo(s), fewer than 20: the crops of the mix repeat them" in stdout)


def test_adapt_photos_with_one_usable_photo_warns_in_one_line(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))
    photos = make_photos(str(tmp_path / "photos"), 1, size=(200, 150))
    for i in range(20):  # below the 128 px the crops need: skipped
        Image.new("RGB", (32 + i, 32)).save(os.path.join(photos, f"small{i:02d}.png"))
    line = (f"warning: --photos {photos}: 1 of its 21 photos usable (readable, 128 px or more on the shorter side), "
            "fewer than 20: the crops of the mix repeat that one (20 did as well as 60: docs/results.md, 'Adapting "
            "from real photos alone').")
    out = str(tmp_path / "adapted")
    for again in (False, True):  # the second time the crops are cached: no line names a skipped photo, this one stays
        code, stdout, stderr = run_cli(["adapt", tiny_run, "--photos", photos, "--blend", "0", "--out", out]
                                       + ["--overwrite"] * again)
        assert code == 0, stderr
        assert stdout.splitlines().count(line) == 1
        assert ("skipped" in stderr) != again
    from dnadet_tf.photo_mix import few_photos_line

    os.remove(os.path.join(photos, "small00.png"))
    make_photos(str(tmp_path / "more"), 1, seed=1)
    os.rename(os.path.join(tmp_path, "more", "p00.jpg"), os.path.join(photos, "p01.jpg"))
    line = few_photos_line(photos)
    assert f"--photos {photos}: 2 of its 21 photos usable" in line and "the crops of the mix repeat them" in line


def test_leave_one_out_logits_are_those_of_the_head_made_of_the_others():
    from dnadet_tf.labeled_head import left_out_logits
    from dnadet_tf.prototypes import image_groups, leave_one_out_logits

    # 1-D: class 0 at 0, 1, 10; class 1 at 4, 11
    features = np.array([[0.0], [1.0], [10.0], [4.0], [11.0]])
    labels = np.array([0, 0, 0, 1, 1])
    nearest = leave_one_out_logits(features, labels, 2, image_groups(labels), temperature=2.0)
    np.testing.assert_allclose(nearest[0], [-1 / 2, -16 / 2])  # without itself: 1 of class 0, 4 of class 1
    np.testing.assert_allclose(nearest[3], [-9 / 2, -49 / 2])
    means = leave_one_out_logits(features, labels, 2, temperature=2.0)  # one mean per class
    np.testing.assert_allclose(means[0], [-5.5 ** 2 / 2, -7.5 ** 2 / 2])  # class 0 without it: mean 5.5
    alone = leave_one_out_logits(features[:4], labels[:4], 2, image_groups(labels[:4]))
    assert alone[3, 1] == -np.inf  # a class of one image has no point left without it
    head = {"images_per_class": {"a": 3, "b": 1}, "means_per_class": "all", "temperature": 1.0}
    logits = np.arange(8.0).reshape(4, 2)
    kept = left_out_logits(features[:4], labels[:4], logits, head)
    np.testing.assert_array_equal(kept[3], logits[3])  # ... so its row is the head's own
    np.testing.assert_allclose(kept[:3], alone[:3])


def test_a_labeled_runs_temperature_is_fitted_on_each_image_left_out_of_the_head(tiny_run, upsampling_data,
                                                                                   tmp_path):
    from dnadet_tf.labeled_head import labeled_files
    from dnadet_tf.predictor import features_and_logits

    labeled = tmp_path / "labeled"
    for name in ("real", "nearest", "transposed"):
        os.makedirs(labeled / name)
        for image in sorted(os.listdir(os.path.join(upsampling_data["val"], name)))[:4]:
            os.symlink(os.path.join(upsampling_data["val"], name, image), labeled / name / image)
    # one image of another class among the real ones: its nearest other image is of its own generator
    os.symlink(os.path.join(upsampling_data["val"], "nearest", "0010.png"), labeled / "real" / "x0010.png")
    out = str(tmp_path / "adapted")
    code, stdout, stderr = run_cli(["adapt", tiny_run, "--labeled", str(labeled), "--out", out])
    assert code == 0, stderr
    model = KerasPredictor(out).model
    files = labeled_files([str(labeled)], model.class_names, model.preprocessing)[0]
    features, logits = features_and_logits(model, files.paths)
    features = features.astype(np.float64)
    head_temperature = _json(os.path.join(out, "adaptation.json"))["labeled"]["temperature"]
    # by hand: each image's class logits are minus its squared distance to the nearest other image of the class
    squared = ((features[:, None] - features[None]) ** 2).sum(-1)
    np.fill_diagonal(squared, np.inf)
    left_out = np.stack([-squared[:, files.labels == c].min(axis=1) for c in range(3)], axis=1) / head_temperature
    assert np.mean(left_out.argmax(1) == files.labels) < 1.0
    expected = openset.fit_temperature(left_out, files.labels)
    assert openset.fit_temperature(logits, files.labels) == pytest.approx(1.0)  # in-sample: every image right
    assert abs(expected - 1.0) > 0.01
    assert _json(os.path.join(out, "calibration.json"))["temperature"] == pytest.approx(expected, rel=1e-3)
    # `calibrate` of it fits the same, from its labeled images or given them
    for argv in ([], ["--data", str(labeled), "--val", str(labeled)]):
        code, _, stderr = run_cli(["calibrate", out] + argv)
        assert code == 0, stderr
        assert _json(os.path.join(out, "calibration.json"))["temperature"] == pytest.approx(expected, rel=1e-3)
