"""Channel range equalisation before int8 conversion (exports/equalize.py): same function, equal ranges."""
import numpy as np
import pytest

from dnadet_tf.exports.equalize import batchnorm_output_ranges, channel_scales, equalized_copy
from dnadet_tf.model import Backbone, Classifier, attribute
from dnadet_tf.openset import OpenSetStatistics


def _classifier(score, means_per_class=1):
    """A tiny classifier whose BatchNorms give channels ranges spread over two orders of magnitude."""
    rng = np.random.default_rng(0)
    model = Classifier(Backbone(width=0.0625, dtype="float32"), 3, class_names=["real", "a", "b"])
    model(np.zeros((1, 32, 32, 3), "float32"))
    for layer in model.backbone.layers:
        if layer.name.startswith("stage") and "_bn" in layer.name:
            gamma, beta, mean, variance = layer.get_weights()
            spread = np.exp(rng.uniform(np.log(0.05), np.log(5.0), gamma.shape)).astype("float32")
            layer.set_weights([gamma * spread, rng.normal(0, 0.3, beta.shape).astype("float32"), mean, variance])
    dim = model.backbone.feature_dim
    whitening = rng.normal(0, 1, (dim, dim)).astype("float32")
    model.calibrate(OpenSetStatistics(score, rng.normal(0, 1, (3 * means_per_class, dim)).astype("float32"), whitening,
                                      temperature=1.5, threshold=10.0, means_per_class=means_per_class))
    return model


def _batches(seed, count=3):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32") for _ in range(count)]


@pytest.mark.parametrize("score,means_per_class", [("mahalanobis", 1), ("cosine", 1), ("mahalanobis", 3)])
def test_the_copy_answers_as_the_model_does(score, means_per_class):
    model = _classifier(score, means_per_class)
    copy, summary = equalized_copy(model, _batches(1))
    pixels = _batches(2, 1)[0]
    expected, received = attribute(model, pixels), attribute(copy, pixels)
    np.testing.assert_allclose(received["probabilities"], expected["probabilities"], atol=1e-5)
    np.testing.assert_allclose(received["ood_score"], expected["ood_score"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(copy(pixels), model(pixels), rtol=1e-4, atol=1e-4)
    assert summary["last_block"] == (score != "cosine")
    assert len(summary["blocks"]) == 8 - (score == "cosine")


def test_every_block_spans_one_range_after_and_the_model_is_untouched():
    model = _classifier("mahalanobis")
    weights = [w.copy() for w in model.get_weights()]
    batches = _batches(1)
    before = batchnorm_output_ranges(model, batches)
    copy, summary = equalized_copy(model, batches)
    after = batchnorm_output_ranges(copy, batches)
    for name, ranges in after.items():
        assert ranges.max() / ranges.min() == pytest.approx(1.0, rel=1e-3), name
        assert ranges.max() == pytest.approx(before[name].max(), rel=1e-3)
        assert summary["blocks"][name]["range_ratio_before"] == pytest.approx(before[name].max() / before[name].min(),
                                                                              rel=1e-2)
    assert max(block["range_ratio_before"] for block in summary["blocks"].values()) > 10
    for original, now in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(original, now)


def test_a_dead_channel_is_left_unscaled():
    scales = channel_scales(np.array([2.0, 0.5, 0.0, 1e-9]))
    np.testing.assert_allclose(scales, [1.0, 4.0, 1.0, 1.0])


def test_no_batches_is_an_error():
    with pytest.raises(ValueError, match="at least one batch"):
        batchnorm_output_ranges(_classifier("mahalanobis"), [])
