"""dnadet-tf: DNA-Det deepfake network architecture attribution in Keras 3 / TensorFlow.

The public API (each with a runnable example in its docstring):

    fit(data, out, ...)         train an attributor into a run dir
    load(path)                  a predictor for a run dir, a SavedModel or a .tflite file
    predict(model, inputs)      class probabilities of image files
    evaluate(model, data)       accuracy, macro-F1, recall, confusion matrix per dataset
    export(run_dir, out_dir)    SavedModel + TFLite attributors + parity report
    Backbone, Classifier        the Keras model classes, registered for Keras serialization when
                                `dnadet_tf.model` is imported (as `dnadet_tf.Classifier` does):
                                then `keras.saving.load_model("best.keras")` gives a Classifier
    probabilities(model, pixels)   the one softmax of a classifier's logits

Data flows one way: files (`data`, `images`) -> tf.data (`pipeline`, with the
one `preprocess` function) -> model (`model`, `losses`) -> loop (`trainer`,
`callbacks`) -> run dir (`runs`) -> exports (`dnadet_tf.exports`).

Names are resolved on first use, so that importing the package (as the CLI does
before it silences TensorFlow's start-up lines) does not import TensorFlow.
"""
__version__ = "0.1.0"

_EXPORTS = {
    "fit": "dnadet_tf.api", "load": "dnadet_tf.api", "predict": "dnadet_tf.api", "evaluate": "dnadet_tf.api",
    "export": "dnadet_tf.api", "Backbone": "dnadet_tf.model", "Classifier": "dnadet_tf.model",
    "probabilities": "dnadet_tf.model",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dnadet_tf' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
