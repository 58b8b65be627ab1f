import numpy as np
import keras
import pytest

from dnadet_tf.config import ENCODER_STAGES
from dnadet_tf.model import (
    DEFAULT_GRADCAM_LAYER, STAGE_WIDTHS, Backbone, Classifier, ZeroMeanKernel, build_projection_head,
    load_classifier, probabilities, stage_widths, transfer_matching_weights,
)
from dnadet_tf.preprocess import PreprocessConfig, preprocess_image


def tiny_classifier(num_classes=3, **kwargs):
    return Classifier(Backbone(0.0625), num_classes, **kwargs)


def test_full_width_encoder_matches_the_paper():
    model = Classifier(Backbone(width=1.0), 5)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.kernel_size for c in convs] == [(4, 4), (3, 3)] * 4
    assert [c.strides for c in convs] == [(2, 2), (1, 1)] * 4
    assert all(c.padding == "same" for c in convs)
    assert 5.8e6 < model.count_params() < 6.0e6
    assert model.backbone.feature_dim == 512
    # config validates --frozen-stages against its own count of stages (it does not import the model)
    assert len(STAGE_WIDTHS) == ENCODER_STAGES


def reference_encoder(model, size):
    """The authors' layout with the same weights: explicit 1-pixel padding, then a valid convolution."""
    inputs = keras.Input((size, size, 3))
    x, copies = inputs, []
    for stage in range(1, 5):
        for index in (1, 2):
            conv = model.get_layer(f"stage{stage}_conv{index}")
            bn = model.get_layer(f"stage{stage}_bn{index}")
            x = keras.layers.ZeroPadding2D(1)(x)
            copies.append((conv, keras.layers.Conv2D(conv.filters, conv.kernel_size, conv.strides, padding="valid",
                                                     use_bias=False)))
            x = copies[-1][1](x)
            copies.append((bn, keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)))
            x = keras.layers.LeakyReLU(negative_slope=0.2)(copies[-1][1](x))
    reference = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    for source, copy in copies:
        copy.set_weights(source.get_weights())
    return reference


@pytest.mark.parametrize("size", [32, 64, 256])
def test_same_padding_is_the_authors_explicit_padding(size):
    model = tiny_classifier()
    rng = np.random.default_rng(size)
    for layer in model.layers:  # non-trivial BatchNorm statistics, so that a misplaced border would show
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    x = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    np.testing.assert_allclose(model.backbone(x).numpy(), reference_encoder(model, size)(x).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_fused_batchnorm_trains_as_keras_batchnorm():
    from dnadet_tf.model import BatchNormalization

    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, (4, 6, 6, 5)).astype(np.float32)
    fused = BatchNormalization(momentum=0.9, epsilon=1e-5)
    plain = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    for layer in (fused, plain):
        layer.build(x.shape)
        layer.set_weights([np.linspace(0.5, 1.5, 5, dtype=np.float32), np.linspace(-1, 1, 5, dtype=np.float32),
                           np.zeros(5, np.float32), np.ones(5, np.float32)])
    np.testing.assert_allclose(fused(x, training=True).numpy(), plain(x, training=True).numpy(), atol=1e-5)
    for a, b in zip(fused.get_weights(), plain.get_weights()):  # moving mean and (biased) variance
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused(x, training=False).numpy(), plain(x, training=False).numpy(), atol=1e-5)
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(fused)).__class__ is BatchNormalization


