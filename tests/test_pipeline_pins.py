"""Pins of three behaviours the other tests reach only indirectly:

- `dnadet-tf evaluate --perturb`: its metrics are those of the attacked images computed here by hand (the
  attack of `attacks.apply_attacks` with the stateless seed (seed, i) on image i, `preprocess_image`, the model),
  not merely other figures than the clean evaluation's;
- `pipeline.training_dataset` runs the `augment_fn` it is given on every image of its batches (and only then);
- step 1 (`pretraining.pretrain`) trains with the learning-rate schedule its config names: `pretrain_lr_decay_every`
  steps between decays by `lr_decay`.
"""
import io
import json

import numpy as np
import pytest
import tensorflow as tf

from clirun import run_cli
from dnadet_tf.config import make_config
from dnadet_tf.data import read_dataset, read_usable
from dnadet_tf.metrics import classification_metrics
from dnadet_tf.openset import expected_calibration_error
from dnadet_tf.pipeline import training_dataset
from dnadet_tf.preprocess import to_unit_range
from by_hand import attacked_metrics
from synthetic import make_photos

PERTURB_SEED = 3


# ------------------------------------------------------------------ evaluate --perturb


def _evaluation_metrics(model, data, tmp_path, name, *flags):
    """`dnadet-tf evaluate --model MODEL --data DATA FLAGS`: the metrics of its one row, from the JSON it wrote."""
    report = str(tmp_path / f"{name}.json")
    code, _, err = run_cli(["evaluate", "--model", model, "--data", data, "--json", report, *flags])
    assert code == 0, err
    with open(report, encoding="utf-8") as f:
        rows = json.load(f)
    assert len(rows) == 1
    return rows[0]["metrics"]


def test_perturbed_evaluation_is_the_attacked_images_evaluated_by_hand(tiny_run, upsampling_data, tmp_path):
    from dnadet_tf.api import load as load_predictor

    predictor = load_predictor(tiny_run)
    data = upsampling_data["test"]
    labels = read_usable(data, "test", predictor.class_names, predictor.preprocess).labels
    written = _evaluation_metrics(tiny_run, data, tmp_path, "jpeg", "--perturb", "jpeg", "--seed", str(PERTURB_SEED))
    # By hand: every test image decoded, JPEG-attacked with seed (3, i), preprocessed, predicted in batches of 16.
    by_hand = attacked_metrics(predictor, data, "jpeg", PERTURB_SEED)
    predictions = np.argmax(by_hand["probabilities"], axis=-1)
    expected = classification_metrics(labels, predictions, predictor.class_names)
    assert written["confusion_matrix"] == np.asarray(expected["confusion_matrix"]).tolist()
    assert written["accuracy"] == pytest.approx(by_hand["accuracy"])
    assert written["macro_f1"] == pytest.approx(by_hand["macro_f1"])
    assert written["per_class_recall"] == pytest.approx(expected["per_class_recall"])
    # The ECE is a function of every probability: it tells the attacked images' probabilities from any others'.
    assert written["ece"] == pytest.approx(expected_calibration_error(by_hand["probabilities"], labels), abs=1e-6)

    # What would go unseen if the figures above did not move: the attack, and its seed, change them here.
    clean = attacked_metrics(predictor, data, None, PERTURB_SEED)
    other_seed = attacked_metrics(predictor, data, "jpeg", 0)  # 0: evaluate's default --seed
    for other in (clean, other_seed):
        assert np.abs(other["probabilities"] - by_hand["probabilities"]).max() > 1e-3
        assert abs(expected_calibration_error(other["probabilities"], labels) - written["ece"]) > 1e-4
    assert clean["accuracy"] != written["accuracy"]


# ------------------------------------------------------------------ training_dataset's augment_fn


def _constant_image(image, seed):
    """An augmentation that paints every pixel 200 (float, as the attacks return)."""
    del seed
    return tf.fill(tf.shape(image), tf.constant(200.0, tf.float32))


def _mirrored(image, seed):
    """An augmentation that mirrors the image left to right (uint8 kept)."""
    del seed
    return tf.reverse(image, axis=[1])


def _batches(files, config, augment_fn=None, count=2):
    return list(training_dataset(files, config, augment_fn=augment_fn).take(count).as_numpy_iterator())


def test_training_batches_are_made_of_the_augmented_images(upsampling_data):
    files = read_dataset(upsampling_data["train"])
    constant = float(to_unit_range(200.0))

    # DNA-Det mode (patches of the preprocessed image): a constant image gives constant patches, and only with it.
    config = make_config("tiny")
    plain = _batches(files, config)
    painted = _batches(files, config, _constant_image)
    for (plain_images, plain_labels), (images, labels) in zip(plain, painted):
        assert images.shape == plain_images.shape == (12, 4, 32, 32, 3)
        np.testing.assert_array_equal(labels, plain_labels)  # the same files drawn, in the same order
        np.testing.assert_allclose(images, constant, atol=1e-5)
        assert np.abs(plain_images - constant).max() > 0.5
        assert np.ptp(plain_images.reshape(len(plain_images), -1), axis=1).min() > 0.1  # every image varies

    # Base mode (whole preprocessed images, 32 px files resized to 64): each image mirrored, the batch mirrored.
    config = make_config("tiny", mode="base")
    plain = _batches(files, config)
    mirrored = _batches(files, config, _mirrored)
    for (plain_images, plain_labels), (images, labels) in zip(plain, mirrored):
        assert images.shape == plain_images.shape == (12, 64, 64, 3)
        np.testing.assert_array_equal(labels, plain_labels)
        np.testing.assert_allclose(images, plain_images[:, :, ::-1, :], atol=1e-4)
        # the synthetic images are not mirror-symmetric: without the augmentation the batch is not mirrored
        assert np.abs(plain_images - plain_images[:, :, ::-1, :]).max() > 0.1
        assert np.abs(images - plain_images).max() > 0.1


# ------------------------------------------------------------------ step 1's learning-rate schedule


def test_pretraining_optimizer_decays_by_lr_decay_every_pretrain_lr_decay_every_steps(tmp_path, monkeypatch):
    from dnadet_tf import training as training_module
    from dnadet_tf.pretraining import pretrain
    from dnadet_tf.runs import RunDir
    from dnadet_tf.trainer import Trainer

    built = []

    class RecordingTrainer(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(training_module, "Trainer", RecordingTrainer)
    photos = make_photos(str(tmp_path / "photos"), 12)
    out = str(tmp_path / "step1")
    # Step 1's own interval (3) differs from step 2's (the tiny preset's lr_decay_every, 100), the rate from the
    # default (0.9); its own step budget and validation interval keep the run to 2 steps.
    every, decay, learning_rate = 3, 0.5, 2e-3
    pretrain(photos, out, preset="tiny", pretrain_lr_decay_every=every, lr_decay=decay, learning_rate=learning_rate,
             pretrain_steps=2, pretrain_val_every=2, pretrain_val_samples=17, output=io.StringIO())
    config = RunDir(out).config
    assert (config.pretrain.lr_decay_every, config.optimizer.lr_decay, config.loop.steps) == (every, decay, 2)
    assert len(built) == 1
    optimizer = built[0].optimizer
    assert int(optimizer.iterations.numpy()) == 2  # the steps it trained
    rates = {}
    for step in (0, every - 1, every, 2 * every - 1, 2 * every, 5 * every):
        optimizer.iterations.assign(step)
        rates[step] = float(optimizer.learning_rate.numpy())
    expected = {step: learning_rate * decay ** (step // every) for step in rates}  # staircase: a decay per N steps
    assert rates == pytest.approx(expected, rel=1e-6)
