"""Figures the tests compute by hand, apart from the package's own pipelines, to compare with what it wrote."""
import numpy as np
import tensorflow as tf

from dnadet_tf.attacks import apply_attacks


def attacked_metrics(predictor, spec, attack, seed, batch_size=16):
    """{"accuracy", "macro_f1", "probabilities"} of the test images of `spec` under `attack` (None: no attack),
    computed image by image: decoded, attacked with `attacks.apply_attacks` and the stateless seed
    (seed, i) of image i (as robustness.py documents), preprocessed, predicted by `attribute_pixels` in batches of
    `batch_size` (as evaluation does)."""
    from dnadet_tf.data import read_usable
    from dnadet_tf.images import load_rgb
    from dnadet_tf.metrics import classification_metrics
    from dnadet_tf.preprocess import preprocess_image

    files = read_usable(spec, "test", predictor.class_names, predictor.preprocess)
    pixels = []
    for i, path in enumerate(files.paths):
        image = load_rgb(path)
        if attack is not None:
            image = apply_attacks(image, (attack,), tf.constant([seed, i], tf.int64))
        pixels.append(preprocess_image(image, predictor.preprocess).numpy())
    pixels = np.stack(pixels)
    probabilities = np.concatenate([predictor.attribute_pixels(pixels[i : i + batch_size])["probabilities"]
                                    for i in range(0, len(pixels), batch_size)])
    metrics = classification_metrics(files.labels, np.argmax(probabilities, axis=-1), predictor.class_names)
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "probabilities": probabilities}
