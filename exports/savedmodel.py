"""SavedModel export in TF Serving's layout (`BASE/<name>/<version>/`).

Signatures:
  serving_default(images: string [None])      encoded JPEG / PNG / BMP / GIF (first frame) / still WebP bytes
  predict_pixels(pixels: float32 [None, S, S, 3])   preprocessed pixels in [-1, 1] (others, NaN included,
                                                    raise InvalidArgument, as another shape does)
both returning
  probabilities: float32 [None, C]   calibrated (temperature-scaled) when the run is calibrated
  class_id:      int32   [None]      argmax of probabilities
  class_name:    string  [None]      class_names[class_id]
and, when the run holds an open-set score (`dnadet-tf calibrate`),
  ood_score:     float32 [None]      higher = less like any known architecture
  unknown:       bool    [None]      ood_score > the calibrated threshold

`serving_default` decodes a JPEG with `tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE")`, the
slow integer IDCT that Pillow (the decoder of `fit`, `evaluate` and `predict`) uses, so that it
answers the same pixels (TF's default fast IDCT differs by up to 7 grey levels on most pixels),
and any other format with `tf.io.decode_image(channels=3, expand_animations=False)`; it runs `dnadet_tf.preprocess.preprocess_image` in-graph; bytes that are not an
image, and images too small for the preprocessing (`PreprocessConfig.size_problem`:
square below `min_side`, non-square below `crop_size`), raise InvalidArgument.
Where this decoder and Pillow's `load_rgb` differ (docs/deployment.md lists it): no EXIF orientation; alpha
and a PNG's transparent colour dropped, a GIF's transparent index black (0); an animated WebP refused
(InvalidArgument "WebP Animation must be 4 channel RGBA"; `channels=4` fails too, and `channels=0` corrupts
TF's heap, so it is not an option); no TIFF. A 16-bit PNG's samples keep their high byte in both.
Class names and the preprocessing parameters travel inside: the variables
`class_names` (string [C]) and `preprocess_config` (JSON string) of the loaded
object, and the asset `assets/dnadet.json`.
"""
import json
import os
import shutil

import tensorflow as tf

from dnadet_tf.exports.graph import ClassifierModule
from dnadet_tf.preprocess import PreprocessConfig, preprocess_image
from dnadet_tf.runs import write_json_atomic

SERVING_SIGNATURE = "serving_default"
PIXELS_SIGNATURE = "predict_pixels"
IMAGES_INPUT = "images"
PIXELS_INPUT = "pixels"
METADATA_ASSET = "dnadet.json"
# predict_pixels refuses |values| above this (or not finite) with InvalidArgument, as checked_pixels does.
PIXELS_LIMIT = 1.0 + 1e-3


