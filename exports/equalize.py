"""Channel range equalisation: a float-identical copy of a classifier that quantises better to int8.

Full-integer TFLite gives each activation tensor one scale for all its channels. When one channel of
a block spans +-14 and another carries its signal in +-0.5, the second keeps a few int8 steps and
the attribution, which lives in small differences between images, can flip (the faces -> scenes
default's int8 files agreed with their float models on 78.9 % of their test faces before this step,
96.6 % after, mean of 3 seeds; README, "TFLite for mobile apps").

Every encoder block is conv -> BatchNorm -> LeakyReLU, and LeakyReLU(s * x) = s * LeakyReLU(x) for
s > 0. So channel c of a block's output can be multiplied by s_c (BatchNorm's gamma and beta) and
the next convolution's weights for input channel c divided by s_c without changing the float
function (up to float rounding). `equalized_copy` picks s_c = R / r_c, where r_c is channel c's
largest |value| on calibration images and R the block's largest, so every channel of a block spans
the same range. The last block feeds the pooled feature; its scale is undone in the logits Dense
layer and in a Mahalanobis calibration (class means and whitening), and the block is left as it is
when the calibration's score is cosine (not invariant to a per-channel scale).
"""
import numpy as np

# A channel whose range is below this fraction of its block's largest is left unscaled (dead or
# nearly constant: scaling it up would only amplify rounding noise into the next layer).
MIN_RELATIVE_RANGE = 1e-4


def batchnorm_output_ranges(model, batches):
    """Largest |output| per channel of every encoder BatchNorm, in inference mode.

    Args:
      model: a `model.Classifier` (float32).
      batches: iterable of (N, S, S, 3) float32 preprocessed pixels.

    Returns:
      {BatchNorm layer name: (C,) float64 array}.
    """
    import keras

    from dnadet_tf.model import batchnorm_layers

    backbone = model.backbone
    names = [layer.name for layer in batchnorm_layers(model)]
    outputs = keras.Model(backbone.input, [backbone.get_layer(name).output for name in names])
    ranges = {name: None for name in names}
    for pixels in batches:
        for name, value in zip(names, outputs(pixels, training=False)):
            peak = np.abs(np.asarray(value, np.float64)).max(axis=(0, 1, 2))
            ranges[name] = peak if ranges[name] is None else np.maximum(ranges[name], peak)
    if any(value is None for value in ranges.values()):
        raise ValueError("batches: expected at least one batch of calibration pixels, received none.")
    return ranges


def channel_scales(ranges):
    """(C,) ranges -> (C,) scales s_c = max(ranges) / ranges_c (1 for channels below MIN_RELATIVE_RANGE)."""
    ranges = np.asarray(ranges, np.float64)
    peak = ranges.max()
    if peak <= 0:
        return np.ones_like(ranges)
    alive = ranges > MIN_RELATIVE_RANGE * peak
    return np.where(alive, peak / np.where(alive, ranges, 1.0), 1.0)


def _blocks(model):
    """[(BatchNorm layer, the Conv2D that reads its block's output or None for the last block)] of the encoder."""
    import keras

    from dnadet_tf.model import batchnorm_layers

    norms = batchnorm_layers(model)
    convs = [layer for layer in model.backbone.layers if isinstance(layer, keras.layers.Conv2D)]
    if len(norms) != len(convs):
        raise ValueError(f"expected one BatchNormalization per Conv2D in {model.backbone.name}, received "
                         f"{len(norms)} and {len(convs)}.")
    return list(zip(norms, convs[1:] + [None]))


def equalized_copy(model, batches):
    """A copy of `model` whose encoder channels span equal ranges; the float function is unchanged.

    Args:
      model: a float32 `model.Classifier` (left untouched).
      batches: iterable of (N, S, S, 3) float32 preprocessed calibration pixels.

    Returns:
      (copy, summary): the copy, and a JSON-ready dict with, per block, the ratio of its largest to its
      smallest live channel range before ("range_ratio_before", also the largest scale applied);
      "last_block" says whether the last block was equalised.
    """
    from dnadet_tf.model import LOGITS_LAYER, Classifier

    ranges = batchnorm_output_ranges(model, batches)
    copy = Classifier.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    calibration = copy.calibration
    last_block = calibration is None or calibration.score != "cosine"
    summary = {"method": "channel range equalisation (exact in float)", "blocks": {}, "last_block": last_block}
    for norm, next_conv in _blocks(copy):
        if next_conv is None and not last_block:
            continue
        block_ranges = ranges[norm.name]
        scales = channel_scales(block_ranges)
        gamma, beta, mean, variance = norm.get_weights()
        norm.set_weights([(gamma * scales).astype(gamma.dtype), (beta * scales).astype(beta.dtype), mean, variance])
        if next_conv is not None:
            kernel = next_conv.get_weights()
            kernel[0] = (kernel[0] / scales[None, None, :, None]).astype(kernel[0].dtype)
            next_conv.set_weights(kernel)
        else:
            dense = copy.get_layer(LOGITS_LAYER)
            kernel, bias = dense.get_weights()
            dense.set_weights([(kernel / scales[:, None]).astype(kernel.dtype), bias])
            if calibration is not None and calibration.score == "mahalanobis":
                calibration.class_means.assign((calibration.class_means.numpy() * scales[None, :]).astype("float32"))
                calibration.whitening.assign((calibration.whitening.numpy() / scales[:, None]).astype("float32"))
        # The largest scale is the block's largest range over its smallest live one.
        summary["blocks"][norm.name] = {"range_ratio_before": round(float(scales.max()), 3)}
    return copy, summary
