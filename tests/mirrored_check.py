"""Run as a script: training steps under MirroredStrategy with 2 logical CPU
replicas and under the default strategy, on the same global batches and the
same initial weights; prints the largest weight difference as JSON.

The model's optimizer is swapped for plain SGD here: Adam's first updates are
about lr * sign(gradient), which turns float noise in near-zero gradients into
full-size steps, while SGD's update is proportional to the gradient, so the
comparison checks the distributed gradient itself (all-reduce, synchronised
BatchNorm, gathered contrastive loss).

It must run in a fresh process because logical devices are fixed at TF start.
"""
import dataclasses
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from dnadet_tf.config import make_config  # noqa: E402
from dnadet_tf.data import read_folder_tree  # noqa: E402
from dnadet_tf.model import ReplicaDropout  # noqa: E402
from dnadet_tf.pipeline import training_dataset  # noqa: E402
from dnadet_tf.trainer import Trainer  # noqa: E402


def first_losses(strategy, config, files, initial=None):
    """The first step's summed (total, cross-entropy, contrastive, alignment) under `strategy`, from `initial`
    weights (None: the seed's)."""
    _, _, losses = one_step(strategy, config, files, initial, components=True)
    return losses


def one_step(strategy, config, files, initial=None, steps=1, components=False):
    run_dir = tempfile.mkdtemp()
    trainer = Trainer(config, files.class_names, run_dir, strategy,
                      train_dataset=lambda start: training_dataset(files, config, start))
    with strategy.scope():
        trainer.optimizer = keras.optimizers.SGD(0.05)
        trainer.optimizer.build(trainer.model_variables)
    trainer._step_fn = tf.function(trainer._distributed_step)
    if initial is not None:
        trainer.classifier.set_weights(initial[0])
        trainer.projector.set_weights(initial[1])
    before = (trainer.classifier.get_weights(), trainer.projector.get_weights())
    iterator = iter(strategy.experimental_distribute_dataset(trainer.train_dataset(0)))
    if components:
        return before, None, [float(v) for v in trainer._step_fn(next(iterator))[:4]]
    losses = [float(trainer._step_fn(next(iterator))[0]) for _ in range(steps)]
    weights = trainer.classifier.get_weights() + trainer.projector.get_weights() + [
        trainer.loss_weights.params.numpy()]
    return before, weights, losses


def main(data_dir):
    config = make_config("tiny", dropout=0.0, images_per_class=2)
    files = read_folder_tree(data_dir)
    single = tf.distribute.get_strategy()
    mirrored = tf.distribute.MirroredStrategy(devices=["/cpu:0", "/cpu:1"])
    initial, w1, l1 = one_step(single, config, files, steps=1)
    _, w2, l2 = one_step(mirrored, config, files, initial=initial, steps=1)
    start = initial[0] + initial[1]
    # Per variable: largest difference between the two runs relative to the largest update.
    relative = [
        float(np.max(np.abs(a - b)) / max(np.max(np.abs(a - w0)), 1e-12))
        for a, b, w0 in zip(w1, w2, start)
    ]
    # A global batch that does not split evenly (3 classes x 3 images: 5 and 4 per replica), and the content
    # alignment (the real class's other-content images all on one replica): the same losses as one device.
    uneven = make_config("tiny", dropout=0.0, images_per_class=3)
    aligned = make_config("tiny", dropout=0.0, images_per_class=4, content_align=1.0, extra_real="packaged")
    other = np.zeros(len(files.paths), bool)
    other[np.flatnonzero(files.labels == 0)[::2]] = True  # half the real images stand for photos of other content
    marked = dataclasses.replace(files, other_content=other)
    losses = {}
    for name, setting, data in (("uneven", uneven, files), ("aligned", aligned, marked)):
        start_weights = one_step(single, setting, data, steps=0)[0]
        losses[name] = [first_losses(single, setting, data, start_weights),
                        first_losses(mirrored, setting, data, start_weights)]
    # Dropout draws another mask on each replica (Keras' own drew one mask for all of them).
    layer_input = tf.ones((4, 64))
    with mirrored.scope():
        dropout = ReplicaDropout(0.5)
        dropout.build(layer_input.shape)
    masks = mirrored.run(tf.function(lambda: dropout(layer_input, training=True)))
    masks = [value.numpy() for value in mirrored.experimental_local_results(masks)]
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "max_relative_diff": max(relative),
                      "max_update": max(float(np.max(np.abs(a - w0))) for a, w0 in zip(w1, start)),
                      "loss_weights_diff": float(np.max(np.abs(w1[-1] - w2[-1]))),
                      "loss_single": l1, "loss_mirrored": l2, "first_losses": losses,
                      "dropout_masks_equal": bool(np.array_equal(masks[0], masks[1])),
                      "dropout_kept": [float(np.mean(mask > 0)) for mask in masks]}))


if __name__ == "__main__":
    main(sys.argv[1])