def test_statistics_shift_moves_every_channel_by_one_affine_map_per_batch_in_training_only():
    from dnadet_tf.model import SHIFT_PROBABILITY, BatchNormalization

    keras.utils.set_random_seed(5)
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, (6, 5, 5, 8)).astype(np.float32)
    weights = [np.linspace(0.5, 1.5, 8, dtype=np.float32), np.linspace(-1, 1, 8, dtype=np.float32),
               np.zeros(8, np.float32), np.ones(8, np.float32)]
    shifted, plain = BatchNormalization(statistics_shift=0.3), BatchNormalization()
    for layer in (shifted, plain):
        layer.build(x.shape)
        layer.set_weights(weights)
    np.testing.assert_allclose(shifted(x, training=False).numpy(), plain(x, training=False).numpy(), atol=1e-6)
    gamma, beta = weights[0], weights[1]
    z = (plain(x, training=True).numpy() - beta) / gamma  # the normalised activations
    log_scales, offsets, moved = [], [], 0
    for _ in range(200):
        y = shifted(x, training=True).numpy()
        np.testing.assert_allclose(shifted.moving_mean.numpy(), plain.moving_mean.numpy(), rtol=1e-5, atol=1e-6)
        plain(x, training=True)  # keeps the two layers' moving statistics in step
        u = (y - beta) / gamma
        # One affine map per channel for every sample and position: u = z * exp(a) + b.
        flat_z, flat_u = z.reshape(-1, 8), u.reshape(-1, 8)
        scale = ((flat_u - flat_u.mean(0)) * (flat_z - flat_z.mean(0))).sum(0) / ((flat_z - flat_z.mean(0)) ** 2).sum(0)
        offset = flat_u.mean(0) - scale * flat_z.mean(0)
        np.testing.assert_allclose(flat_u, flat_z * scale + offset, atol=1e-4)
        if np.allclose(scale, 1.0, atol=1e-6) and np.allclose(offset, 0.0, atol=1e-6):
            continue
        moved += 1
        log_scales.append(np.log(scale))
        offsets.append(offset)
    assert abs(moved / 200 - SHIFT_PROBABILITY) < 0.12
    assert 0.25 < np.std(log_scales) < 0.35 and 0.25 < np.std(offsets) < 0.35
    assert abs(np.mean(log_scales)) < 0.05 and abs(np.mean(offsets)) < 0.05
    config = keras.saving.serialize_keras_object(shifted)
    assert keras.saving.deserialize_keras_object(config).statistics_shift == pytest.approx(0.3)
    with pytest.raises(ValueError, match="statistics_shift: expected a standard deviation of 0 or more"):
        BatchNormalization(statistics_shift=-0.1)


def test_statistics_shift_acts_on_stages_3_and_4_and_saves(tmp_path):
    from dnadet_tf.config import SHIFT_FIRST_STAGE

    model = Classifier(Backbone(0.0625, statistics_shift=0.25), 3)
    shifts = {layer.name: layer.statistics_shift for layer in model.backbone.layers if "_bn" in layer.name}
    assert len(shifts) == 2 * ENCODER_STAGES
    assert all(shift == (0.25 if int(name[5]) >= SHIFT_FIRST_STAGE else 0.0) for name, shift in shifts.items())
    x = np.random.default_rng(4).uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32)
    path = str(tmp_path / "shift.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert loaded.backbone.get_config()["statistics_shift"] == 0.25
    assert loaded.backbone.get_layer("stage4_bn2").statistics_shift == 0.25
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    plain = Classifier(Backbone(0.0625), 3)
    transfer_matching_weights(model, plain)  # the same weights: inference does not see the shift
    np.testing.assert_allclose(plain(x).numpy(), model(x).numpy(), atol=1e-6)


def test_shapes_and_stride_16():
    model = tiny_classifier()
    assert stage_widths(0.0625) == (4, 8, 16, 32)
    assert model(np.zeros((2, 64, 64, 3), np.float32)).shape == (2, 3)
    stage4 = keras.Model(model.input, model.get_layer("stage4_act2").output)
    assert stage4(np.zeros((1, 64, 64, 3), np.float32)).shape == (1, 4, 4, 32)
    assert model.get_layer(DEFAULT_GRADCAM_LAYER).output.shape[-1] == 8
    assert model.backbone(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 32)


def test_classifier_and_backbone_share_weights():
    model = tiny_classifier()
    assert {id(w) for w in model.backbone.weights} <= {id(w) for w in model.weights}
    assert [w.path for w in model.weights][-2:] == ["logits/kernel", "logits/bias"]


def test_projection_head_outputs_unit_vectors():
    head = build_projection_head(32)
    z = head(np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)).numpy()
    assert z.shape == (5, 128)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)


