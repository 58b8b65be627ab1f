"""`dnadet-tf adapt`: BatchNorm statistics re-estimated on unlabeled images of another content."""
import argparse
import json
import os

import keras
import numpy as np
import pytest

from clirun import export_rows, run_cli as _cli
from dnadet_tf import openset
from dnadet_tf.adaptation import adapt_batchnorm, blend_statistics, estimate_batchnorm_statistics
from dnadet_tf.model import batchnorm_layers, probabilities
from dnadet_tf.predictor import KerasPredictor
from dnadet_tf.runs import RunDir


def _pixels(seed, count, size=32):
    return np.random.default_rng(seed).uniform(-1, 1, (count, size, size, 3)).astype(np.float32)


def _statistics(model):
    return [(layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy())
            for layer in batchnorm_layers(model)]


def test_estimated_statistics_are_those_of_the_images_and_leave_the_model_as_it_was(tiny_run):
    model = RunDir(tiny_run).load_model()
    before = _statistics(model)
    first, second = _pixels(1, 3), _pixels(2, 1)
    statistics = estimate_batchnorm_statistics(model, [first, second])
    assert len(statistics) == 8  # one BatchNorm after each of the encoder's 8 convolutions
    # The first layer's input is the first convolution's output: mean and (biased) variance over every
    # position of the 4 images.
    outputs = model.backbone.get_layer("stage1_conv1")(np.concatenate([first, second])).numpy().astype(np.float64)
    np.testing.assert_allclose(statistics[0][0], outputs.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(statistics[0][1], outputs.var(axis=(0, 1, 2)), rtol=1e-4, atol=1e-7)
    # Every layer's: the same whatever the batching and the order of the images (a batch of one class
    # must not normalise the next layers' inputs by its own statistics).
    for other in estimate_batchnorm_statistics(model, [second, first]), estimate_batchnorm_statistics(
            model, [np.concatenate([first, second])]):
        for (mean, variance), (other_mean, other_variance) in zip(statistics, other):
            np.testing.assert_allclose(other_mean, mean, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(other_variance, variance, rtol=1e-4, atol=1e-7)
    for (mean, variance), (old_mean, old_variance) in zip(_statistics(model), before):
        np.testing.assert_array_equal(mean, old_mean)
        np.testing.assert_array_equal(variance, old_variance)


def test_first_stage_keeps_the_earlier_stages_and_estimates_the_later_ones_as_in_a_full_pass(tiny_run):
    model = RunDir(tiny_run).load_model()
    before = _statistics(model)
    images = [_pixels(4, 4)]
    full = estimate_batchnorm_statistics(model, images)
    names = [layer.name for layer in batchnorm_layers(model)]
    started = []
    later = estimate_batchnorm_statistics(model, images, first_stage=3,
                                          progress=lambda index, count, name: started.append((index, count, name)))
    assert started == [(1, 4, "stage3_bn1"), (2, 4, "stage3_bn2"), (3, 4, "stage4_bn1"), (4, 4, "stage4_bn2")]
    for name, (mean, variance), own, whole in zip(names, later, before, full):
        if name.startswith(("stage1_", "stage2_")):  # kept as trained
            np.testing.assert_array_equal(mean, own[0])
            np.testing.assert_array_equal(variance, own[1])
        else:
            # Estimated with stages 1-2 at their own statistics, so not those of a full pass ...
            assert np.abs(mean - whole[0]).max() > 1e-4
    # ... but those of the images' inputs to stage 3 through the stages 1-2 as trained:
    stage3 = batchnorm_layers(model)[4]
    inputs = keras.Model(model.backbone.input, stage3.input)(images[0], training=False).numpy().astype(np.float64)
    np.testing.assert_allclose(later[4][0], inputs.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(later[4][1], inputs.var(axis=(0, 1, 2)), rtol=1e-4, atol=1e-7)
    for (mean, variance), (old_mean, old_variance) in zip(_statistics(model), before):  # the model is left as it was
        np.testing.assert_array_equal(mean, old_mean)
        np.testing.assert_array_equal(variance, old_variance)
    with pytest.raises(ValueError, match=r"first_stage: expected one of the encoder's stages \[1, 2, 3, 4\], received 5"):
        estimate_batchnorm_statistics(model, images, first_stage=5)


def test_adapting_undoes_a_change_of_contrast_of_the_content(tiny_run):
    """The encoder's convolutions have no bias and pad with zeros, so pixels scaled by 0.4 scale every
    convolution's output by 0.4: statistics re-estimated on the scaled images undo it, and the adapted
    model answers the scaled images as the model adapted to the originals answers the originals."""
    images = _pixels(3, 8)
    dimmed = 0.4 * images
    original, scaled = RunDir(tiny_run).load_model(), RunDir(tiny_run).load_model()
    unadapted = probabilities(scaled, dimmed).numpy()
    adapt_batchnorm(original, [images])
    adapt_batchnorm(scaled, [dimmed])
    expected = probabilities(original, images).numpy()
    np.testing.assert_allclose(probabilities(scaled, dimmed).numpy(), expected, atol=1e-4)
    assert np.abs(unadapted - expected).max() > 0.1  # without adapting, the change of contrast shows


def test_blend_mixes_the_statistics_as_a_mixture_of_the_two_contents():
    own, new = [(np.array([0.0]), np.array([1.0]))], [(np.array([2.0]), np.array([3.0]))]
    (mean, variance), = blend_statistics(own, new, 0.5)
    # mixture of N(0, 1) and N(2, 3) in equal shares: mean 1, variance (1 + 1) / 2 + (3 + 1) / 2
    assert mean[0] == pytest.approx(1.0) and variance[0] == pytest.approx(3.0)
    assert blend_statistics(own, new, 0.0)[0][0][0] == 0.0 and blend_statistics(own, new, 1.0)[0][1][0] == 3.0
    with pytest.raises(ValueError, match="blend: expected a number from 0 to 1, received 1.5"):
        adapt_batchnorm(None, [], blend=1.5)


def test_adapt_command_writes_a_run_that_predicts_and_keeps_the_source(tiny_run, upsampling_data, tmp_path):
    out = str(tmp_path / "adapted")
    source_model = os.path.join(tiny_run, "best.keras")
    mtime = os.path.getmtime(source_model)
    code, stdout, stderr = _cli(["adapt", tiny_run, "--images", upsampling_data["test"], "--out", out])
    assert code == 0, stderr
    assert "BatchNorm statistics of 36 images in stages 3-4" in stdout and "layer 4/4 (stage4_bn2)" in stdout
    assert "open-set calibration fitted on the 36 images, each labeled by the adapted run's answer (" in stdout
    with open(os.path.join(out, "adaptation.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["images"] == 36 and report["blend"] == 1.0 and report["calibration_dropped"] is False
    assert sum(report["answers_before"].values()) == 36
    assert sorted(report["answers_before"]) == sorted(RunDir(tiny_run).class_names)
    assert ("warning:" in stdout) == (max(report["answers_before"].values()) > 0.6 * 36)
    assert [layer["name"] for layer in report["layers"]][:2] == ["stage1_bn1", "stage1_bn2"]
    assert os.path.getmtime(source_model) == mtime
    adapted, source = KerasPredictor(out), KerasPredictor(tiny_run)
    assert adapted.class_names == source.class_names
    # every weight but the BatchNorm statistics and the open-set calibration is the run's; the statistics changed
    source_weights = {weight.path: weight.numpy() for weight in source.model.weights}
    moved = 0
    for weight in adapted.model.weights:
        if weight.path.startswith("calibration"):
            continue
        if "moving" in weight.path:
            moved += not np.array_equal(weight.numpy(), source_weights[weight.path])
        else:
            np.testing.assert_array_equal(weight.numpy(), source_weights[weight.path])
    assert moved == 8  # stages 3-4 by default: 4 BatchNorms, each its mean and variance
    code, stdout, stderr = _cli(["predict", "--model", out, os.path.join(upsampling_data["test"], "real")])
    assert code == 0, stderr


def test_adapt_images_refits_the_open_set_on_the_images_labeled_by_its_answers(tiny_run, upsampling_data,
                                                                                  tmp_path):
    from dnadet_tf.predictor import features_and_logits
    from dnadet_tf.data import find_images

    out = str(tmp_path / "adapted")
    code, stdout, stderr = _cli(["adapt", tiny_run, "--images", upsampling_data["test"], "--out", out])
    assert code == 0, stderr
    adapted, source = KerasPredictor(out), KerasPredictor(tiny_run)
    with open(os.path.join(out, "calibration.json"), encoding="utf-8") as f:
        calibration = json.load(f)
    assert calibration["pseudo_labels"] is True and calibration["val_left_out"] == calibration["val_images"] == 36
    assert calibration["data"] == calibration["val"] == [os.path.abspath(upsampling_data["test"])]
    assert "val_nll_after" not in calibration  # measured against the answers themselves, it says nothing
    # The temperature is the run's own; the class statistics are those of the answers under the adapted statistics,
    # each image scored with the statistics of the other 35 (by hand here).
    assert float(adapted.model.calibration.temperature.numpy()) == pytest.approx(
        float(source.model.calibration.temperature.numpy()))
    paths = sorted(find_images(upsampling_data["test"]))
    features, logits = features_and_logits(adapted.model, paths)
    answers = logits.argmax(-1)
    assert {name: int(np.sum(answers == c)) for c, name in enumerate(adapted.class_names)} == calibration["answers"]
    counts = ", ".join(f"{calibration['answers'][name]} {name}" for name in adapted.class_names)
    assert f"({counts})" in stdout
    left_out = openset.leave_one_out_distances("mahalanobis", features, answers, 3, range(36)).min(axis=1)
    assert calibration["threshold"] == pytest.approx(np.quantile(left_out, openset.KNOWN_RATE), rel=1e-5)
    assert "images of architectures the run never saw among them count as known" in stdout
    # `calibrate` of it without --data would fit on the content before adaptation: refused, its calibration kept.
    before = open(os.path.join(out, "calibration.json"), "rb").read()
    code, _, stderr = _cli(["calibrate", out])
    assert code == 2 and stderr.strip() == (
        f"dnadet-tf calibrate: error: {out}: adapted by 'dnadet-tf adapt' to images of other content "
        f"(adaptation.json), where config.json's training data {os.path.abspath(upsampling_data['train'])} is the "
        "content before it; expected --data and --val with labeled images of the content it was adapted to.")
    assert open(os.path.join(out, "calibration.json"), "rb").read() == before
    # Three images cannot give each of three classes two: the calibration is dropped, and a line says why.
    few = tmp_path / "few"
    few.mkdir()
    for path in paths[:3]:
        os.symlink(path, few / os.path.basename(path))
    out = str(tmp_path / "few-adapted")
    code, stdout, stderr = _cli(["adapt", tiny_run, "--images", str(few), "--out", out])
    assert code == 0, stderr
    assert ("open-set calibration not refitted on the images: expected 2 or more images answered as each class to "
            "fit the open set on, received fewer for ") in stdout and "of 3 images." in stdout
    assert "its open-set calibration was dropped" in stdout and KerasPredictor(out).open_set is None


def test_adapt_run_refuses_settings_it_cannot_use_before_any_work(tiny_run, tmp_path, monkeypatch):
    from dnadet_tf import adaptation
    from dnadet_tf.errors import DnadetError

    monkeypatch.setattr(adaptation, "RunDir", lambda *args: (_ for _ in ()).throw(AssertionError("read the run")))
    out = str(tmp_path / "adapted")
    for settings, message in (
            ({"images": ["a"], "blend": 1.5}, "blend: expected a number from 0 to 1, received 1.5."),
            ({"images": ["a"], "first_stage": 0}, "first_stage: expected an encoder stage from 1 to 4, received 0."),
            ({"photos": "p", "means_per_class": 2}, "means_per_class: expected with `labeled`, received 2 with "
                                                    "`photos`."),
            ({"labeled": ["a", "b"], "means_per_class": 3}, "means_per_class: expected 1 or all with several "
             "`labeled` DATA (each DATA is already its own group of means), received 3 with 2 DATA."),
            ({"images": ["a"], "fakes": "f"}, "fakes: expected with `photos` (the fakes to lay over them), received "
                                              "with `images`."),
            ({"images": ["a"], "photos": "p"}, "images, photos and labeled: expected exactly one of them, received "
                                               "images and photos.")):
        settings = {"images": None, **settings}
        with pytest.raises(DnadetError) as error:
            adaptation.adapt_run(tiny_run, out=out, **settings)
        assert str(error.value) == message
    assert not os.path.exists(out)


@pytest.mark.parametrize("argv, message", [
    (["--blend", "2"], "dnadet-tf adapt: error: --blend: expected a number from 0 to 1, received 2.0."),
    (["--batch-size", "0"], "dnadet-tf adapt: error: --batch-size: expected a positive integer, received 0."),
    (["--first-stage", "5"], "dnadet-tf adapt: error: --first-stage: expected an encoder stage from 1 to 4, received 5."),
])
def test_adapt_flags_are_checked_in_one_line(tiny_run, upsampling_data, tmp_path, argv, message):
    out = str(tmp_path / "adapted")
    code, _, stderr = _cli(["adapt", tiny_run, "--images", upsampling_data["test"], "--out", out] + argv)
    assert code == 2 and stderr.strip() == message
    assert not os.path.exists(out)


def test_adapt_first_stage_moves_only_the_later_stages_statistics(tiny_run, upsampling_data, tmp_path):
    out = str(tmp_path / "adapted")
    code, stdout, stderr = _cli(["adapt", tiny_run, "--images", upsampling_data["test"], "--out", out,
                                 "--first-stage", "1", "--overwrite"])
    assert code == 0, stderr
    assert "BatchNorm statistics of 36 images, one pass" in stdout and "layer 8/8 (stage4_bn2)" in stdout
    with open(os.path.join(out, "adaptation.json"), encoding="utf-8") as f:
        assert all(layer["mean_shift_in_std"] > 0.0 for layer in json.load(f)["layers"])  # every stage moved
    code, stdout, stderr = _cli(["adapt", tiny_run, "--images", upsampling_data["test"], "--out", out,
                                 "--overwrite"])
    assert code == 0, stderr
    with open(os.path.join(out, "adaptation.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["first_stage"] == 3
    moves = {layer["name"]: layer for layer in report["layers"]}
    assert all(moves[name]["mean_shift_in_std"] == 0.0 and moves[name]["std_ratio"] == pytest.approx(1.0)
               for name in moves if name.startswith(("stage1_", "stage2_")))
    assert all(moves[name]["mean_shift_in_std"] > 0.0 for name in moves if name.startswith(("stage3_", "stage4_")))


def test_adapt_refuses_the_run_itself_an_occupied_out_and_a_folder_without_images(tiny_run, upsampling_data, tmp_path):
    code, _, stderr = _cli(["adapt", tiny_run, "--images", upsampling_data["test"], "--out", tiny_run])
    assert code == 2 and "expected a new folder for the adapted run, received the run itself" in stderr
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    code, _, stderr = _cli(["adapt", tiny_run, "--images", upsampling_data["test"], "--out", str(occupied)])
    assert code == 2 and "--overwrite" in stderr and len(stderr.strip().splitlines()) == 1
    assert "resume" not in stderr  # adapt has no --resume to offer
    assert (occupied / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "adapted"
    code, _, stderr = _cli(["adapt", tiny_run, "--images", str(empty), "--out", str(out)])
    assert code == 2 and stderr.strip() == f"dnadet-tf adapt: error: {empty}: expected image files, found none."
    assert not out.exists()


def test_adapt_skips_a_broken_file_with_one_line_and_warns_about_few_images(tiny_run, upsampling_data, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    real = os.path.join(upsampling_data["test"], "real")
    for name in sorted(os.listdir(real))[:4]:
        os.symlink(os.path.join(real, name), folder / name)
    (folder / "broken.png").write_bytes(b"not a png")
    code, stdout, stderr = _cli(["adapt", tiny_run, "--images", str(folder), "--out", str(tmp_path / "a")])
    assert code == 0, stderr
    assert "broken.png" in stdout + stderr
    assert "warning: 4 images to adapt on" in stdout


def test_adapt_warns_when_the_run_sees_one_class_in_the_images(tiny_run, upsampling_data, tmp_path, monkeypatch):
    import dnadet_tf.adaptation as adaptation

    monkeypatch.setattr(adaptation, "answer_counts", lambda model, batches: np.array([0, 12, 0]))
    code, stdout, stderr = _cli(["adapt", tiny_run, "--images", os.path.join(upsampling_data["test"], "nearest"),
                                 "--out", str(tmp_path / "a")])
    assert code == 0, stderr
    assert "attributes 12 of the 12 images to 'nearest'; statistics of one class are not the content's" in stdout


def test_adapt_photos_makes_a_mix_of_crops_and_transplanted_training_fakes_and_adapts_to_it(
        tiny_run, upsampling_data, tmp_path, monkeypatch):
    from PIL import Image

    from dnadet_tf.config import PHOTO_FIRST_STAGE
    from dnadet_tf.photo_mix import PHOTO_BLEND, PHOTO_REAL, photo_mix
    from dnadet_tf.images import load_rgb
    from synthetic import make_photos

    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))
    photos = make_photos(str(tmp_path / "photos"), 5, size=(200, 150))
    out = str(tmp_path / "adapted")
    code, stdout, stderr = _cli(["adapt", tiny_run, "--photos", photos, "--out", out])
    assert code == 0, stderr
    # 24 training fakes of each of the two fake classes, fewer than 40: every one of them is laid over a crop.
    assert f"--photos {photos}: {PHOTO_REAL} crops as the real images, 24 nearest, 24 transposed made" in stdout
    assert f"BatchNorm statistics of {PHOTO_REAL + 48} images, one pass per layer" in stdout  # every stage
    assert f"warning: --photos {photos}: 5 photo(s), fewer than 20: the crops of the mix repeat them" in stdout
    assert "warning: the training data holds fewer than 40 fakes of nearest (24), transposed (24); the mix" in stdout
    # Neither the run's calibration nor one fitted on the made mix describes the new content: dropped, and why.
    assert ("its open-set calibration was dropped (it described the training content; one fitted on the mix made of "
            "the photos flags most of the new content's fakes: docs/results.md, 'The open set after adapt --photos'): "
            f"'dnadet-tf calibrate {out} --data LABELED --val LABELED'") in stdout
    assert KerasPredictor(out).open_set is None
    with open(os.path.join(out, "adaptation.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["blend"] == PHOTO_BLEND == 0.25  # the default with --photos (1 with --images)
    assert report["first_stage"] == PHOTO_FIRST_STAGE == 1  # the default with --photos (3 with --images)
    assert report["inputs"] == [os.path.abspath(photos)]
    made = report["made_from_photos"]
    assert made["real_crops"] == PHOTO_REAL and made["fakes_per_class"] == {"nearest": 24, "transposed": 24}
    assert made["fakes_from"] == os.path.abspath(RunDir(tiny_run).config.data)
    # Smooth photos have less fine texture than the training reals: the residuals are scaled down.
    assert 0.0 < made["residual_scale"] < 1.0
    sheet = load_rgb(os.path.join(out, "adaptation_images.png"))
    assert sheet.shape[0] == 3 * (128 + 4) + 4  # a row for the real crops and one per fake class
    # What was adapted to is the mix `photo_mix` makes: adapting to it given as images is the same model.
    folder = tmp_path / "mix"
    crops, fakes, _ = photo_mix(tiny_run, photos, str(folder))
    for i, crop in enumerate(crops):
        Image.open(crop).save(folder / f"real_{i:03d}.png")
    again = str(tmp_path / "again")
    code, _, stderr = _cli(["adapt", tiny_run, "--images", str(folder), "--out", again, "--blend", str(PHOTO_BLEND),
                            "--first-stage", str(PHOTO_FIRST_STAGE)])
    assert code == 0, stderr
    for one, other in zip(KerasPredictor(out).model.weights, KerasPredictor(again).model.weights):
        np.testing.assert_allclose(one.numpy(), other.numpy(), rtol=1e-5, atol=1e-6)
    source = {weight.path: weight.numpy() for weight in KerasPredictor(tiny_run).model.weights}

    def moved_in(run):
        return [weight.path for weight in KerasPredictor(run).model.weights
                if not np.array_equal(weight.numpy(), source[weight.path])]

    assert len(moved_in(out)) == 16  # the moving mean and variance of all 8 BatchNorms
    # --first-stage still chooses: from stage 3 only the later stages' statistics move.
    later = str(tmp_path / "later")
    code, _, stderr = _cli(["adapt", tiny_run, "--photos", photos, "--out", later, "--first-stage", "3"])
    assert code == 0, stderr
    moved = moved_in(later)
    assert len(moved) == 8 and all("stage3" in path or "stage4" in path for path in moved)


def test_adapt_photos_errors_name_the_flag_and_write_nothing(tiny_run, upsampling_data, tmp_path, monkeypatch):
    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "adapted"
    missing = str(tmp_path / "missing")
    code, _, stderr = _cli(["adapt", tiny_run, "--photos", missing, "--out", str(out)])
    assert code == 2 and stderr.strip() == (f"dnadet-tf adapt: error: --photos: expected a folder of photos, "
                                            f"received {missing!r}, which is not a folder.")
    monkeypatch.chdir(tmp_path)  # `--extra-real packaged` names the shipped photos; `--photos packaged` a folder only
    code, _, stderr = _cli(["adapt", tiny_run, "--photos", "packaged", "--out", str(out)])
    assert code == 2 and stderr.strip() == ("dnadet-tf adapt: error: --photos: expected a folder of photos, "
                                            "received 'packaged', which is not a folder.")
    code, _, stderr = _cli(["adapt", tiny_run, "--images", upsampling_data["test"], "--fakes",
                            upsampling_data["train"], "--out", str(out)])
    assert code == 2 and stderr.strip() == ("dnadet-tf adapt: error: --fakes: expected with --photos (the fakes to "
                                            "lay over them), received with --images.")
    small = tmp_path / "small"
    small.mkdir()
    real = os.path.join(upsampling_data["test"], "real")
    os.symlink(os.path.join(real, sorted(os.listdir(real))[0]), small / "tiny.png")  # 32 px, below the 128 px crops
    code, _, stderr = _cli(["adapt", tiny_run, "--photos", str(small), "--out", str(out)])
    lines = stderr.strip().splitlines()  # the photo skipped, named; then the error: none usable
    assert code == 2 and len(lines) == 2
    assert lines[0].startswith(f"warning: --photos {small}: skipped ") and "tiny.png" in lines[0]
    assert lines[1].startswith(f"dnadet-tf adapt: error: --photos {small}: none of its 1 photos is usable")
    code, _, stderr = _cli(["adapt", tiny_run, "--photos", str(small), "--fakes", str(tmp_path / "nothing"),
                            "--out", str(out)])
    assert code == 2 and "nothing: no such file or folder" in stderr
    assert not out.exists()


def _labeled_tree(source, folder, per_class, classes=("real", "nearest", "transposed")):
    """FOLDER/<class>/ holding links to the first `per_class` images of each class of the tree `source`."""
    for name in classes:
        os.makedirs(folder / name)
        for image in sorted(os.listdir(os.path.join(source, name)))[:per_class]:
            os.symlink(os.path.join(source, name, image), folder / name / image)
    return folder


def _labeled_images(folders, class_names):
    """(paths, labels (N,) ints) of the images `_labeled_tree` linked into `folders`, folder by folder, each
    folder's classes in the order of `class_names` (labels: their indices there)."""
    pairs = [(str(folder / name / image), label) for folder in folders for label, name in enumerate(class_names)
             for image in sorted(os.listdir(folder / name))]
    return [path for path, _ in pairs], np.array([label for _, label in pairs])


def _inverted_copies(source, folder, per_class, prefix=""):
    """Another "content": the first `per_class` images of each class of the tree `source`, colours inverted, saved
    as FOLDER/<class>/<prefix><name> (the class folders made when missing)."""
    from PIL import Image

    for name in ("real", "nearest", "transposed"):
        os.makedirs(folder / name, exist_ok=True)
        for image in sorted(os.listdir(os.path.join(source, name)))[:per_class]:
            pixels = np.asarray(Image.open(os.path.join(source, name, image)).convert("RGB"))
            Image.fromarray(255 - pixels).save(folder / name / f"{prefix}{image}")
    return folder


def _nearest_mean_answers(run, labeled_paths, labeled_labels, paths):
    """What the nearest of the class means of the labeled images' features (the run's encoder as it is) answers
    for `paths`, computed apart from the model's head."""
    from dnadet_tf.predictor import features_and_logits

    model = RunDir(run).load_model()
    features = features_and_logits(model, labeled_paths)[0].astype(np.float64)
    labels = np.asarray(labeled_labels)
    means = np.stack([features[labels == k].mean(0) for k in range(labels.max() + 1)])
    queries = features_and_logits(model, paths)[0].astype(np.float64)
    return ((queries[:, None, :] - means[None]) ** 2).sum(-1).argmin(-1)


def test_adapt_labeled_makes_the_head_the_nearest_class_mean_of_the_labeled_images(tiny_run, upsampling_data,
                                                                                    tmp_path):
    labeled = _labeled_tree(upsampling_data["val"], tmp_path / "labeled", 3)
    out = str(tmp_path / "adapted")
    code, stdout, stderr = _cli(["adapt", tiny_run, "--labeled", str(labeled), "--means-per-class", "1", "--out",
                                 out])
    assert code == 0, stderr
    assert ("logits: the nearest of the class means of 9 labeled images (3 real, 3 nearest, 3 transposed); "
            "leave-one-out accuracy over them") in stdout
    assert "BatchNorm statistics of 9 images, one pass per layer" in stdout  # every stage by default
    # a head of class means gets an open-set score of class means
    assert "open-set calibration fitted on the 9 labeled images, each scored with the class statistics of the " \
           "others" in stdout
    with open(os.path.join(out, "calibration.json"), encoding="utf-8") as f:
        assert json.load(f)["means"] == "class"
    with open(os.path.join(out, "adaptation.json"), encoding="utf-8") as f:
        report = json.load(f)
    head = report["labeled"]
    assert head["images_per_class"] == {"real": 3, "nearest": 3, "transposed": 3} and head["classes_added"] == []
    assert report["first_stage"] == 1 and report["blend"] == 1.0 and head["temperature"] > 0
    source, adapted = KerasPredictor(tiny_run), KerasPredictor(out)
    assert adapted.class_names == source.class_names
    source_weights = {weight.path: weight.numpy() for weight in source.model.weights}
    moved = 0
    for weight in adapted.model.weights:
        if "moving" in weight.path:
            moved += not np.array_equal(weight.numpy(), source_weights[weight.path])
        elif "logits" not in weight.path and "calibration" not in weight.path:  # the calibration is refitted
            np.testing.assert_array_equal(weight.numpy(), source_weights[weight.path])
    assert moved == 16  # every stage: 8 BatchNorms, each its mean and variance
    # the adapted model answers, for held-out images, the class whose labeled images' mean feature is nearest
    files = RunDir(out).class_names
    labeled_paths = [str(labeled / name / image) for name in files for image in sorted(os.listdir(labeled / name))]
    labeled_labels = [k for k, name in enumerate(files) for _ in os.listdir(labeled / name)]
    tests = [os.path.join(upsampling_data["test"], name, image) for name in files
             for image in sorted(os.listdir(os.path.join(upsampling_data["test"], name)))]
    from dnadet_tf.predictor import predict_files

    np.testing.assert_array_equal(predict_files(adapted, tests).argmax(-1),
                                  _nearest_mean_answers(out, labeled_paths, labeled_labels, tests))
    # the leave-one-out accuracy reported: each labeled image against the class means of the others, by hand
    from dnadet_tf.predictor import features_and_logits

    features = features_and_logits(adapted.model, labeled_paths)[0].astype(np.float64)
    labels = np.asarray(labeled_labels)
    right = 0
    for i in range(len(labels)):
        others = np.arange(len(labels)) != i
        means = np.stack([features[others & (labels == k)].mean(0) for k in range(len(files))])
        right += int(((means - features[i]) ** 2).sum(-1).argmin() == labels[i])
    assert head["leave_one_out_accuracy"] == pytest.approx(right / len(labels))


def test_adapt_labeled_with_two_contents_keeps_a_mean_per_content_and_class_and_exports(tiny_run, upsampling_data,
                                                                                        tmp_path):
    from dnadet_tf.predictor import features_and_logits
    from dnadet_tf.predictor import predict_files

    first = _labeled_tree(upsampling_data["val"], tmp_path / "first", 2)
    second = _inverted_copies(upsampling_data["test"], tmp_path / "second", 2)
    out = str(tmp_path / "both")
    code, stdout, stderr = _cli(["adapt", tiny_run, "--labeled", str(first), str(second), "--means-per-class", "1",
                                 "--out", out])
    assert code == 0, stderr
    assert ("logits: the nearest of the class means of 12 labeled images in 2 groups (a mean per group and class) "
            "(4 real, 4 nearest, 4 transposed)") in stdout
    with open(os.path.join(out, "adaptation.json"), encoding="utf-8") as f:
        head = json.load(f)["labeled"]
    assert head["groups"] == 2 and head["data"] == [str(first), str(second)]
    adapted = KerasPredictor(out)
    assert adapted.model.prototypes_per_class == 2 and adapted.class_names == ["real", "nearest", "transposed"]
    # the answer is the class of the nearest of the six (content, class) means, computed apart from the head
    names = adapted.class_names
    paths = [str(root / name / image) for root in (first, second) for name in names
             for image in sorted(os.listdir(root / name))]
    labels = np.array([k for _ in range(2) for k in range(3) for _ in range(2)])
    groups = np.repeat([0, 1], 6)
    features = features_and_logits(adapted.model, paths)[0].astype(np.float64)
    means = np.stack([features[(groups == g) & (labels == k)].mean(0) for g in range(2) for k in range(3)])
    queries = [os.path.join(upsampling_data["test"], name, image) for name in names
               for image in sorted(os.listdir(os.path.join(upsampling_data["test"], name)))]
    query_features = features_and_logits(adapted.model, queries)[0].astype(np.float64)
    nearest = ((query_features[:, None, :] - means[None]) ** 2).sum(-1).argmin(-1) % 3
    np.testing.assert_array_equal(predict_files(adapted, queries).argmax(-1), nearest)
    rows = export_rows(out, tmp_path / "exports", upsampling_data["test"])
    assert rows["savedmodel"]["max_abs_diff"] < 1e-5 and rows["float32"]["max_abs_diff"] < 1e-5
    assert rows["int8"]["top1_agreement"] >= 0.75


def test_adapt_labeled_means_per_class_finds_the_groups_by_k_means_in_one_folder(tiny_run, upsampling_data, tmp_path):
    from sklearn.cluster import KMeans

    from dnadet_tf.predictor import features_and_logits
    from dnadet_tf.predictor import predict_files

    mixed = _labeled_tree(upsampling_data["val"], tmp_path / "mixed", 3)  # one folder, two "contents"
    _inverted_copies(upsampling_data["test"], mixed, 3, prefix="inverted-")
    out = str(tmp_path / "clustered")
    code, stdout, stderr = _cli(["adapt", tiny_run, "--labeled", str(mixed), "--means-per-class", "2", "--out", out])
    assert code == 0, stderr
    assert ("logits: the nearest of the class means of 18 labeled images in 2 clusters per class (k-means) "
            "(6 real, 6 nearest, 6 transposed)") in stdout
    with open(os.path.join(out, "adaptation.json"), encoding="utf-8") as f:
        head = json.load(f)["labeled"]
    assert head["groups"] == 2 and head["means_per_class"] == 2
    adapted = KerasPredictor(out)
    assert adapted.model.prototypes_per_class == 2
    # the answer is the class of the nearest of the six cluster means, k-means run here apart from the package
    names = adapted.class_names
    paths = [str(mixed / name / image) for name in names for image in sorted(os.listdir(mixed / name))]
    labels = np.repeat(np.arange(3), 6)
    features = features_and_logits(adapted.model, paths)[0].astype(np.float64)
    means, mean_classes = [], []
    for k in range(3):
        members = features[labels == k]
        clusters = KMeans(2, n_init=10, random_state=0).fit_predict(members)
        means += [members[clusters == c].mean(0) for c in range(2)]
        mean_classes += [k, k]
    queries = [os.path.join(upsampling_data["test"], name, image) for name in names
               for image in sorted(os.listdir(os.path.join(upsampling_data["test"], name)))]
    query_features = features_and_logits(adapted.model, queries)[0].astype(np.float64)
    nearest = np.asarray(mean_classes)[((query_features[:, None, :] - np.stack(means)[None]) ** 2).sum(-1).argmin(-1)]
    np.testing.assert_array_equal(predict_files(adapted, queries).argmax(-1), nearest)
    # The open-set score measures to the same two centres per class (row g * 3 + c), each labeled image left out.
    assert ("each scored by its distance to the nearest of 2 k-means centres of the others of each class: score "
            "'mahalanobis'") in stdout
    with open(os.path.join(out, "calibration.json"), encoding="utf-8") as f:
        assert json.load(f)["means"] == 2
    centres = adapted.model.calibration.class_means.numpy().astype(np.float64)
    assert centres.shape == (6, features.shape[1])
    for k in range(3):
        found = sorted(centres[[k, 3 + k]].tolist())
        np.testing.assert_allclose(found, sorted(np.stack(means[2 * k:2 * k + 2]).tolist()), rtol=1e-4, atol=1e-5)


def test_adapt_labeled_answers_the_class_of_the_nearest_labeled_image_by_default(tiny_run, upsampling_data,
                                                                                  tmp_path):
    from dnadet_tf.predictor import features_and_logits
    from dnadet_tf.predictor import predict_files

    first = _labeled_tree(upsampling_data["val"], tmp_path / "first", 3)
    second = _labeled_tree(upsampling_data["test"], tmp_path / "second", 2)
    out = str(tmp_path / "nearest")
    # the default (--means-per-class all), with two DATA: their groups change nothing
    code, stdout, stderr = _cli(["adapt", tiny_run, "--labeled", str(first), str(second), "--out", out])
    assert code == 0, stderr
    assert ("logits: the class of the nearest of 15 labeled images (each its own mean) (5 real, 5 nearest, "
            "5 transposed)") in stdout
    with open(os.path.join(out, "adaptation.json"), encoding="utf-8") as f:
        head = json.load(f)["labeled"]
    assert head["means_per_class"] == "all" and head["groups"] == 5
    adapted = KerasPredictor(out)
    names = adapted.class_names
    paths, labels = _labeled_images((first, second), names)
    features = features_and_logits(adapted.model, paths)[0].astype(np.float64)
    queries = [os.path.join(upsampling_data["train"], name, image) for name in names
               for image in sorted(os.listdir(os.path.join(upsampling_data["train"], name)))[:4]]
    query_features = features_and_logits(adapted.model, queries)[0].astype(np.float64)
    nearest = labels[((query_features[:, None, :] - features[None]) ** 2).sum(-1).argmin(-1)]
    np.testing.assert_array_equal(predict_files(adapted, queries).argmax(-1), nearest)
    # leave-one-out: each labeled image named by the nearest of the others
    distances = ((features[:, None, :] - features[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    assert head["leave_one_out_accuracy"] == pytest.approx(np.mean(labels[distances.argmin(-1)] == labels))
    # temperature: the smaller of a quarter of the mean squared distance to the nearest image of another class and
    # the mean squared distance to the nearest other image of the same class
    same = labels[:, None] == labels[None]
    other_class = np.where(same, np.inf, distances).min(-1).mean() / 4
    same_class = np.where(same, distances, np.inf).min(-1).mean()
    assert head["temperature"] == pytest.approx(min(other_class, same_class), rel=1e-6)


def test_a_grouped_adapted_run_takes_calibrate_back_and_predicts_the_open_set_fields(tiny_run, upsampling_data,
                                                                                      tmp_path):
    # `adapt --labeled` refits the open-set calibration on its labeled images (4 per class here), each scored by
    # its distance to the nearest other labeled image of each class (the points the default head answers by);
    # `calibrate` on labeled images of the content refits it again, and predict and the exports answer with it.
    from dnadet_tf.predictor import features_and_logits

    first = _labeled_tree(upsampling_data["val"], tmp_path / "first", 2)
    second = _labeled_tree(upsampling_data["test"], tmp_path / "second", 2)
    out = str(tmp_path / "grouped")
    code, stdout, stderr = _cli(["adapt", tiny_run, "--labeled", str(first), str(second), "--out", out])
    assert code == 0, stderr
    assert "open-set calibration fitted on the 12 labeled images, each scored by its distance to the nearest of the " \
           "others of each class: score 'mahalanobis'" in stdout and "dropped" not in stdout
    adapted = KerasPredictor(out).model
    with open(os.path.join(out, "calibration.json"), encoding="utf-8") as f:
        refitted = json.load(f)
    with open(os.path.join(out, "adaptation.json"), encoding="utf-8") as f:
        assert json.load(f)["calibration_dropped"] is False
    assert refitted["val_left_out"] == refitted["train_images"] == 12 and refitted["data"] == refitted["val"]
    assert refitted["means"] == "image" and adapted.calibration.means_per_class == 4
    paths, labels = _labeled_images((first, second), adapted.class_names)
    features, _ = features_and_logits(adapted, paths)
    left_out = openset.leave_one_out_distances("mahalanobis", features, labels, 3, range(12), "image").min(axis=1)
    assert float(adapted.calibration.threshold.numpy()) == pytest.approx(
        np.quantile(left_out, openset.KNOWN_RATE), rel=1e-4)
    # The exports answer with it; an int8 file cannot leave an image out, so it keeps the float threshold and says so.
    from dnadet_tf.exports.predictors import load_exported_predictor

    code, _, stderr = _cli(["export", "--model", out, "--out", str(tmp_path / "exports"), "--formats",
                            "savedmodel,float32,int8", "--eval", upsampling_data["test"], "--max-eval", "8"])
    assert code == 0, stderr
    assert (f"{out}: its open-set threshold was fitted with each validation image left out of the class statistics, "
            "which an int8 file cannot do; the int8 file keeps the float threshold.") in stderr
    with open(tmp_path / "exports" / "dnadet" / "report.json", encoding="utf-8") as f:
        rows = {row["format"]: row for row in json.load(f)["rows"]}
    assert rows["savedmodel"]["max_abs_diff"] < 1e-5 and rows["float32"]["max_abs_diff"] < 1e-5
    fitted = load_exported_predictor(str(tmp_path / "exports" / "dnadet" / "tflite" / "dnadet-int8.tflite")).sidecar
    assert fitted["open_set"]["threshold"] == pytest.approx(refitted["threshold"], rel=1e-6)
    assert fitted["open_set"]["float_threshold"] == fitted["open_set"]["threshold"]
    assert fitted["open_set"]["means_per_class"] == 4 and fitted["open_set"]["radii"] == "shared"
    assert fitted["open_set"]["threshold_fitted_on"]["data"] == refitted["val"]
    # `calibrate` of the adapted run without --data fits what adapt fitted: its labeled images, each left out, to the
    # points its head answers by.
    code, stdout, stderr = _cli(["calibrate", out])
    assert code == 0, stderr
    assert f"{out}: adapted to the labeled images {first} {second} ('adapt --labeled'); calibrating on them" in stdout
    with open(os.path.join(out, "calibration.json"), encoding="utf-8") as f:
        again = json.load(f)
    assert again["means"] == "image" and again["val_left_out"] == again["train_images"] == 12
    assert again["data"] == again["val"] == refitted["data"]
    assert again["threshold"] == pytest.approx(refitted["threshold"], rel=1e-5)
    code, stdout, stderr = _cli(["calibrate", out, "--data", str(first), "--val", str(second)])
    assert code == 0, stderr
    with open(os.path.join(out, "calibration.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["temperature"] > 0 and np.isfinite(report["threshold"])
    assert report["means"] == "image"  # --data given: still the points its head answers by
    calibrated = KerasPredictor(out)
    assert calibrated.model.prototypes_per_class == 4 and calibrated.model.calibration is not None
    code, stdout, stderr = _cli(["predict", "--model", out, "--json", os.path.join(upsampling_data["test"], "real")])
    assert code == 0 and "no open-set score" not in stderr
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert records and all(isinstance(r["unknown"], bool) for r in records)
    assert all(r["ood_threshold"] == pytest.approx(report["threshold"], rel=1e-5) for r in records)


def test_adapt_labeled_reads_the_labeled_images_once_for_the_head_and_the_calibration(tiny_run, upsampling_data,
                                                                                       tmp_path, monkeypatch):
    # The head's means and the open-set calibration come from one pass of the encoder over the labeled images;
    # the calibration is the one `labeled_calibration` fits when it reads the images itself.
    import dnadet_tf.adaptation as adaptation_module
    import dnadet_tf.calibrate as calibrate_module
    import dnadet_tf.labeled_head as labeled_head_module
    from dnadet_tf.data import LabeledFiles

    encoded = []
    read = calibrate_module.features_and_logits

    def counted(model, paths, *args, **kwargs):
        encoded.append(list(paths))
        return read(model, paths, *args, **kwargs)

    for module in (adaptation_module, calibrate_module, labeled_head_module):
        monkeypatch.setattr(module, "features_and_logits", counted)
    first = _labeled_tree(upsampling_data["val"], tmp_path / "first", 3)
    out = str(tmp_path / "once")
    code, stdout, stderr = _cli(["adapt", tiny_run, "--labeled", str(first), "--out", out])
    assert code == 0, stderr
    assert [len(paths) for paths in encoded] == [9]
    with open(os.path.join(out, "calibration.json"), encoding="utf-8") as f:
        written = json.load(f)
    adapted = KerasPredictor(out).model
    paths, labels = _labeled_images((first,), adapted.class_names)
    assert sorted(encoded[0]) == sorted(paths)
    with open(os.path.join(out, "adaptation.json"), encoding="utf-8") as f:
        head = json.load(f)["labeled"]  # the temperature is fitted with each image left out of the head
    statistics, report = calibrate_module.labeled_calibration(
        adapted, LabeledFiles(paths, labels, adapted.class_names, str(first)), means="image", head=head)
    assert len(encoded) == 2  # this time it read them itself
    assert written["threshold"] == pytest.approx(report["threshold"], rel=1e-6)
    assert written["temperature"] == pytest.approx(report["temperature"], rel=1e-4)
    with pytest.raises(ValueError, match=r"features: expected shape \(9, "):
        calibrate_module.labeled_calibration(adapted, LabeledFiles(paths, labels, adapted.class_names, str(first)),
                                             features=np.zeros((8, adapted.backbone.feature_dim)))


def test_one_labeled_image_per_class_cannot_leave_one_out_so_the_calibration_is_dropped(tiny_run, upsampling_data,
                                                                                          tmp_path):
    labeled = _labeled_tree(upsampling_data["val"], tmp_path / "one", 1)
    out = str(tmp_path / "one-each")
    code, stdout, stderr = _cli(["adapt", tiny_run, "--labeled", str(labeled), "--out", out])
    assert code == 0, stderr
    assert ("its open-set calibration was dropped (it described the training content): 'dnadet-tf calibrate "
            f"{out} --data LABELED --val LABELED' refits it on labeled images of this content, 2 or more of every "
            "class") in stdout
    assert KerasPredictor(out).model.calibration is None and not os.path.exists(os.path.join(out, "calibration.json"))


def test_adapt_flags_out_of_place_name_the_flag_and_write_nothing(tiny_run, tmp_path):
    out = tmp_path / "adapted"
    code, _, stderr = _cli(["adapt", "--labeled", "a", "b", tiny_run, "--out", str(out)])
    assert code == 2 and stderr.strip() == (
        "dnadet-tf adapt: error: RUN: expected the run dir to adapt (written by 'dnadet-tf fit'), received none; "
        f"{tiny_run!r}, the last path of --labeled, is a run dir: give RUN before --labeled, whose paths take every "
        f"path after it (dnadet-tf adapt {tiny_run} --labeled a b --out ...).")
    code, _, stderr = _cli(["adapt", tiny_run, "--labeled", "a", "b", "--means-per-class", "2", "--out", str(out)])
    assert code == 2 and stderr.strip() == (
        "dnadet-tf adapt: error: --means-per-class: expected 1 or all with several --labeled DATA (each DATA is "
        "already its own group of means), received 2 with 2 DATA.")
    from dnadet_tf.cli.adapt import means_count  # argparse answers "argument --means-per-class: " and its message

    assert means_count("all") == "all" and means_count("3") == 3
    for text in ("two", "0", "-1"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"expected a positive number or 'all', received '{text}'"):
            means_count(text)
    code, _, stderr = _cli(["adapt", tiny_run, "--images", "a", "--means-per-class", "2", "--out", str(out)])
    assert code == 2 and stderr.strip() == ("dnadet-tf adapt: error: --means-per-class: expected with --labeled, "
                                            "received 2 with --images.")
    assert not out.exists()


def test_adapt_labeled_adds_a_class_the_run_does_not_have(tiny_run, upsampling_data, tmp_path):
    from PIL import Image

    labeled = _labeled_tree(upsampling_data["val"], tmp_path / "labeled", 2)
    (labeled / "blocks").mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):  # a fourth kind of image: 16 px noise enlarged twice by pixel repetition
        low = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(low.repeat(2, 0).repeat(2, 1)).save(labeled / "blocks" / f"{i}.png")
    out = str(tmp_path / "enrolled")
    code, stdout, stderr = _cli(["adapt", tiny_run, "--labeled", str(labeled), "--out", out])
    assert code == 0, stderr
    assert "(2 real, 2 nearest, 2 transposed, 3 blocks); classes added: blocks" in stdout
    assert RunDir(out).class_names == ["real", "nearest", "transposed", "blocks"]
    adapted = KerasPredictor(out)
    assert adapted.class_names == ["real", "nearest", "transposed", "blocks"] and adapted.model.num_classes == 4
    code, stdout, stderr = _cli(["predict", "--model", out, "--json", "--top-k", "4", str(labeled / "blocks")])
    assert code == 0, stderr
    answers = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert len(answers) == 3
    assert all(sorted(entry["class"] for entry in answer["top_k"]) == sorted(adapted.class_names) for answer in answers)


def test_adapt_labeled_without_a_class_of_the_run_names_it_and_writes_nothing(tiny_run, upsampling_data, tmp_path):
    labeled = _labeled_tree(upsampling_data["val"], tmp_path / "labeled", 2, classes=("real", "nearest"))
    out = tmp_path / "adapted"
    code, _, stderr = _cli(["adapt", tiny_run, "--labeled", str(labeled), "--out", str(out)])
    assert code == 2 and stderr.strip() == (
        f"dnadet-tf adapt: error: --labeled {labeled}: expected at least one image of every class of the run "
        "(real, nearest, transposed), received none of 'transposed'.")
    assert not out.exists()
    code, _, stderr = _cli(["adapt", tiny_run, "--labeled", str(labeled), "--fakes", str(labeled), "--out", str(out)])
    assert code == 2 and stderr.strip() == ("dnadet-tf adapt: error: --fakes: expected with --photos (the fakes to lay "
                                            "over them), received with --labeled.")


def test_adapt_labeled_with_blend_0_keeps_every_statistic_and_changes_the_head_alone(tiny_run, upsampling_data,
                                                                                      tmp_path):
    labeled = _labeled_tree(upsampling_data["val"], tmp_path / "labeled", 2)
    out = str(tmp_path / "kept")
    code, stdout, stderr = _cli(["adapt", tiny_run, "--labeled", str(labeled), "--blend", "0", "--out", out])
    assert code == 0, stderr
    assert "BatchNorm statistics kept (--blend 0)" in stdout and "layer 1/" not in stdout
    source = {weight.path: weight.numpy() for weight in KerasPredictor(tiny_run).model.weights}
    changed = [weight.path for weight in KerasPredictor(out).model.weights if "calibration" not in weight.path
               and not np.array_equal(weight.numpy(), source[weight.path])]  # the calibration is refitted
    assert changed and all("logits" in path for path in changed)
