import json
import os

import numpy as np
import pytest
from PIL import Image

from dnadet_tf.errors import DataError
from dnadet_tf.pipeline import transformation_dataset, transformation_eval_dataset
from dnadet_tf.pretraining import MIN_PHOTOS, pretrain, split_photos, usable_photos
from dnadet_tf.runs import RunDir
from dnadet_tf.training import fit
from dnadet_tf.transforms import FAMILIES, TRANSFORM_NAMES, transform_family
from synthetic import make_photos


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(str(tmp_path_factory.mktemp("photos")), 12)


def test_too_few_photos_stop_with_counts(tmp_path):
    make_photos(str(tmp_path), 3)
    Image.new("RGB", (100, 300)).save(tmp_path / "small.png")
    with pytest.raises(DataError, match=rf"found 3 usable photos .* of 4 image files; pre-training needs at least {MIN_PHOTOS}"):
        usable_photos(str(tmp_path))


def test_small_photos_are_skipped_with_a_warning(tmp_path, capsys):
    make_photos(str(tmp_path), MIN_PHOTOS)
    Image.new("RGB", (127, 300)).save(tmp_path / "small.png")
    kept = usable_photos(str(tmp_path))
    assert len(kept) == MIN_PHOTOS and len(kept.skipped) == 1
    err = capsys.readouterr().err
    assert "small.png" in err and "too small" in err


def test_transformation_batches(photos):
    from dnadet_tf.config import make_config

    config = make_config("tiny", crop_size=128, resize1=128)
    images, labels = next(transformation_dataset(usable_photos(photos).paths, config, 8).as_numpy_iterator())
    assert images.shape == (8, 4, 32, 32, 3) and labels.shape == (8,)
    assert labels.min() >= 0 and labels.max() < 170
    # Two distinct transformations, four images each: positives come from other photos too.
    assert labels[0] == labels[3] and labels[4] == labels[7] and labels[0] != labels[4]
    pixels, eval_labels = next(transformation_eval_dataset(usable_photos(photos).paths, config, 10, 10).as_numpy_iterator())
    assert pixels.shape == (10, 64, 64, 3) and eval_labels.tolist() == list(range(10))


def family_balanced_accuracy(run_dir, photos):
    """Mean per-family recall of the predicted transformation family on held-out photos (chance: 1/6)."""
    run = RunDir(run_dir)
    model = run.load_model()
    _, val_photos = split_photos(usable_photos(photos).paths, run.config.runtime.seed)
    names = [name for name, _ in FAMILIES]
    family = np.array([names.index(transform_family(i)[0]) for i in range(170)])
    true, predicted = [], []
    for pixels, labels in transformation_eval_dataset(val_photos, run.config, 340, 34):
        predicted.append(np.argmax(model(pixels, training=False), axis=-1))
        true.append(labels.numpy())
    true, predicted = family[np.concatenate(true)], family[np.concatenate(predicted)]
    return float(np.mean([np.mean(predicted[true == f] == f) for f in range(len(names))]))


def test_tiny_pretraining_learns_above_chance_and_feeds_fit(photos, upsampling_data, tmp_path, capsys):
    run_dir = str(tmp_path / "pretrain")
    summary = pretrain(photos, run_dir, preset="tiny", steps=150, val_every=150)
    assert summary["end_step"] == 150
    assert RunDir(run_dir).class_names == list(TRANSFORM_NAMES)
    # Step 1's own schedule (the tiny preset's pretrain_lr_decay_every) and the flags' values, as run.
    config = RunDir(run_dir).config
    assert (config.optimizer.lr_decay_every, config.loop.val_every, config.loop.steps) == (100, 150, 150)
    accuracy = family_balanced_accuracy(run_dir, photos)
    assert accuracy > 0.21, f"family-balanced accuracy {accuracy:.3f}; chance is 0.167"
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        validation = [r for r in map(json.loads, f) if r["kind"] == "val"][-1]
    assert validation["accuracy"] <= validation["family_accuracy"] <= 1.0 and validation["nll"] > 0
    capsys.readouterr()
    fit(upsampling_data["train"], str(tmp_path / "fit"), preset="tiny", steps=2, init=run_dir)
    printed = capsys.readouterr().out
    assert "re-initialised 2: logits/kernel, logits/bias" in printed


