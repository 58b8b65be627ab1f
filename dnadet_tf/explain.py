"""Grad-CAM and Grad-CAM++ maps of a trained classifier.

The classifier outputs logits, which is what Grad-CAM wants (the score is the
target class's pre-softmax value), so no model modifier is needed; a model
whose last layer carries a non-linear activation gets tf-keras-vis's
`ReplaceToLinear` on a clone. Gradients are taken in float32: a model that
computes in another dtype (a mixed_bfloat16 run) is explained through its
float32 copy with the same weights (`model.precision_copy`); the probabilities
and predicted classes stay those of the model as given, as `predict` answers.

The target layer defaults to `model.DEFAULT_GRADCAM_LAYER` (the activation
after the second conv of stage 2, stride 4) and is used as named: an
activation layer is not replaced by the conv before it. The target class is
the predicted class unless given.

Grad-CAM: channel weights = spatial mean of d logit / dA (Selvaraju et al.).
Grad-CAM++: channel weights = sum over positions of alpha * ReLU(d logit / dA),
alpha = g^2 / (2 g^2 + sum(A) g^3) (Chattopadhay et al. 2018, eq. 19, with the
exp(score) of eq. 17, which cancels in alpha); alpha is set to 0 where its
denominator is <= 0, which happens on layers with negative activations (the
LeakyReLU layers of this network), where the formula's A >= 0 assumption fails.
Either map is ReLU(sum over channels of weight * A), computed on the
preprocessed pixels (the one `preprocess_image`), upsampled to their size
bilinearly with half-pixel centres (`tf.image.resize`: each cell's value sits
at the centre of the input region it covers, at stride s the pixel
s * k + (s - 1) / 2), and min-max normalised to [0, 1] per image (all zeros
where the map is constant, e.g. where no location supports the class).
"""
import os
import re

import numpy as np
import tensorflow as tf

from dnadet_tf.errors import DnadetError
from dnadet_tf.images import save_figure_atomic
from dnadet_tf.model import (DEFAULT_GRADCAM_LAYER, attribute, precision_copy,
                             probabilities as classifier_probabilities)
from dnadet_tf.pipeline import inference_dataset
from dnadet_tf.preprocess import from_unit_range
from dnadet_tf.runs import free_path, read_json

METHODS = ("gradcam", "gradcam++")
DEFAULT_METHOD = "gradcam"
OVERLAY_ALPHA = 0.45
LISTING = "explain.json"  # in `explain --out`: the rows of `explain_files`; explain-2.json, ... beside a file of yours
LISTING_NAME = re.compile(r"explain(-[0-9]+)?\.json")  # LISTING and its numbered names (`listing_path`)


def is_listing(path):
    """Whether the file at `path` is a listing that `explain` (its LISTING) or `evaluate --report` (its
    gradcam/gradcam.json) wrote: a non-empty list of `explain_files` rows (each with its image `path`, its `png`,
    ending .png, `layer` and `method`). Anything else, `[]` included (explain never writes it: a run without a
    usable image is refused), is a file of the user's: never read as a listing, written over nor removed."""
    rows = read_json(path)
    return isinstance(rows, list) and bool(rows) and all(
        isinstance(row, dict) and {"path", "png", "layer", "method"} <= set(row) and isinstance(row["png"], str)
        and row["png"].endswith(".png") for row in rows)


def listing_path(out_dir):
    """Where `explain` writes its listing in `out_dir`: LISTING (explain.json), or explain-2.json, -3, ...: the first
    that is absent or a listing (`is_listing`, an earlier explain's, which it replaces); a file of the user's under
    the name is kept, as a PNG of the user's is (`_output_names`)."""
    return free_path(out_dir, LISTING, is_listing)


