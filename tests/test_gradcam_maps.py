"""Grad-CAM / Grad-CAM++ maps (`dnadet_tf.explain.gradcam_maps`): bfloat16 models, where an upsampled map sits,
Grad-CAM++'s alphas, and batching."""
import numpy as np
import pytest
import tensorflow as tf

METHODS = ("gradcam", "gradcam++")


@pytest.fixture(scope="module")
def tiny_classifier():
    """An untrained width-0.0625 Classifier (4 channels at stage 1) and six random 64 px inputs."""
    from dnadet_tf.model import Backbone, Classifier

    keras_seed = 3
    tf.keras.utils.set_random_seed(keras_seed)
    model = Classifier(Backbone(width=0.0625), 2)
    pixels = np.random.default_rng(0).uniform(-1, 1, (6, 64, 64, 3)).astype(np.float32)
    return model, pixels


@pytest.mark.parametrize("method", METHODS)
def test_a_bfloat16_models_maps_are_finite_and_those_of_its_float32_copy(tiny_classifier, method):
    """tf-keras-vis cast gradients to float32 only for float16: a mixed_bfloat16 model (a run fit with --precision
    mixed_bfloat16, or evaluate --report --precision mixed_bfloat16) crashed. Its maps are taken on its float32
    copy; its probabilities stay its own, as `predict` answers at that precision."""
    from dnadet_tf.explain import gradcam_maps
    from dnadet_tf.model import precision_copy, probabilities

    model, pixels = tiny_classifier
    bf16 = precision_copy(model, "mixed_bfloat16")
    assert bf16 is not model
    targets = np.array([0, 1, 0, 1, 0, 1])
    maps, probs, classes = gradcam_maps(bf16, pixels, class_indices=targets, method=method)
    assert maps.shape == (6, 64, 64) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    assert (maps.max(axis=(1, 2)) > 0.99).any()
    reference, _, _ = gradcam_maps(precision_copy(bf16, "float32"), pixels, class_indices=targets, method=method)
    np.testing.assert_allclose(maps, reference, atol=1e-5)
    np.testing.assert_allclose(probs, probabilities(bf16, tf.constant(pixels)).numpy(), atol=1e-7)
    np.testing.assert_array_equal(classes, targets)


def _hot_cell_model(stride, cells):
    """pixels (stride * cells)^2 x 3 -> `cells` (a Conv2D, kernel = stride = `stride`, one filter: the mean of its
    patch) -> global mean -> logits (mean, -mean). An input of ones on one patch, zeros elsewhere, makes the
    target layer's activation a single hot cell."""
    import keras

    size = stride * cells
    inputs = keras.Input((size, size, 3))
    conv = keras.layers.Conv2D(1, stride, strides=stride, padding="valid", name="cells")
    x = conv(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2, name="logits")
    logits = dense(x)
    model = keras.Model(inputs, logits)
    conv.set_weights([np.full((stride, stride, 3, 1), 1.0 / (3 * stride * stride), np.float32), np.zeros(1)])
    dense.set_weights([np.array([[1.0, -1.0]], np.float32), np.zeros(2, np.float32)])
    return model, size


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("stride, cells, hot", [(4, 8, (1, 6)), (16, 4, (1, 2))])
def test_a_single_hot_cells_map_peaks_at_the_centre_of_the_region_it_covers(method, stride, cells, hot):
    """Cell (r, c) at stride s covers pixels s*r .. s*r + s - 1 (centre s*r + (s-1)/2). tf-keras-vis zoomed the map
    corner-aligned (cell k at k*(S-1)/(h-1)), stretching it outward by up to (s-1)/2 px."""
    from dnadet_tf.explain import gradcam_maps

    model, size = _hot_cell_model(stride, cells)
    pixels = np.zeros((2, size, size, 3), np.float32)
    r, c = hot
    pixels[0, stride * r : stride * (r + 1), stride * c : stride * (c + 1)] = 1.0
    maps, _, _ = gradcam_maps(model, pixels, class_indices=[0, 0], layer="cells", method=method)
    centre = (stride * r + (stride - 1) / 2, stride * c + (stride - 1) / 2)
    rows, cols = np.mgrid[:size, :size]
    mass = maps[0].sum()
    centre_of_mass = ((maps[0] * rows).sum() / mass, (maps[0] * cols).sum() / mass)
    np.testing.assert_allclose(centre_of_mass, centre, atol=0.05)
    peak = np.argwhere(maps[0] >= maps[0].max() - 1e-6)
    np.testing.assert_allclose(peak.mean(axis=0), centre, atol=1e-6)
    assert np.abs(peak - np.array(centre)).max() <= 0.5
    # the map covers no more than the cells next to the hot one (bilinear support: 2 cells wide)
    assert (maps[0][np.abs(rows - centre[0]) >= stride] == 0).all()
    assert (maps[0][np.abs(cols - centre[1]) >= stride] == 0).all()
    # an all-zero activation: an all-zero map, no NaN
    assert (maps[1] == 0).all()