def test_family_metrics_count_any_parameter_of_the_right_family():
    from dnadet_tf.pretraining import family_metrics

    # jpeg_q30 (0) taken for jpeg_q99 (23): right family; gaussian noise (169) taken for jpeg (0): wrong.
    y_true = np.array([0, 169, 30, 100])
    y_pred = np.array([23, 0, 30, 80])  # 30 is a double JPEG class; 100 and 80 are resampling classes
    assert family_metrics(y_true, y_pred) == {"family_accuracy": 0.75}


def test_release_style_sampling_draws_each_image_transformation_independently(photos):
    from dnadet_tf.config import make_config

    config = make_config("tiny", crop_size=128, resize1=128)
    paths = usable_photos(photos).paths
    first = next(transformation_dataset(paths, config, 16, images_per_class=1).as_numpy_iterator())[1]
    again = next(transformation_dataset(paths, config, 16, images_per_class=1).as_numpy_iterator())[1]
    assert first.tolist() == again.tolist()  # a pure function of (seed, step)
    assert len(set(first.tolist())) > 8  # not 4 groups of 4 as in the default composition


def test_cli_patch_size_count_and_resize2_reach_step1_and_a_bad_size_names_its_flag(photos, tmp_path, capsys):
    from dnadet_tf.cli.main import main

    out = str(tmp_path / "pt")
    assert main(["pretrain", "--photos", photos, "--out", out, "--preset", "tiny", "--steps", "2",
                 "--patch-size", "64", "--patches-per-image", "1", "--resize2", "80", "--crop-grid", "8"]) == 0
    config = RunDir(out).config
    assert (config.sampling.patch_size, config.sampling.patches_per_image, config.sampling.crop_grid) == (64, 1, 8)
    assert (config.preprocessing.resize1, config.preprocessing.resize2) == (128, 80)
    assert "12 images x 1 patches per step" in capsys.readouterr().out
    code = main(["pretrain", "--photos", photos, "--out", str(tmp_path / "bad"), "--preset", "tiny",
                 "--patch-size", "40"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--patch-size: expected a multiple of 16" in err and "received 40" in err
    code = main(["pretrain", "--photos", photos, "--out", str(tmp_path / "bad-grid"), "--preset", "tiny",
                 "--crop-grid", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "dnadet-tf pretrain: error: --crop-grid: expected a positive integer, received 0."


def test_step_1_never_trains_through_the_statistics_shift_of_step_2(photos, tmp_path):
    run_dir = str(tmp_path / "pretrain")
    pretrain(photos, run_dir, preset="tiny", steps=2, val_every=2, statistics_shift=0.5)
    assert RunDir(run_dir).config.model.statistics_shift == 0.0


def test_resume_takes_the_runs_own_preset_and_refuses_other_photos(photos, tmp_path, capsys):
    from dnadet_tf.cli.main import main

    run_dir = str(tmp_path / "pretrain")
    assert main(["pretrain", "--photos", photos, "--out", run_dir, "--preset", "tiny", "--steps", "2",
                 "--val-every", "2"]) == 0
    other = make_photos(str(tmp_path / "other"), 12)
    capsys.readouterr()
    assert main(["pretrain", "--photos", other, "--out", run_dir, "--resume", "--steps", "4"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"dnadet-tf pretrain: error: --photos: expected the resumed run's own ({os.path.abspath(photos)}), "
        f"received {other}.")
    assert main(["pretrain", "--photos", photos, "--out", run_dir, "--resume", "--steps", "4"]) == 0  # no --preset
    assert "at step 2" in capsys.readouterr().out and RunDir(run_dir).config.loop.steps == 4
    capsys.readouterr()
    assert main(["pretrain", "--photos", photos, "--out", run_dir, "--resume", "--steps", "1"]) == 2
    said = capsys.readouterr()
    assert said.err.strip() == ("dnadet-tf pretrain: error: --steps: expected at least the resumed run's step (4), "
                                "received 1.")
    assert "checking photos" not in said.out  # refused before the photos are read
