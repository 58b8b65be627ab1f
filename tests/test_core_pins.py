"""Small pins of core behaviour, each checked against a hand computation or a fact of DESIGN.md §3:
which label every patch carries, the pre-training labels, the transformation table, the learning-rate
schedule, the class-balanced schedule, the loss weights' own learning rate, the antialiased resize, the
projection head, the model-selection rounding, the BatchNorm settings, and labels against file contents."""
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from synthetic import make_photos

# ----------------------------------------------------------------------------------------------- helpers


def _decoded(pixels):
    """The network's input in [-1, 1] -> the [0, 255] value it encodes (preprocess.from_unit_range)."""
    return (np.asarray(pixels, np.float64) + 1.0) * 127.5


def _write_constant_tree(root, values, count=4, size=32):
    """ROOT/<class>/<i>.png, every pixel of class c's files equal to values[c]: files whose pixels name
    their class."""
    for name, value in values.items():
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        for i in range(count):
            Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(os.path.join(folder, f"{i}.png"))


# ------------------------------------------------------------------------------- one eager training step

IMAGE_LABELS = np.array([2, 0, 1], np.int32)  # not sorted: a tiled label order cannot pass for a repeated one


@pytest.fixture(scope="module")
def one_step(tmp_path_factory):
    """A tiny DNA-Det Trainer after one eager step on a hand-made batch of 3 images of P patches each.

    Returns (trainer, recorded, params_before): `recorded` holds the labels the step passed to the
    classification cross-entropy and to the contrastive loss, under the names trainer.py calls them by.
    """
    from dnadet_tf import trainer as trainer_module
    from dnadet_tf.config import make_config
    from dnadet_tf.distribute import make_strategy
    from dnadet_tf.runs import RunDir

    config = make_config("tiny")
    patch, count = config.sampling.patch_size, config.sampling.patches_per_image
    run = RunDir(str(tmp_path_factory.mktemp("pins") / "run")).start(config, ["real", "a", "b"])
    trainer = trainer_module.Trainer(config, ["real", "a", "b"], run, make_strategy("default"),
                                     train_dataset=None, callbacks=[])
    recorded = {}
    cross_entropy = trainer_module.classification_cross_entropy
    contrastive = trainer_module.supervised_contrastive_loss

    def record_cross_entropy(labels, logits, *args, **kwargs):
        recorded["cross_entropy"] = np.asarray(labels)
        return cross_entropy(labels, logits, *args, **kwargs)

    def record_contrastive(embeddings, labels, *args, **kwargs):
        recorded["contrastive"] = np.asarray(labels)
        return contrastive(embeddings, labels, *args, **kwargs)

    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (len(IMAGE_LABELS), count, patch, patch, 3)).astype(np.float32))
    params_before = trainer.loss_weights.params.numpy().copy()
    eager = tf.config.functions_run_eagerly()
    with pytest.MonkeyPatch.context() as patcher:
        patcher.setattr(trainer_module, "classification_cross_entropy", record_cross_entropy)
        patcher.setattr(trainer_module, "supervised_contrastive_loss", record_contrastive)
        tf.config.run_functions_eagerly(True)
        try:
            trainer._step_fn((images, tf.constant(IMAGE_LABELS)))
        finally:
            tf.config.run_functions_eagerly(eager)
    return trainer, recorded, params_before


def test_every_patch_carries_its_own_images_label(one_step):
    """DESIGN.md: cross-entropy on every patch, the image label repeated; the contrastive loss's positives are
    the patches of the same class. Patches of image b are rows b*P .. b*P + P - 1."""
    trainer, recorded, _ = one_step
    expected = np.repeat(IMAGE_LABELS, trainer.config.sampling.patches_per_image)
    np.testing.assert_array_equal(recorded["cross_entropy"], expected)
    np.testing.assert_array_equal(recorded["contrastive"], expected)


def test_loss_weights_take_their_own_learning_rate_of_0_01(one_step):
    """DESIGN.md: the p_i get their own learning rate (0.01). Adam's first step moves each by lr * g / (|g| + eps),
    that is by lr itself; the model's rate (tiny preset: 2e-3) would move them 5 times less."""
    trainer, _, before = one_step
    assert trainer.config.optimizer.loss_weight_learning_rate == 0.01
    assert trainer.config.optimizer.learning_rate != 0.01
    assert float(trainer.weight_optimizer.learning_rate) == pytest.approx(0.01)
    moved = np.abs(trainer.loss_weights.params.numpy() - before)
    np.testing.assert_allclose(moved, 0.01, rtol=1e-3)