class AttributorModule(ClassifierModule):
    """The served object: classifier variables, labels, preprocessing, two signatures."""

    def __init__(self, model, class_names, preprocess, metadata_path):
        super().__init__(model)
        size = preprocess.resize2
        self._preprocess = preprocess
        self._num_classes = len(class_names)
        self.class_names = tf.Variable(list(class_names), dtype=tf.string, trainable=False, name="class_names")
        self.preprocess_config = tf.Variable(
            json.dumps(preprocess.to_dict(), sort_keys=True), dtype=tf.string, trainable=False, name="preprocess_config"
        )
        self.metadata = tf.saved_model.Asset(metadata_path)
        self.serve_images = tf.function(
            self._serve_images, input_signature=[tf.TensorSpec([None], tf.string, name=IMAGES_INPUT)]
        )
        self.serve_pixels = tf.function(
            self._serve_pixels, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name=PIXELS_INPUT)]
        )

    def _decode_and_preprocess(self, encoded):
        return preprocess_image(decode_as_pillow(encoded), self._preprocess)

    def _outputs(self, pixels):
        # An empty batch answers empty outputs (the convolutions reject a zero batch on CPU).
        empty = {"probabilities": tf.zeros([0, self._num_classes], tf.float32)}
        if self.open_set:
            empty.update(ood_score=tf.zeros([0], tf.float32), unknown=tf.zeros([0], tf.bool))
        outputs = tf.cond(tf.shape(pixels)[0] > 0, lambda: self.attribute(pixels), lambda: empty)
        class_id = tf.argmax(outputs["probabilities"], axis=-1, output_type=tf.int32)
        return {**outputs, "class_id": class_id, "class_name": tf.gather(self.class_names, class_id)}

    def _serve_images(self, images):
        size = self._preprocess.resize2
        pixels = tf.map_fn(
            self._decode_and_preprocess, images, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32)
        )
        return self._outputs(pixels)

    def _serve_pixels(self, pixels):
        # A signature call does not check the declared shape: a tensor of another rank would abort
        # the process in the first convolution, one of another size would be answered.
        size = self._preprocess.resize2
        tf.debugging.assert_rank(pixels, 4, message=f"pixels: expected shape [N, {size}, {size}, 3]")
        pixels = tf.ensure_shape(pixels, [None, size, size, 3])
        # Decoded 0-255 pixels (a client that skipped x / 127.5 - 1) or NaN would be answered confidently; the
        # package's predictors refuse them (PreprocessConfig.checked_pixels, same tolerance), so does the graph.
        # NaN fails the comparison, so it is refused too; an empty batch passes.
        magnitude = tf.abs(pixels)
        in_range = tf.debugging.Assert(
            tf.reduce_all(magnitude <= PIXELS_LIMIT),
            ["pixels: expected finite values in [-1, 1] (preprocessed: x / 127.5 - 1); received values up to",
             tf.reduce_max(magnitude)],
        )
        with tf.control_dependencies([in_range]):
            pixels = tf.identity(pixels)
        return self._outputs(pixels)


def decode_as_pillow(encoded):
    """Encoded image bytes (a string scalar) -> uint8 (H, W, 3), the pixels Pillow decodes: a JPEG
    with the accurate integer IDCT, other formats (PNG, BMP, GIF's first frame) by `decode_image`."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False),
    )


def signature_summary(size, open_set):
    """The signatures as text for the metadata asset: inputs of `serving_default` and `predict_pixels`
    (pixels [None, size, size, 3]) and their outputs, with the open-set ones when `open_set` is set."""
    return {"serving_default": "images: string [None] (encoded image bytes)",
            "predict_pixels": f"pixels: float32 [None, {size}, {size}, 3]",
            "outputs": "probabilities float32 [None, C], class_id int32 [None], class_name string [None]"
            + (", ood_score float32 [None], unknown bool [None]" if open_set else "")}


def _zero_seed_states(model):
    """Sets the state of every seed generator of `model` (Dropout's, which only training reads) to zeros: Keras
    draws it anew in each process that loads a model, and a SavedModel stores every variable, so two exports of
    one run differed in those bytes."""
    for variable in model.variables:
        if variable.path.endswith("seed_generator_state"):
            variable.assign(tf.zeros(variable.shape, variable.dtype))


def write_savedmodel(model, class_names, preprocess, path, metadata):
    """Saves the attributor as a SavedModel at `path` (a version folder, which must not exist).

    `metadata` (a JSON-able dict) becomes the asset `assets/dnadet.json`; it is
    staged in a folder beside `path` and copied in by `tf.saved_model.save`.
    """
    staging = f"{path}.assets-staging"
    os.makedirs(staging)
    try:
        staged = os.path.join(staging, METADATA_ASSET)
        write_json_atomic(staged, metadata)
        _zero_seed_states(model)
        module = AttributorModule(model, class_names, preprocess, staged)
        tf.saved_model.save(
            module, path, signatures={SERVING_SIGNATURE: module.serve_images, PIXELS_SIGNATURE: module.serve_pixels}
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def read_labels_and_preprocess(loaded):
    """(class_names, PreprocessConfig) from an object returned by `tf.saved_model.load`."""
    class_names = [name.decode("utf-8") for name in loaded.class_names.numpy().tolist()]
    preprocess = PreprocessConfig.from_dict(json.loads(loaded.preprocess_config.numpy().decode("utf-8")))
    return class_names, preprocess
