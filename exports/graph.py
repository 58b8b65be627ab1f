"""The exported computation: a run's classifier as pixels -> probabilities (and, when the
run is calibrated, the open-set score and the unknown flag).

Shared by the SavedModel and the TFLite exporters. `ClassifierModule` tracks
the classifier's *TensorFlow* variables (not the Keras model object): the
SavedModel then holds plain variables, which the TFLite converter freezes into
constants. (Tracking the Keras 3 model itself leaves VAR_HANDLE / READ_VARIABLE
ops in the .tflite file that LiteRT cannot run.)
"""
import tensorflow as tf

from dnadet_tf.model import attribute as classifier_attribute
from dnadet_tf.model import probabilities as classifier_probabilities


class ClassifierModule(tf.Module):
    """Holds the classifier's variables; `probabilities` runs it.

    `probabilities(pixels)`: (N, S, S, 3) float32 in [-1, 1] -> (N, C) float32,
    `model.probabilities` of the classifier (inference mode: BatchNorm moving statistics, no dropout).
    `attribute(pixels)`: `model.attribute` of the classifier, a dict with `probabilities` and, when
    `open_set` (the classifier holds a `Calibration`), `ood_score` (N,) float32 and `unknown` (N,) bool.
    """

    def __init__(self, model, name=None):
        super().__init__(name=name)
        # Closure, not attribute: tf.Module would otherwise track the Keras model object.
        self._probabilities = lambda pixels: classifier_probabilities(model, pixels)
        self._attribute = lambda pixels: classifier_attribute(model, pixels)
        self.open_set = getattr(model, "calibration", None) is not None
        self.model_variables = [variable.value for variable in model.variables]

    def probabilities(self, pixels):
        return self._probabilities(pixels)

    def attribute(self, pixels):
        return self._attribute(pixels)
