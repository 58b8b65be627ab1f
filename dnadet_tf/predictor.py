"""Predictors: anything that maps preprocessed pixels to class probabilities.

Every predictor has `class_names`, `preprocess`, `kind`, `source`, `open_set`
(None, or {"score", "threshold", "temperature"} of a calibrated run, with "radii" and
"means_per_class" for a distance score: `open_set_entry`), and
  predict_pixels(pixels (N, S, S, 3) float32)   -> (N, C) probabilities
  attribute_pixels(pixels)                      -> {"probabilities": (N, C)} plus, with
                                                   `open_set`, "ood_score" (N,) and "unknown" (N,) bool

`KerasPredictor` serves a run dir's best.keras; `dnadet_tf.exports.predictors`
serves SavedModels and .tflite files with the same interface, and `dnadet_tf.load`
picks one for a path. All of them use the same file decoding and the same
preprocessing function.
"""
import time
import weakref

import numpy as np
import tensorflow as tf

from dnadet_tf.data import readable_images
from dnadet_tf.model import attribute, feature_and_logits, precision_copy, probabilities
from dnadet_tf.pipeline import inference_dataset
from dnadet_tf.runs import RunDir


PROGRESS_EVERY_S = 15.0  # seconds between the progress lines of a long inference


class KerasPredictor:
    """A run dir's best.keras (or `model_file`, another .keras model of that run, e.g. one
    of RUN/validated/), with the class names and preprocessing the model holds.
    `predict_pixels`: (N, S, S, 3) float32 -> (N, C) probabilities. `precision`
    ("float32" or "mixed_bfloat16"; default: as trained) computes the encoder in that
    precision (`model.precision_copy`): bfloat16 runs faster on CPUs with AVX-512 BF16."""

    kind = "keras"

    def __init__(self, run_dir, model_file=None, precision=None):
        self.run = RunDir(run_dir)
        self.model = self.run.load_model(model_file)
        if precision is not None:
            self.model = precision_copy(self.model, precision)
        self.model_path = model_file or self.run.best_model_path
        self.class_names = self.model.class_names
        self.preprocess = self.model.preprocessing
        self.source = run_dir
        model = self.model
        # one trace for every batch size (a retrace per new size took 0.1-0.2 s and warned after five)
        signature = [tf.TensorSpec((None, self.preprocess.resize2, self.preprocess.resize2, 3), tf.float32)]
        self._fn = tf.function(lambda x: probabilities(model, x), input_signature=signature)
        self._attribute_fn = tf.function(lambda x: attribute(model, x), input_signature=signature)
        calibration = model.calibration
        self.open_set = None if calibration is None else open_set_entry(calibration)

    def predict_pixels(self, pixels):
        pixels = self.preprocess.checked_pixels(pixels, self.source)
        if len(pixels) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        return self._fn(tf.constant(pixels)).numpy()

    def attribute_pixels(self, pixels):
        pixels = self.preprocess.checked_pixels(pixels, self.source)
        if len(pixels) == 0:
            return no_outputs(self)
        return {k: v.numpy() for k, v in self._attribute_fn(tf.constant(pixels)).items()}


def open_set_entry(calibration):
    """What a `Calibration` layer's score is, for a predictor's `open_set` and an export's sidecar: {"score",
    "threshold", "temperature"}, and for the distance scores (`openset.RADIUS_SCORES`) "radii" ("shared" or
    "per-class": each class's distance divided by its own radius) and "means_per_class" (the points each class is
    measured to, the nearest of them counting: 1, its mean; more, group means or, after `adapt --labeled` and
    `calibrate --means image`, every known image of the class, the first repeated where a class has fewer)."""
    from dnadet_tf.openset import RADIUS_SCORES

    entry = {"score": calibration.score, "threshold": float(calibration.threshold.numpy()),
             "temperature": float(calibration.temperature.numpy())}
    if calibration.score in RADIUS_SCORES:
        entry.update(radii="per-class" if calibration.class_radii else "shared",
                     means_per_class=calibration.means_per_class)
    return entry


