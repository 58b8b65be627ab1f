"""Predictors for exported files, with the interface of `dnadet_tf.predictor.KerasPredictor`:
`class_names`, `preprocess` (a PreprocessConfig), `kind`, `source`, and
`predict_pixels(pixels (N, S, S, 3) float32 in [-1, 1]) -> (N, C) float32 probabilities`.
"""
import os

import numpy as np

from dnadet_tf.errors import DnadetError
from dnadet_tf.preprocess import PreprocessConfig


class SavedModelPredictor:
    """A SavedModel version folder written by `dnadet-tf export`; labels and preprocessing read from it."""

    kind = "savedmodel"

    def __init__(self, path):
        import tensorflow as tf

        from dnadet_tf.exports.savedmodel import PIXELS_SIGNATURE, SERVING_SIGNATURE, read_labels_and_preprocess

        try:
            self._loaded = tf.saved_model.load(path)
            self.class_names, self.preprocess = read_labels_and_preprocess(self._loaded)
            self._pixels_fn = self._loaded.signatures[PIXELS_SIGNATURE]
            self._images_fn = self._loaded.signatures[SERVING_SIGNATURE]
        except (OSError, KeyError, AttributeError, ValueError, tf.errors.OpError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DnadetError(f"{path}: not a SavedModel written by 'dnadet-tf export' ({first_line}).") from None
        self.source = path
        self._tf = tf

    def predict_pixels(self, pixels):
        tensor = self._tf.convert_to_tensor(np.asarray(pixels, np.float32))
        return self._pixels_fn(pixels=tensor)["probabilities"].numpy()

    def predict_encoded(self, encoded_images):
        """Runs `serving_default` on a list of encoded image bytes: (N, C) probabilities."""
        tensor = self._tf.constant(list(encoded_images), dtype=self._tf.string)
        return self._images_fn(images=tensor)["probabilities"].numpy()


class TFLitePredictor:
    """A .tflite file written by `dnadet-tf export`, run in LiteRT one image at a time.

    Labels, preprocessing and the int8 input/output quantization come from the
    sidecar JSON beside the file; int8 inputs are quantized and int8 outputs
    dequantized here.
    """

    def __init__(self, path, num_threads=None):
        from dnadet_tf.exports.tflite import make_interpreter, read_sidecar

        sidecar = read_sidecar(path)
        try:
            self._interpreter = make_interpreter(model_path=path, num_threads=num_threads)
        except (ValueError, RuntimeError) as error:
            raise DnadetError(f"{path}: LiteRT cannot load it ({str(error).strip().splitlines()[0]}).") from None
        self.sidecar = sidecar
        self.class_names = list(sidecar["class_names"])
        self.preprocess = PreprocessConfig.from_dict(sidecar["preprocess"])
        self.kind = f"tflite-{sidecar.get('format', 'unknown')}"
        self.source = path
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._input_quantization = sidecar["input"].get("quantization")
        self._output_quantization = sidecar["output"].get("quantization")

    def predict_one(self, image):
        """(S, S, 3) float32 pixels -> (C,) probabilities."""
        from dnadet_tf.exports.tflite import dequantize, quantize

        x = np.asarray(image, np.float32)[None]
        expected = tuple(self._input["shape"][1:])
        if x.shape[1:] != expected:
            raise DnadetError(f"{self.source}: expected pixels of shape {expected}, received {x.shape[1:]}.")
        if self._input_quantization:
            x = quantize(x, self._input_quantization)
        self._interpreter.set_tensor(self._input["index"], x)
        self._interpreter.invoke()
        y = self._interpreter.get_tensor(self._output["index"])[0]
        if self._output_quantization:
            y = dequantize(y, self._output_quantization)
        return np.asarray(y, np.float32)

    def predict_pixels(self, pixels):
        pixels = np.asarray(pixels, np.float32)
        if len(pixels) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        return np.stack([self.predict_one(image) for image in pixels])


def load_exported_predictor(path, num_threads=None):
    """A predictor for a .tflite file or a SavedModel version folder (holding saved_model.pb).

    A model base folder (`DIR/NAME`, whose numeric subfolders are versions) loads its highest version.
    """
    path = os.fspath(path)
    if os.path.isfile(path) and path.endswith(".tflite"):
        return TFLitePredictor(path, num_threads=num_threads)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return SavedModelPredictor(path)
        versions = [d for d in os.listdir(path)
                    if d.isdigit() and os.path.isfile(os.path.join(path, d, "saved_model.pb"))]
        if versions:
            return SavedModelPredictor(os.path.join(path, max(versions, key=int)))
    raise DnadetError(
        f"{path}: expected a .tflite file or a SavedModel version folder written by 'dnadet-tf export'."
    )
