"""The training input's threads at a lower OS scheduling priority than the training step's.

On a CPU the training step's intra-op threads keep every core busy, and the tf.data threads that
read, transform and crop the next batches take their CPU from the step: fed by its pipeline, the
`cpu` preset's step ran at 84-91 % of its speed on a batch held in memory, step 1's at 84 %
(`benchmarks/train_throughput.py`, `fed_over_alone`). With the pipeline's threads at nice 19 the
scheduler gives them what the step leaves idle (its serial stretches: the loss, the optimiser,
the host syncs), and the prefetched batches absorb the rest: 103 and 94 % in the same benchmark
(docs/results.md, "Training speed"). Values do not change, only who waits. Linux only: elsewhere an OS
priority is a process's, not a thread's, and this does nothing.

A caveat: the input's threads get less of a core that other processes also want, so on a
machine shared with other work the input may fall behind where it kept up at nice 0
(`--input-niceness 0` restores that).
"""
import os
import sys
import threading

import numpy as np
import tensorflow as tf

DEFAULT_NICENESS = 19  # the lowest priority Linux has: the step wins every contended core


def lower_calling_thread(niceness):
    """Sets the calling OS thread's nice value to `niceness` unless it is already at least that.

    Never raises a thread's priority (an unprivileged process cannot); an OS that refuses (a
    sandbox) leaves the priority as it was. Returns 0 (int32), for `tf.numpy_function`.
    """
    thread = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, thread) < niceness:
            os.setpriority(os.PRIO_PROCESS, thread, niceness)
    except OSError:
        pass
    return np.int32(0)


def supported():
    """True where a nice value can be set per thread (Linux)."""
    return sys.platform.startswith("linux")


def at_niceness(fn, niceness, lower_when=None):
    """`fn` for `tf.data.Dataset.map` whose calls first lower the thread they run in.

    Args:
      fn: a map function (its arguments and outputs unchanged).
      niceness: int 0-19; 0 (or a platform without per-thread priorities) returns `fn` itself.
      lower_when: None to lower at every call, or `lower_when(*args)` -> bool scalar tensor: the
        calls that lower their thread (the pipelines: their first elements).

    tf.data runs map functions in threads it makes for each iterator, so the threads are lowered
    from inside the function (`tf.numpy_function`): it reaches whichever threads the iterator uses.
    The per-image maps lower only during their first elements, by which time the iterator's
    threads exist and are reused: every Python call takes the GIL, and a thread at nice 19 that
    is preempted while holding it stalls the training loop (step 1's step fed by its pipeline, in
    bfloat16, ran at 87-93 % of its speed alone with a call per image, at 91-97 % with calls during
    the first elements only, and at 81-87 % with the threads not lowered: ad-hoc runs of 4 rounds
    of 30 steps each).
    """
    if not niceness or not supported():
        return fn
    niceness = int(niceness)

    def lower():
        return tf.numpy_function(lambda: lower_calling_thread(niceness), [], tf.int32, stateful=True,
                                 name="lower_input_thread_priority")

    def lowered(*args):
        done = lower() if lower_when is None else tf.cond(lower_when(*args), lower, lambda: tf.constant(0))
        with tf.control_dependencies([done]):
            args = tf.nest.map_structure(tf.identity, args)
            return fn(*args)

    return lowered