def test_keras_round_trip_in_safe_mode_keeps_names_and_preprocessing(tmp_path):
    preprocessing = PreprocessConfig(32, 32, 64, min_side=32)
    model = tiny_classifier(4, class_names=["real", "a", "b", "c"], preprocessing=preprocessing)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert isinstance(loaded, Classifier) and isinstance(loaded.backbone, Backbone)
    assert loaded.class_names == ["real", "a", "b", "c"] and loaded.preprocessing == preprocessing
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    head = build_projection_head(32)
    head.save(str(tmp_path / "h.keras"))
    keras.saving.load_model(str(tmp_path / "h.keras"), safe_mode=True)


def test_predict_maps_decoded_images_to_probabilities():
    preprocessing = PreprocessConfig(32, 32, 64, min_side=32)
    model = tiny_classifier(preprocessing=preprocessing)
    images = np.random.default_rng(2).integers(0, 256, (3, 48, 40, 3)).astype(np.uint8)
    expected = probabilities(model, np.stack([preprocess_image(image, preprocessing).numpy() for image in images]))
    predicted = model.predict(images, verbose=0)
    np.testing.assert_allclose(predicted, expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(predicted.sum(axis=1), 1.0, rtol=1e-5)


def test_prototypes_per_class_answer_the_largest_logit_of_each_class_and_save(tmp_path):
    from dnadet_tf.model import LOGITS_LAYER, feature_and_logits

    model = tiny_classifier(3, prototypes_per_class=2)
    dense = model.get_layer(LOGITS_LAYER)
    assert dense.units == 6 and model.num_classes == 3
    rng = np.random.default_rng(3)
    dense.set_weights([rng.normal(size=dense.kernel.shape).astype(np.float32), rng.normal(size=(6,)).astype(np.float32)])
    x = rng.uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32)
    feature = model.backbone(x, training=False).numpy()
    units = feature @ dense.kernel.numpy() + dense.bias.numpy()  # unit g * 3 + c: class c's g-th logit
    expected = np.maximum(units[:, :3], units[:, 3:])
    np.testing.assert_allclose(model(x).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(feature_and_logits(model, x)[1].numpy(), expected, atol=1e-5)
    path = str(tmp_path / "g.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert loaded.prototypes_per_class == 2 and loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded(x).numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="prototypes_per_class: expected an integer >= 1, received 0"):
        tiny_classifier(3, prototypes_per_class=0)


def test_from_config_of_get_config_round_trips():
    backbone = Backbone(width=0.125, synchronized_bn=True, input_size=64, dtype="mixed_bfloat16")
    assert Backbone.from_config(backbone.get_config()).get_config() == backbone.get_config()
    model = Classifier(Backbone(0.25), 2, dropout=0.3, class_names=["real", "gan"],
                       preprocessing=PreprocessConfig(64, 64, 128, min_side=64))
    clone = Classifier.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]


def test_zero_mean_stem_trains_the_first_kernels_as_high_pass_filters(tmp_path):
    kernel = np.random.default_rng(3).normal(size=(4, 4, 3, 8)).astype(np.float32)
    projected = ZeroMeanKernel()(kernel).numpy()
    np.testing.assert_allclose(projected.mean(axis=(0, 1)), 0.0, atol=1e-6)
    np.testing.assert_allclose(projected - kernel, np.broadcast_to(-kernel.mean(axis=(0, 1)), kernel.shape), atol=1e-6)

    model = Classifier(Backbone(0.0625, zero_mean_stem=True), 3)
    rng = np.random.default_rng(4)
    x, y = rng.uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32), np.array([0, 1, 2, 0])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(True))
    stem, other = model.backbone.get_layer("stage1_conv1"), model.backbone.get_layer("stage1_conv2")
    assert abs(stem.kernel.numpy().mean(axis=(0, 1))).max() > 1e-3  # Keras applies constraints after updates
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    np.testing.assert_allclose(stem.kernel.numpy().mean(axis=(0, 1)), 0.0, atol=1e-6)
    assert abs(other.kernel.numpy().mean(axis=(0, 1))).max() > 1e-3  # only the stem is constrained
    # A constant image gives the stem no response: it sees differences, not levels.
    stem_only = keras.Model(model.backbone.input, stem.output)
    np.testing.assert_allclose(stem_only(np.full((1, 64, 64, 3), 0.3, np.float32))[0, 1:-1, 1:-1].numpy(), 0.0,
                               atol=1e-5)

    path = str(tmp_path / "zero_mean.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert loaded.backbone.zero_mean_stem and loaded.backbone.get_config()["zero_mean_stem"] is True
    assert isinstance(loaded.backbone.get_layer("stage1_conv1").kernel_constraint, ZeroMeanKernel)
    assert loaded.backbone.get_layer("stage2_conv1").kernel_constraint is None
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)