def gradcam_layer_names(model):
    """Names of the layers Grad-CAM can target: convolutions and activations
    with a spatial (N, H, W, C) output, in model order."""
    import keras

    kinds = (keras.layers.Conv2D, keras.layers.LeakyReLU, keras.layers.ReLU, keras.layers.Activation)
    names = []
    for layer in model.layers:
        if isinstance(layer, kinds):
            shape = getattr(layer.output, "shape", None)
            if shape is not None and len(shape) == 4:
                names.append(layer.name)
    return names


def check_layer(model, layer):
    """Returns `layer` when Grad-CAM can target it; raises DnadetError listing the valid names."""
    valid = gradcam_layer_names(model)
    if layer not in valid:
        raise DnadetError(
            f"--layer: unknown Grad-CAM layer {layer!r}; expected one of: {', '.join(valid)}."
        )
    return layer


def check_method(method):
    if method not in METHODS:
        raise DnadetError(f"--method: expected one of {', '.join(METHODS)}, received {method!r}.")
    return method


def _has_nonlinear_output(model):
    import keras

    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    return activation is not None and activation is not keras.activations.linear


def _float32_model(model):
    """`model`, or its float32 copy (same weights, `model.precision_copy`) when any of its layers computes in
    another dtype (a mixed_bfloat16 run, or `evaluate --report --precision mixed_bfloat16`)."""
    if all(getattr(layer.dtype_policy, "compute_dtype", "float32") == "float32" for layer in model.layers):
        return model
    if not hasattr(model, "backbone"):
        raise ValueError("model: Grad-CAM needs a float32 model or a `model.Classifier`, received one computing in "
                         "another dtype.")
    return precision_copy(model, "float32")


def _cam_model(model, layer):
    """pixels -> (the target layer's activation, the logits), float32, of `model` (`_float32_model`); the last
    layer's non-linear activation, if any, replaced by the identity on a clone (tf-keras-vis `ReplaceToLinear`)."""
    import keras

    model = _float32_model(model)
    if _has_nonlinear_output(model):
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        ReplaceToLinear()(clone)
        model = clone
    return keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs[0]])


def _low_res_cams(cam_model, pixels, class_indices, method):
    """(N, h, w) float32 Grad-CAM / Grad-CAM++ maps at the target layer's resolution, not normalised (>= 0)."""
    with tf.GradientTape() as tape:
        activations, logits = cam_model(tf.constant(pixels), training=False)
        score = tf.gather(tf.cast(logits, tf.float32), tf.constant(np.asarray(class_indices, np.int32)), axis=1,
                          batch_dims=1)
    gradients = tf.cast(tape.gradient(score, activations), tf.float32)
    activations = tf.cast(activations, tf.float32)
    if method == "gradcam":
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    else:
        squared = tf.square(gradients)
        denominator = 2.0 * squared + tf.reduce_sum(activations, axis=(1, 2), keepdims=True) * squared * gradients
        valid = (denominator > 0.0) & (squared > 0.0)
        alphas = tf.where(valid, squared / tf.where(valid, denominator, 1.0), 0.0)
        weights = tf.reduce_sum(alphas * tf.nn.relu(gradients), axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1)).numpy()


def _upsample_and_normalise(cams, size):
    """(N, h, w) maps -> (N, H, W) float32 in [0, 1]: bilinear with half-pixel centres (`tf.image.resize`), then
    min-max per image; a constant map (all zeros, say) gives all zeros, never NaN."""
    maps = tf.image.resize(np.asarray(cams, np.float32)[..., None], size, method="bilinear").numpy()[..., 0]
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    maps = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0)
    return np.nan_to_num(np.clip(maps, 0.0, 1.0), nan=0.0).astype(np.float32)


