"""Predictors for exported files, with the interface of `dnadet_tf.predictor.KerasPredictor`:
`class_names`, `preprocess` (a PreprocessConfig), `kind`, `source`, and
`open_set`, `predict_pixels(pixels (N, S, S, 3) float32 in [-1, 1]) -> (N, C) float32 probabilities`
and `attribute_pixels(pixels) -> {"probabilities"[, "ood_score", "unknown"]}`.
"""
import json
import os
import threading

import numpy as np

from dnadet_tf.errors import DnadetError, first_line
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
            self._loaded.signatures[SERVING_SIGNATURE]  # noqa: B018 (an export has both; TF Serving answers by it)
        except (OSError, KeyError, AttributeError, ValueError, tf.errors.OpError) as error:
            raise DnadetError(f"{path}: not a SavedModel written by 'dnadet-tf export' "
                              f"({first_line(error)}).") from None
        self.source = path
        self._tf = tf
        self.open_set = None
        if "ood_score" in self._pixels_fn.structured_outputs:
            metadata_path = os.path.join(path, "assets", "dnadet.json")
            try:
                with open(metadata_path, encoding="utf-8") as f:
                    self.open_set = json.load(f)["open_set"]
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise DnadetError(f"{metadata_path}: expected the export's metadata with the open-set threshold of "
                                  f"this calibrated SavedModel ({first_line(error)}); copy the whole version folder, "
                                  f"assets/ included.") from None

    def predict_pixels(self, pixels):
        tensor = self._tf.constant(self.preprocess.checked_pixels(pixels, self.source))
        return self._pixels_fn(pixels=tensor)["probabilities"].numpy()

    def attribute_pixels(self, pixels):
        outputs = self._pixels_fn(pixels=self._tf.constant(self.preprocess.checked_pixels(pixels, self.source)))
        keys = ("probabilities", "ood_score", "unknown") if self.open_set else ("probabilities",)
        return {key: outputs[key].numpy() for key in keys}


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
        from dnadet_tf.exports.tflite import OUTPUT_NAME, SCORE_NAME, output_tensors, tensor_description

        self._input = self._interpreter.get_input_details()[0]
        outputs = output_tensors(self._interpreter)
        self._output = outputs[OUTPUT_NAME]
        self._score = outputs.get(SCORE_NAME)
        self.open_set = sidecar.get("open_set") if self._score is not None else None
        self._input_quantization = sidecar["input"].get("quantization")
        self._output_quantization = sidecar["output"].get("quantization")
        self._score_quantization = tensor_description(self._score)["quantization"] if self._score else None
        self._lock = threading.Lock()

    def _run(self, image):
        """(S, S, 3) float32 pixels -> (probabilities (C,), ood_score or None). One interpreter holds one
        input at a time: threads sharing the predictor take turns (LiteRT raised on concurrent calls)."""
        from dnadet_tf.exports.tflite import dequantize, quantize

        x = np.asarray(image, np.float32)[None]
        if self._input_quantization:
            x = quantize(x, self._input_quantization)
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], x)
            self._interpreter.invoke()
            y = np.array(self._interpreter.get_tensor(self._output["index"])[0])
            score = None
            if self._score is not None:
                score = np.array(self._interpreter.get_tensor(self._score["index"])).reshape(-1)[0]
        if self._output_quantization:
            y = dequantize(y, self._output_quantization)
        if score is not None and self._score_quantization:
            score = dequantize(score, self._score_quantization)
        return np.asarray(y, np.float32), score

    def predict_one(self, image):
        """(S, S, 3) float32 pixels -> (C,) probabilities."""
        return self._run(self.preprocess.checked_pixels(np.asarray(image)[None], self.source)[0])[0]

    def predict_pixels(self, pixels):
        pixels = self.preprocess.checked_pixels(pixels, self.source)
        if len(pixels) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        return np.stack([self.predict_one(image) for image in pixels])

    def attribute_pixels(self, pixels):
        pixels = self.preprocess.checked_pixels(pixels, self.source)
        results = [self._run(image) for image in pixels]
        out = {"probabilities": np.stack([p for p, _ in results]) if results
               else np.zeros((0, len(self.class_names)), np.float32)}
        if self.open_set:
            out["ood_score"] = np.asarray([s for _, s in results], np.float32)
            out["unknown"] = out["ood_score"] > self.open_set["threshold"]
        return out


def load_exported_predictor(path, num_threads=None):
    """A predictor for a .tflite file or a SavedModel version folder (holding saved_model.pb)."""
    from dnadet_tf.runs import is_exported_model

    path = os.fspath(path)
    if is_exported_model(path):
        return TFLitePredictor(path, num_threads=num_threads) if path.endswith(".tflite") else SavedModelPredictor(path)
    raise DnadetError(
        f"{path}: expected a .tflite file or a SavedModel version folder written by 'dnadet-tf export'."
    )
