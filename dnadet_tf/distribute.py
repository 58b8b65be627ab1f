"""Choosing a tf.distribute strategy from the `--strategy` flag."""
import json
import os
import sys

import tensorflow as tf

from dnadet_tf.errors import DnadetError


SINGLE_DEVICE_STRATEGIES = ("auto", "default")
_late_warning_printed = []  # the warning of a late configure_runtime() is printed once per process


def configure_runtime(strategy_name="auto", output=None):
    """Makes single-device training bit-reproducible: on a machine without GPUs,
    TF's inter-op thread pool gets one thread.

    Measured on the `cpu` preset: with TF's default inter-op pool, two runs of the
    same command diverge from the second training step on (different kernels run
    concurrently and split their work differently); with one inter-op thread they
    agree exactly, at the same step speed (intra-op threads still use every core).
    Multi-replica strategies keep the default pool (their collectives need
    concurrent ops). Must run before the TF runtime starts (before any op): the
    CLI calls it first thing; later calls are no-ops, and a call after the runtime
    started with another setting prints, once per process, a warning that runs
    may not repeat exactly. Returns True when the runtime is (or now is) configured so.
    """
    if strategy_name not in SINGLE_DEVICE_STRATEGIES or tf.config.list_physical_devices("GPU"):
        return False
    if tf.config.threading.get_inter_op_parallelism_threads() == 1:
        return True
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        return True
    except RuntimeError:
        if not _late_warning_printed:
            _late_warning_printed.append(True)
            print("warning: the TensorFlow runtime started before dnadet_tf.distribute.configure_runtime(); "
                  "two runs of this training may differ in the last digits (call it before any TF op).",
                  file=output or sys.stderr, flush=True)
        return False


def make_strategy(name):
    """`auto`: MirroredStrategy over the visible GPUs, else the default strategy.
    `default`: the default (single-device) strategy. `mirrored`: MirroredStrategy
    over every GPU, or every logical CPU device when there is no GPU.
    `multiworker`: MultiWorkerMirroredStrategy configured by TF_CONFIG."""
    configure_runtime(name)
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
        if len(devices) == 1:
            print("warning: --strategy mirrored: one device (no GPU and one logical CPU), so one replica; split the "
                  "CPU from Python before TensorFlow starts: tf.config.set_logical_device_configuration(cpu, "
                  "[tf.config.LogicalDeviceConfiguration()] * N) (README, 'Scaling out')", file=sys.stderr, flush=True)
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