def test_learning_rate_is_multiplied_by_0_9_every_lr_decay_every_steps(one_step):
    """DESIGN.md: Adam, the learning rate multiplied by 0.9 every `lr_decay_every` iterations (a staircase):
    after n optimizer updates it is lr0 * 0.9 ** (n // lr_decay_every)."""
    trainer, _, _ = one_step
    optimizer = trainer.optimizer
    lr0, every = trainer.config.optimizer.learning_rate, trainer.config.optimizer.lr_decay_every
    assert trainer.config.optimizer.lr_decay == 0.9
    saved = int(optimizer.iterations.numpy())
    try:
        for n in (0, 1, every - 1, every, every + 1, 2 * every - 1, 2 * every, 5 * every + 3):
            optimizer.iterations.assign(n)
            assert float(optimizer.learning_rate) == pytest.approx(lr0 * 0.9 ** (n // every), rel=1e-6), n
    finally:
        optimizer.iterations.assign(saved)


# --------------------------------------------------------------------------------------------- pipelines


def test_pretraining_elements_carry_the_label_of_the_transformation_applied(tmp_path, monkeypatch):
    """Each pre-training element's label is the index of the transformation applied to it. With the
    transformation replaced by 'every pixel = its index', a constant crop stays constant through the bicubic
    resizes, so pixel = index / 127.5 - 1 in every patch."""
    from dnadet_tf import transforms
    from dnadet_tf.config import make_config
    from dnadet_tf.pipeline import transformation_dataset

    def write_index(image, index, seed):
        crop = tf.shape(image)
        return tf.fill(crop, tf.cast(index, tf.float32))

    monkeypatch.setattr(transforms, "apply_transform", write_index)
    config = make_config("tiny")
    folder = make_photos(str(tmp_path / "photos"), 2, size=(48, 40))
    paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    images, labels = next(iter(transformation_dataset(paths, config, batch_size=12, images_per_class=2,
                                                      image_cache=0)))
    images, labels = _decoded(images), labels.numpy()
    assert images.shape[:2] == (12, config.sampling.patches_per_image)
    assert len(set(labels.tolist())) == 6  # 6 distinct transformations, 2 photos each
    for b, label in enumerate(labels):
        np.testing.assert_allclose(images[b], label, atol=0.01, err_msg=f"element {b}, label {label}")


def test_training_elements_carry_the_label_of_their_own_file(tmp_path):
    """Every file of class c holds pixels values[c] only: each element's pixels (constant through the chain)
    must name the class of its label."""
    from dnadet_tf.config import make_config
    from dnadet_tf.data import read_dataset
    from dnadet_tf.pipeline import training_dataset

    values = {"real": 30, "a": 130, "b": 230}
    root = str(tmp_path / "data")
    _write_constant_tree(root, values, count=5)
    files = read_dataset(root)
    by_label = np.array([values[name] for name in files.class_names], np.float64)
    config = make_config("tiny")
    iterator = iter(training_dataset(files, config, image_cache=0))
    for step in range(2):
        images, labels = next(iterator)
        images, labels = _decoded(images), labels.numpy()
        assert sorted(set(labels.tolist())) == [0, 1, 2]
        for b, label in enumerate(labels):
            np.testing.assert_allclose(images[b], by_label[label], atol=0.01,
                                       err_msg=f"step {step}, element {b}, label {label}")


def test_balanced_schedule_visits_each_file_once_per_cycle():
    """A class of n = 5 files, K = 2 per step: its picks over consecutive steps, cut into windows of n aligned to
    its cycles, are each a permutation of its files (every file once per cycle, no overlap between steps)."""
    from dnadet_tf.pipeline import BalancedSchedule

    labels = np.array([0, 1, 0, 0, 1, 0, 1, 0])  # class 0: files 0, 2, 3, 5, 7; class 1: files 1, 4, 6
    schedule = BalancedSchedule(labels, 2, 2, seed=7)
    picks = {0: [], 1: []}
    for step in range(15):
        batch = schedule.batch(step)
        assert len(batch) == 4
        picks[0] += batch[:2].tolist()
        picks[1] += batch[2:].tolist()
    for c, members in enumerate(([0, 2, 3, 5, 7], [1, 4, 6])):
        n = len(members)
        for start in range(0, len(picks[c]) - n + 1, n):
            assert sorted(picks[c][start:start + n]) == members, (c, start, picks[c])


# --------------------------------------------------------------------------------------- transformations


def _named_operation(name):
    """TRANSFORM_NAMES entry -> the imageops function (image -> image) that it names."""
    from dnadet_tf import imageops

    match = re.fullmatch(r"(gaussian|median)_blur_k(\d+)", name)
    if match:
        kernel = int(match.group(2))
        if match.group(1) == "gaussian":
            return lambda image: imageops.gaussian_blur(image, kernel)
        return lambda image: imageops.median_blur(image, kernel)
    match = re.fullmatch(r"resample_([a-z]+)_(\d\.\d\d)", name)
    assert match, name
    return lambda image: imageops.resample(image, float(match.group(2)), match.group(1))


def test_blur_and_resampling_classes_apply_the_operation_their_name_says(tmp_path):
    """For every blur (48-75) and resampling (76-155) index i, apply_transform(i) equals the imageops operation
    TRANSFORM_NAMES[i] names (kernel; method and scale), on one small photo."""
    from dnadet_tf import imageops
    from dnadet_tf.transforms import FAMILY_STARTS, TRANSFORM_NAMES, apply_transform

    folder = make_photos(str(tmp_path / "photos"), 1, size=(48, 40))
    photo = np.asarray(Image.open(os.path.join(folder, "p00.jpg")).convert("RGB"))[:40, :40]
    image = imageops.as_float_image(tf.constant(photo))
    seed = tf.constant([3, 4], tf.int32)
    apply = tf.function(lambda index: apply_transform(image, index, seed))
    first, last = FAMILY_STARTS[2], FAMILY_STARTS[5]  # gaussian blur .. end of resampling
    assert TRANSFORM_NAMES[first].startswith("gaussian_blur") and TRANSFORM_NAMES[last - 1].startswith("resample")
    for index in range(first, last):
        name = TRANSFORM_NAMES[index]
        got = apply(tf.constant(index, tf.int32)).numpy()
        expected = _named_operation(name)(image).numpy()
        assert np.mean(np.abs(got - expected)) < 0.01, name
    # the pairs a mix-up would confuse do differ on this photo, so the check above tells them apart
    for a, b in (("gaussian_blur_k5", "median_blur_k5"), ("resample_nearest_0.40", "resample_bilinear_0.40"),
                 ("resample_bilinear_0.15", "resample_nearest_0.40")):
        assert np.mean(np.abs(_named_operation(a)(image).numpy() - _named_operation(b)(image).numpy())) > 0.5


# ------------------------------------------------------------------------------------- preprocess, model


def test_tf_resize_antialiases_when_it_shrinks():
    """384 px of alternating 0/255 columns shrunk to 128 (3:1): antialiased, every output pixel averages about
    three columns, near 127.5; without antialiasing bicubic samples single columns and keeps full-contrast
    stripes (std about 127)."""
    from dnadet_tf.preprocess import tf_resize

    stripes = np.zeros((384, 384, 3), np.float32)
    stripes[:, 1::2] = 255.0
    out = tf_resize(tf.constant(stripes), 128).numpy()
    assert out.shape == (128, 128, 3)
    inner = out[8:-8, 8:-8]
    assert inner.std() < 30.0
    assert abs(inner.mean() - 127.5) < 5.0


def test_projection_head_is_dense_relu_dense_l2_normalise():
    """DESIGN.md: Dense(512) -> ReLU -> Dense(128) -> L2-normalise; with set weights and inputs that make some
    hidden units negative, the head equals numpy normalize(relu(x W1 + b1) W2 + b2)."""
    from dnadet_tf.model import build_projection_head

    rng = np.random.default_rng(0)
    head = build_projection_head(6, hidden_dim=5, out_dim=3)
    w1, b1 = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)
    w2, b2 = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    head.get_layer("proj_dense1").set_weights([w1, b1])
    head.get_layer("proj_dense2").set_weights([w2, b2])
    x = rng.normal(size=(4, 6)).astype(np.float32)
    hidden = x @ w1 + b1
    assert (hidden < 0).any() and (hidden > 0).any()
    out = np.maximum(hidden, 0) @ w2 + b2
    expected = out / np.linalg.norm(out, axis=1, keepdims=True)
    got = np.asarray(head(x, training=False))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    linear = hidden @ w2 + b2
    assert np.abs(linear / np.linalg.norm(linear, axis=1, keepdims=True) - expected).max() > 0.05


def test_encoder_batchnorms_have_the_releases_momentum_and_epsilon():
    """The release's nn.BatchNorm2d defaults, momentum 0.1 (PyTorch's weight of the new batch = Keras'
    1 - momentum, so 0.9) and eps 1e-5, in all eight BatchNorms; after one training batch from zero, a
    moving mean is 0.1 x the batch mean of its convolution's output."""
    from dnadet_tf.model import Backbone

    backbone = Backbone(width=0.0625)
    norms = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 8
    for layer in norms:
        assert layer.momentum == pytest.approx(0.9) and layer.epsilon == pytest.approx(1e-5), layer.name
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    conv = keras.Model(backbone.input, backbone.get_layer("stage1_conv1").output)
    batch_mean = np.asarray(conv(x)).mean(axis=(0, 1, 2))
    backbone(x, training=True)
    np.testing.assert_allclose(backbone.get_layer("stage1_bn1").moving_mean.numpy(), 0.1 * batch_mean,
                               rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------------ selection


def test_rule_nll_compares_metrics_rounded_to_4_decimals():
    """selection.py: rule nll takes the best metric rounded to 4 decimals, ties broken by the lower nll.
    0.91226 and 0.91234 both round to 0.9123: a tie, so step 1 (nll 0.5) stays."""
    from dnadet_tf.selection import pick

    records = [{"step": 1, "accuracy": 0.91226, "nll": 0.5}, {"step": 2, "accuracy": 0.91234, "nll": 0.9}]
    assert round(0.91226, 4) == round(0.91234, 4)
    assert pick(records, "nll") == 1
    # beyond the 4th decimal no longer a tie: the better metric wins whatever its nll
    records[1]["accuracy"] = 0.91246
    assert pick(records, "nll") == 2
