import numpy as np
import keras
import pytest

from dnadet_tf.model import (
    DEFAULT_GRADCAM_LAYER, build_classifier, build_projection_head, encoder_of, feature_dim_of,
    stage_widths, transfer_matching_weights,
)


def test_full_width_encoder_matches_the_paper():
    model = build_classifier(5, width_multiplier=1.0)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.kernel_size for c in convs] == [(4, 4), (3, 3)] * 4
    assert [c.strides for c in convs] == [(2, 2), (1, 1)] * 4
    assert all(c.padding == "valid" for c in convs)
    pads = [layer for layer in model.layers if isinstance(layer, keras.layers.ZeroPadding2D)]
    assert len(pads) == 8 and all(p.padding == ((1, 1), (1, 1)) for p in pads)
    assert 5.8e6 < model.count_params() < 6.0e6
    assert feature_dim_of(model) == 512


def test_shapes_and_stride_16():
    model = build_classifier(3, width_multiplier=0.0625)
    assert stage_widths(0.0625) == (4, 8, 16, 32)
    assert model(np.zeros((2, 64, 64, 3), np.float32)).shape == (2, 3)
    stage4 = keras.Model(model.input, model.get_layer("stage4_act2").output)
    assert stage4(np.zeros((1, 64, 64, 3), np.float32)).shape == (1, 4, 4, 32)
    assert model.get_layer(DEFAULT_GRADCAM_LAYER).output.shape[-1] == 8
    assert encoder_of(model)(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 32)


def test_projection_head_outputs_unit_vectors():
    head = build_projection_head(32)
    z = head(np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)).numpy()
    assert z.shape == (5, 128)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)


def test_keras_round_trip_in_safe_mode(tmp_path):
    model = build_classifier(4, width_multiplier=0.0625)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    head = build_projection_head(32)
    head.save(str(tmp_path / "h.keras"))
    keras.saving.load_model(str(tmp_path / "h.keras"), safe_mode=True)


def test_transfer_matching_weights_skips_the_head():
    source = build_classifier(170, width_multiplier=0.0625)
    target = build_classifier(5, width_multiplier=0.0625)
    loaded, skipped = transfer_matching_weights(source, target)
    assert skipped == ["logits/kernel", "logits/bias"]
    np.testing.assert_array_equal(
        source.get_layer("stage3_conv1").kernel.numpy(), target.get_layer("stage3_conv1").kernel.numpy()
    )
    assert len(loaded) == len(target.weights) - 2


@pytest.mark.parametrize("width", [0.25])
def test_config_round_trip(width):
    model = build_classifier(2, width_multiplier=width)
    clone = keras.Model.from_config(model.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