def gradcam_maps(model, pixels, class_indices=None, layer=DEFAULT_GRADCAM_LAYER, method=DEFAULT_METHOD,
                 batch_size=16):
    """Grad-CAM maps of preprocessed images.

    Args:
      model: a `model.Classifier` (logits out); one computing in bfloat16 is explained through its float32 copy.
      pixels: (N, S, S, 3) float32 in [-1, 1], from `preprocess_image`.
      class_indices: target class per image; None = the predicted class.
      layer: target layer name (see `gradcam_layer_names`).
      method: "gradcam" or "gradcam++".
      batch_size: images per Grad-CAM pass.

    Returns:
      (maps, probabilities, class_indices): maps float32 (N, S, S) in [0, 1]
      (all zeros where no location supports the class), probabilities (N, C)
      of `model` as given (what `predict` answers at its precision) and the int target classes (N,).
    """
    check_method(method)
    check_layer(model, layer)
    pixels = np.asarray(pixels, np.float32)
    if pixels.ndim != 4:
        raise ValueError(f"pixels: expected (N, H, W, 3), received shape {pixels.shape}.")
    probabilities = np.concatenate(
        [classifier_probabilities(model, tf.constant(pixels[i : i + batch_size])).numpy()
         for i in range(0, len(pixels), batch_size)]
    ) if len(pixels) else np.zeros((0, int(model.output.shape[-1])), np.float32)
    if class_indices is None:
        class_indices = np.argmax(probabilities, axis=-1)
    class_indices = np.asarray(class_indices, np.int64).reshape(-1)
    if len(class_indices) != len(pixels):
        raise ValueError(f"class_indices: expected {len(pixels)} values, received {len(class_indices)}.")
    if not len(pixels):
        return np.zeros(pixels.shape[:3], np.float32), probabilities, class_indices
    cam_model = _cam_model(model, layer)
    maps = [_upsample_and_normalise(_low_res_cams(cam_model, pixels[start : start + batch_size],
                                                  class_indices[start : start + batch_size], method),
                                    pixels.shape[1:3])
            for start in range(0, len(pixels), batch_size)]
    return np.concatenate(maps), probabilities, class_indices


def to_uint8_image(pixels):
    """(S, S, 3) float in [-1, 1] -> uint8 (S, S, 3) in [0, 255]."""
    return np.clip(np.round(from_unit_range(np.asarray(pixels, np.float32))), 0, 255).astype(np.uint8)


def overlay(image, cam, alpha=OVERLAY_ALPHA, colormap="jet"):
    """Lays a [0, 1] map (H, W) over a uint8 image (H, W, 3) -> uint8 (H, W, 3)."""
    from matplotlib import colormaps

    heat = colormaps[colormap](np.clip(cam, 0.0, 1.0))[..., :3] * 255.0
    mixed = (1.0 - alpha) * np.asarray(image, np.float32) + alpha * heat
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def render_explanation(image, cam, title, path, subtitle=""):
    """Writes a PNG: the (preprocessed) image, and the map laid over it, under `title`. The titles are drawn as
    given (they hold class names): a `$...$` pair in them is text, not matplotlib mathtext."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(6.4, 3.6))
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title("input (preprocessed)", fontsize=9)
    axes[1].imshow(overlay(image, cam), interpolation="nearest")
    axes[1].set_title(subtitle or "Grad-CAM", fontsize=9, parse_math=False)
    for ax in axes:
        ax.set_axis_off()
    figure.suptitle(title, fontsize=11, parse_math=False)
    figure.tight_layout()
    return save_figure_atomic(figure, path)


def load_pixels(paths, preprocess):
    """Image files -> (N, S, S, 3) float32 preprocessed pixels, through the inference pipeline `predict` reads
    them with (`pipeline.inference_dataset`); None for no file."""
    if not paths:
        return None
    return np.concatenate([batch.numpy() for batch in inference_dataset(list(paths), preprocess, len(paths))])


def _output_names(paths, method, out_dir, replaceable=()):
    """The PNG file name of each of `paths` in `out_dir`: `stem.gradcam.png` (`gradcampp` for Grad-CAM++), with
    -2, -3, ... for a name already given to another path or held in `out_dir` by a file not in `replaceable` (the
    PNGs an earlier explain listed): a user's own file is never written over."""
    suffix = "gradcam" if method == "gradcam" else "gradcampp"
    replaceable = {os.path.realpath(path) for path in replaceable}

    def taken(name):
        path = os.path.join(out_dir, name)
        return name in used or (os.path.lexists(path) and os.path.realpath(path) not in replaceable)

    names, used = [], set()
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0] or "image"
        name, n = f"{stem}.{suffix}.png", 1
        while taken(name):
            n += 1
            name = f"{stem}-{n}.{suffix}.png"
        used.add(name)
        names.append(name)
    return names


