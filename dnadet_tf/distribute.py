"""Choosing a tf.distribute strategy from the `--strategy` flag."""
import json
import os
import re
import sys

import tensorflow as tf

from dnadet_tf.config import STRATEGIES
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


TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')
TASK_TYPES = ("chief", "worker")  # the jobs of a MultiWorkerMirroredStrategy cluster


def _tf_config_error(expected, received):
    return DnadetError(f"TF_CONFIG (read by `strategy` multiworker): expected {expected}, received {received}.")


def _shown(value, limit=80):
    """`value` in an error line: a str quoted, anything else as JSON; cut to `limit` characters."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = text if len(text) <= limit else text[:limit] + "..."
    return repr(text) if isinstance(value, str) else text


def read_tf_config():
    """The TF_CONFIG environment variable of `--strategy multiworker`, parsed and checked without TensorFlow
    (nothing started, nothing written): a JSON object with a `cluster` of `chief` (at most one) and `worker`
    jobs, each a non-empty list of "host:port" addresses, and the `task` of this process, a `type` among those
    jobs and an `index` into its list. Raises DnadetError in one line naming TF_CONFIG, what was expected
    (TF_CONFIG_EXAMPLE) and what was received: none, text that is not JSON, a cluster or task that does not fit."""
    text = os.environ.get("TF_CONFIG")
    if not text or not text.strip():
        raise _tf_config_error(f"the environment variable holding the cluster as JSON, such as {TF_CONFIG_EXAMPLE}",
                               "none" if text is None else "an empty value")
    try:
        config = json.loads(text)
    except ValueError as error:  # json.JSONDecodeError
        raise _tf_config_error(f"JSON such as {TF_CONFIG_EXAMPLE}",
                               f"{_shown(text)}, which is not JSON ({error})") from None
    if not isinstance(config, dict):
        raise _tf_config_error(f"a JSON object such as {TF_CONFIG_EXAMPLE}", _shown(text))
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise _tf_config_error(f'a "cluster" object of {" and ".join(TASK_TYPES)} jobs, such as {TF_CONFIG_EXAMPLE}',
                               "none" if cluster is None else _shown(cluster))
    for job, addresses in cluster.items():
        if job not in TASK_TYPES:
            raise _tf_config_error(f'cluster jobs {" and ".join(repr(t) for t in TASK_TYPES)} only '
                                   f"(MultiWorkerMirroredStrategy trains on workers)", f"job {job!r}")
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and re.fullmatch(r"[^\s:]+:\d+|\[[^\]]+\]:\d+", a) for a in addresses)):
            raise _tf_config_error(f'cluster job "{job}" as a non-empty list of "host:port" addresses',
                                   _shown(addresses))
    if len(cluster.get("chief", [])) > 1:
        raise _tf_config_error('at most one "chief" address', f"{len(cluster['chief'])}")
    if not isinstance(task, dict):
        raise _tf_config_error('a "task" object naming this process, such as {"type": "worker", "index": 0}',
                               "none" if task is None else _shown(task))
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        raise _tf_config_error(f'a task "type" among the cluster\'s jobs ({", ".join(cluster)})', _shown(kind)
                               if kind is not None else "none")
    if isinstance(index, str) and index.strip().isdigit():
        index = int(index)  # TensorFlow reads int(index)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise _tf_config_error(f'a task "index" from 0 to {len(cluster[kind]) - 1} (the cluster\'s '
                               f'{len(cluster[kind])} "{kind}" address{"es" if len(cluster[kind]) > 1 else ""})',
                               "none" if index is None else _shown(index))
    return config


def check_strategy(name):
    """Raises DnadetError unless `make_strategy(name)` can be built: a known name, and for `multiworker` a
    TF_CONFIG that `read_tf_config` accepts. Starts no TensorFlow runtime and writes nothing, so that
    `fit` and `pretrain` check it before their run dir is touched."""
    if name not in STRATEGIES:
        raise DnadetError(f"strategy: expected {', '.join(STRATEGIES[:-1])} or {STRATEGIES[-1]}, received {name!r}.")
    if name == "multiworker":
        read_tf_config()


def make_strategy(name):
    """`auto`: MirroredStrategy over the visible GPUs, else the default strategy.
    `default`: the default (single-device) strategy. `mirrored`: MirroredStrategy
    over every GPU, or every logical CPU device when there is no GPU.
    `multiworker`: MultiWorkerMirroredStrategy configured by TF_CONFIG (checked first: `read_tf_config`)."""
    check_strategy(name)
    configure_runtime(name)
    if name == "multiworker":
        # Must come before anything initialises the TF runtime (listing devices does).
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if gpus else tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) == 1 and gpus:  # mirrored over one GPU: no more replicas to be had from this process
        print("warning: --strategy mirrored: one device (one GPU), so one replica; it mirrors over several GPUs "
              "(README, 'Scaling out')", file=sys.stderr, flush=True)
    elif len(devices) == 1:
        print("warning: --strategy mirrored: one device (no GPU and one logical CPU), so one replica; split the "
              "CPU from Python before TensorFlow starts: tf.config.set_logical_device_configuration(cpu, "
              "[tf.config.LogicalDeviceConfiguration()] * N) (README, 'Scaling out')", file=sys.stderr, flush=True)
    return tf.distribute.MirroredStrategy(devices=devices)


def is_chief(strategy):
    """Whether this process writes the run's files (best.keras, checkpoints, metrics.jsonl) and prints its
    progress: under a MultiWorkerMirroredStrategy the chief TF_CONFIG names (its "chief" task, else worker 0);
    under any other strategy the one process there is, whatever a TF_CONFIG left in the environment says."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return bool(strategy.extended.should_checkpoint)
    return True