def test_gradcam_plus_plus_follows_the_published_alphas_and_zeroes_those_of_non_positive_denominators(
        tiny_classifier):
    """alpha = g^2 / (2 g^2 + sum(A) g^3), 0 where the denominator is <= 0 (LeakyReLU activations sum to
    negative values), weights = sum(alpha * ReLU(g)); tf-keras-vis renormalised the alphas over the positions."""
    import keras

    from dnadet_tf.explain import gradcam_maps
    from dnadet_tf.model import DEFAULT_GRADCAM_LAYER

    from dnadet_tf.model import LOGITS_LAYER, Backbone, Classifier

    model, pixels = tiny_classifier
    # large logits (as a prototype head's, `adapt --labeled`) make sum(A) * g^3 outweigh 2 g^2
    confident = Classifier(Backbone(width=0.0625), 2)
    confident.set_weights(model.get_weights())
    kernel, bias = confident.get_layer(LOGITS_LAYER).get_weights()
    confident.get_layer(LOGITS_LAYER).set_weights([kernel * 1000.0, bias])
    model = confident
    targets = np.array([1, 0, 1, 0, 1, 0])
    sub = keras.Model(model.inputs, [model.get_layer(DEFAULT_GRADCAM_LAYER).output, model.output])
    with tf.GradientTape() as tape:
        activations, logits = sub(tf.constant(pixels), training=False)
        score = tf.gather(logits, targets, axis=1, batch_dims=1)
    g = tape.gradient(score, activations).numpy().astype(np.float64)
    a = activations.numpy().astype(np.float64)
    denominator = 2 * g ** 2 + a.sum(axis=(1, 2), keepdims=True) * g ** 3
    assert (denominator < 0).any() and (denominator > 0).any()  # the case the clamp is for
    alpha = np.where(denominator > 0, g ** 2 / np.where(denominator > 0, denominator, 1), 0)
    weights = (alpha * np.maximum(g, 0)).sum(axis=(1, 2), keepdims=True)
    cam = np.maximum((weights * a).sum(-1), 0)
    up = tf.image.resize(cam[..., None], (64, 64), method="bilinear").numpy()[..., 0]
    low, high = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
    expected = np.where(high > low, (up - low) / np.where(high > low, high - low, 1), 0)
    maps, _, _ = gradcam_maps(model, pixels, class_indices=targets, method="gradcam++")
    np.testing.assert_allclose(maps, expected, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_a_batch_is_explained_as_its_images_one_at_a_time(tiny_classifier, method):
    from dnadet_tf.explain import gradcam_maps

    model, pixels = tiny_classifier
    maps, probs, classes = gradcam_maps(model, pixels, method=method, batch_size=4)
    for i in range(len(pixels)):
        single, single_probs, single_class = gradcam_maps(model, pixels[i : i + 1], method=method)
        np.testing.assert_allclose(single[0], maps[i], atol=1e-5)
        np.testing.assert_allclose(single_probs[0], probs[i], atol=1e-6)
        assert single_class[0] == classes[i]
