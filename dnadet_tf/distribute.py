"""Choosing a tf.distribute strategy from the `--strategy` flag."""
import json
import os

import tensorflow as tf

from dnadet_tf.errors import DnadetError


def make_strategy(name):
    """`auto`: MirroredStrategy over the visible GPUs, else the default strategy.
    `default`: the default (single-device) strategy. `mirrored`: MirroredStrategy
    over every GPU, or every logical CPU device when there is no GPU.
    `multiworker`: MultiWorkerMirroredStrategy configured by TF_CONFIG."""
    if name == "multiworker":
        # Must come before anything initialises the TF runtime (listing devices does).
        if not os.environ.get("TF_CONFIG"):
            raise DnadetError("--strategy multiworker: expected the TF_CONFIG environment variable, found none.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if gpus else tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    raise DnadetError(f"strategy: expected auto, default, mirrored or multiworker, received {name!r}.")


def is_chief():
    """True unless TF_CONFIG names this process a non-chief worker."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    cluster = config.get("cluster", {})
    kind, index = task.get("type"), task.get("index", 0)
    if kind is None:
        return True
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in cluster
