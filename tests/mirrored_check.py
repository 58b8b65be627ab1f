"""Run as a script: one training step under MirroredStrategy with 2 logical CPU
replicas and under the default strategy, on the same global batch and the same
initial weights; prints the largest weight difference as JSON.

It must run in a fresh process because logical devices are fixed at TF start.
"""
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # noqa: E402

from dnadet_tf.config import make_config  # noqa: E402
from dnadet_tf.data import read_folder_tree  # noqa: E402
from dnadet_tf.pipeline import training_dataset  # noqa: E402
from dnadet_tf.trainer import Trainer  # noqa: E402


def one_step(strategy, config, files, initial=None, steps=1):
    run_dir = tempfile.mkdtemp()
    trainer = Trainer(config, files.class_names, run_dir, strategy,
                      train_dataset=lambda start: training_dataset(files, config, start))
    if initial is not None:
        trainer.classifier.set_weights(initial[0])
        trainer.projector.set_weights(initial[1])
    before = (trainer.classifier.get_weights(), trainer.projector.get_weights())
    iterator = iter(strategy.experimental_distribute_dataset(trainer.train_dataset(0)))
    losses = [float(trainer._step_fn(next(iterator))[0]) for _ in range(steps)]
    weights = trainer.classifier.get_weights() + trainer.projector.get_weights() + [
        trainer.loss_weights.params.numpy()]
    return before, weights, losses


def main(data_dir):
    config = make_config("tiny", dropout=0.0, images_per_class=2)
    files = read_folder_tree(data_dir)
    single = tf.distribute.get_strategy()
    mirrored = tf.distribute.MirroredStrategy(devices=["/cpu:0", "/cpu:1"])
    initial, w1, l1 = one_step(single, config, files, steps=2)
    _, w2, l2 = one_step(mirrored, config, files, initial=initial, steps=2)
    changed = max(float(np.max(np.abs(a - b))) for a, b in zip(initial[0], w1[: len(initial[0])]))
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w2))
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "max_weight_diff": diff,
                      "max_update": changed, "loss_single": l1, "loss_mirrored": l2}))


if __name__ == "__main__":
    main(sys.argv[1])