def predict_images(predictor, paths, batch_size=16, warn=None):
    """What `dnadet-tf predict` does with image files: (usable paths, probabilities (N, C), skipped count).

    A file that cannot be decoded, or is too small for the predictor's
    preprocessing, is skipped with one warning line; DataError when none is usable.
    """
    usable, skipped = readable_images(paths, predictor.preprocess, warn)
    return usable, predict_files(predictor, usable, batch_size), len(skipped)


def predict_files(predictor, paths, batch_size=16, perturb_fn=None, seed=0):
    """Probabilities (N, C) for image files, in order."""
    batches = [
        predictor.predict_pixels(pixels)
        for pixels in inference_dataset(paths, predictor.preprocess, batch_size, perturb_fn=perturb_fn, seed=seed)
    ]
    if not batches:
        return np.zeros((0, len(predictor.class_names)), np.float32)
    return np.concatenate(batches)


def no_outputs(predictor):
    """`attribute_pixels`' dict for no image: (0, C) probabilities, and with an open set (0,) scores and flags."""
    empty = {"probabilities": np.zeros((0, len(predictor.class_names)), np.float32)}
    if predictor.open_set:
        empty.update(ood_score=np.zeros((0,), np.float32), unknown=np.zeros((0,), bool))
    return empty


def attribute_batches(predictor, paths, batch_size=16, perturb_fn=None, seed=0):
    """Yields (the batch's paths, `predictor.attribute_pixels` of them) for image files in order, a batch at a
    time (what `predict` prints as it goes); `perturb_fn` and `seed` as `inference_dataset` takes them."""
    start = 0
    for pixels in inference_dataset(paths, predictor.preprocess, batch_size, perturb_fn=perturb_fn, seed=seed):
        yield list(paths[start : start + len(pixels)]), predictor.attribute_pixels(pixels)
        start += len(pixels)


def attribute_files(predictor, paths, batch_size=16, perturb_fn=None, seed=0, progress=None, every_s=PROGRESS_EVERY_S):
    """`predictor.attribute_pixels` for image files, in order: {"probabilities": (N, C)[, "ood_score": (N,),
    "unknown": (N,)]}. `progress`, when given, receives a line ("  N/TOTAL images") every `every_s` seconds."""
    batches, done, last = [], 0, time.time()
    for batch, outputs in attribute_batches(predictor, paths, batch_size, perturb_fn, seed):
        batches.append(outputs)
        done += len(batch)
        if progress is not None and time.time() - last >= every_s and done < len(paths):
            progress(f"  {done}/{len(paths)} images")
            last = time.time()
    if not batches:
        return no_outputs(predictor)
    return {key: np.concatenate([batch[key] for batch in batches]) for key in batches[0]}


_COMPILED = weakref.WeakKeyDictionary()  # model -> its traced feature_and_logits, traced once per model


def features_and_logits(model, paths, batch_size=32, perturb_fn=None, seed=0):
    """Pooled features (N, D) and logits (N, C), float32, of image files in order (inference mode). The traced
    function is kept per model, so calls on several lists (train, val, every split) trace it once."""
    run = _COMPILED.get(model)
    if run is None:
        held = weakref.ref(model)  # the function must not keep its key, the model, alive
        run = _COMPILED[model] = tf.function(lambda pixels: feature_and_logits(held(), pixels),
                                             reduce_retracing=True)

    features, logits = [], []
    for pixels in inference_dataset(paths, model.preprocessing, batch_size, perturb_fn=perturb_fn, seed=seed):
        f, z = run(pixels)
        features.append(f.numpy())
        logits.append(z.numpy())
    if not features:
        return (np.zeros((0, model.backbone.feature_dim), np.float32), np.zeros((0, model.num_classes), np.float32))
    return np.concatenate(features), np.concatenate(logits)
