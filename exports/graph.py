"""The exported computation: a run's classifier as pixels -> probabilities.

Shared by the SavedModel and the TFLite exporters. `ClassifierModule` tracks
the classifier's *TensorFlow* variables (not the Keras model object): the
SavedModel then holds plain variables, which the TFLite converter freezes into
constants. (Tracking the Keras 3 model itself leaves VAR_HANDLE / READ_VARIABLE
ops in the .tflite file that LiteRT cannot run.)
"""
import keras
import tensorflow as tf


def float32_classifier(model, config, num_classes):
    """The classifier computing in float32.

    A run trained under a mixed-precision policy stores per-layer float16 or
    bfloat16 compute dtypes in best.keras; exports compute in float32, so such a
    model is rebuilt with the default policy and given the same weights.
    Returns `model` itself when it already computes in float32.
    """
    if all(getattr(layer, "compute_dtype", "float32") == "float32" for layer in model.layers):
        return model
    from dnadet_tf.model import build_classifier

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        clone = build_classifier(num_classes, config.width, config.dropout, name=model.name)
    finally:
        keras.config.set_dtype_policy(previous)
    clone.set_weights(model.get_weights())
    return clone


class ClassifierModule(tf.Module):
    """Holds the classifier's variables; `probabilities` runs it.

    `probabilities(pixels)`: (N, S, S, 3) float32 in [-1, 1] -> (N, C) float32,
    softmax of the logits, inference mode (BatchNorm moving statistics, no dropout).
    """

    def __init__(self, model, name=None):
        super().__init__(name=name)
        # Closure, not attribute: tf.Module would otherwise track the Keras model object.
        self._call = lambda pixels: model(pixels, training=False)
        self.model_variables = [variable.value for variable in model.variables]

    def probabilities(self, pixels):
        return tf.nn.softmax(tf.cast(self._call(pixels), tf.float32), axis=-1)