def open_set_verdicts(model, pixels):
    """{"unknown" (N,) bool, "ood_score" (N,), "threshold" float} of a calibrated model for preprocessed pixels
    (N, S, S, 3), as `predict` answers them (`model.attribute`); None for a model without a calibration."""
    if getattr(model, "calibration", None) is None:
        return None
    outputs = attribute(model, tf.constant(pixels))
    return {"unknown": outputs["unknown"].numpy(), "ood_score": outputs["ood_score"].numpy(),
            "threshold": float(model.calibration.threshold.numpy())}


def explain_files(model, class_names, preprocess, paths, out_dir, layer=DEFAULT_GRADCAM_LAYER,
                  method=DEFAULT_METHOD, labels=None, batch_size=16, replaceable=()):
    """Grad-CAM PNG per image file into `out_dir`.

    Args:
      model: Keras classifier; class_names: its labels; preprocess: PreprocessConfig.
      paths: image files (each readable by `load_rgb`).
      labels: optional true class index per file, shown in the title.
      replaceable: the files in `out_dir` a PNG may be written over (an earlier explain's); any other file there
        keeps its name, and the PNG takes the next free one (`_output_names`).

    Returns:
      One dict per file: path, png, class, class_index, probability, layer, method
      (and true_class when labels are given); path (the image file) and png are absolute, as the JSON files of
      `evaluate` and `evaluate --report` name files, so that a listing of them resolves from any working folder.
      A model with an open-set calibration adds unknown, ood_score and ood_threshold, as `predict --json` does
      (class stays the nearest known architecture, the one explained), and the PNG's title says "unknown" for an
      image whose score passes the threshold.
    """
    check_method(method)
    check_layer(model, layer)
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    results = []
    names = _output_names(paths, method, out_dir, replaceable)
    label = "Grad-CAM++" if method == "gradcam++" else "Grad-CAM"
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start : start + batch_size])
        pixels = load_pixels(chunk, preprocess)
        maps, probabilities, targets = gradcam_maps(model, pixels, layer=layer, method=method, batch_size=batch_size)
        open_set = open_set_verdicts(model, pixels)
        for offset, path in enumerate(chunk):
            i = start + offset
            target = int(targets[offset])
            probability = float(probabilities[offset, target])
            title = f"{class_names[target]}  p = {probability:.3f}"
            row = {"path": os.path.abspath(path), "class": class_names[target], "class_index": target,
                   "probability": round(probability, 6), "layer": layer, "method": method}
            if open_set is not None:
                row.update(unknown=bool(open_set["unknown"][offset]),
                           ood_score=round(float(open_set["ood_score"][offset]), 6),
                           ood_threshold=round(open_set["threshold"], 6))
                if row["unknown"]:
                    title = (f"unknown (open-set score {row['ood_score']:.4g} > {row['ood_threshold']:.4g}); "
                             f"nearest known {title}")
            if labels is not None:
                row["true_class"] = class_names[int(labels[i])]
                title = f"true {row['true_class']}, predicted {title}"
            png = os.path.join(out_dir, names[i])
            render_explanation(to_uint8_image(pixels[offset]), maps[offset], title, png,
                               subtitle=f"{label} at {layer}")
            row["png"] = png
            results.append(row)
    return results