def test_class_names_must_match_the_class_count():
    with pytest.raises(ValueError, match=r"class_names: expected 3 names, received 2"):
        tiny_classifier(3, class_names=["a", "b"])


def test_float32_copy_computes_in_float32_with_the_same_weights():
    from dnadet_tf.model import precision_copy

    model = Classifier(Backbone(0.0625, dtype="mixed_bfloat16"), 3)
    assert model.get_layer("stage1_conv1").compute_dtype == "bfloat16"
    copy = precision_copy(model, "float32")  # what exports compute with
    assert all(layer.compute_dtype == "float32" for layer in copy.layers)
    assert all(np.array_equal(a, b) for a, b in zip(copy.get_weights(), model.get_weights()))
    plain = tiny_classifier()
    assert precision_copy(plain, "float32") is plain


def test_a_legacy_functional_file_is_converted(tmp_path):
    model = tiny_classifier(3, dropout=0.3)
    legacy = keras.Model(model.input, model.output, name="dnadet")  # what best.keras held before the classes
    path = str(tmp_path / "legacy.keras")
    legacy.save(path)
    preprocessing = PreprocessConfig(32, 32, 64, min_side=32)
    with pytest.raises(ValueError, match="class_names: expected the class names"):
        load_classifier(path)
    converted = load_classifier(path, ["real", "a", "b"], preprocessing)
    assert converted.class_names == ["real", "a", "b"] and converted.preprocessing == preprocessing
    assert converted.backbone.width == 0.0625 and converted.dropout_rate == pytest.approx(0.3)
    x = np.random.default_rng(3).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(converted(x).numpy(), model(x).numpy(), atol=1e-6)


def test_transfer_matching_weights_skips_the_head():
    source = tiny_classifier(170)
    target = tiny_classifier(5)
    loaded, skipped = transfer_matching_weights(source, target)
    assert skipped == ["logits/kernel", "logits/bias"]
    np.testing.assert_array_equal(
        source.get_layer("stage3_conv1").kernel.numpy(), target.get_layer("stage3_conv1").kernel.numpy()
    )
    assert len(loaded) == len(target.weights) - 2


def test_bfloat16_copy_computes_in_bfloat16_with_the_same_weights():
    from dnadet_tf.model import precision_copy

    model = tiny_classifier(class_names=["real", "a", "b"])
    x = np.random.default_rng(4).uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32)
    copy = precision_copy(model, "mixed_bfloat16")
    assert copy is not model and precision_copy(model, "float32") is model
    assert copy.get_layer("stage1_conv1").compute_dtype == "bfloat16" and copy.class_names == model.class_names
    for a, b in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    p32, p16 = probabilities(model, x).numpy(), probabilities(copy, x).numpy()
    assert p16.dtype == np.float32 and np.abs(p16 - p32).max() < 0.05  # bfloat16 keeps 8 bits of mantissa
    assert precision_copy(copy, "float32").get_layer("stage1_conv1").compute_dtype == "float32"
