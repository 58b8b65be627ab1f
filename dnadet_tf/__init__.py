"""dnadet-tf: DNA-Det deepfake network architecture attribution in Keras 3 / TensorFlow.

Data flows one way: files (`data`, `images`) -> tf.data (`pipeline`, with the
one `preprocess` function) -> model (`model`, `losses`) -> loop (`trainer`)
-> run dir (`runs`) -> exports (`dnadet_tf.exports`).
"""
__version__ = "0.1.0"
