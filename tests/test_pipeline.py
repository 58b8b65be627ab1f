import os
import threading

import numpy as np
import pytest

from dnadet_tf import input_priority
from dnadet_tf.config import make_config
from dnadet_tf.data import read_dataset
from dnadet_tf.pipeline import BalancedSchedule, training_dataset


def test_schedule_is_balanced_and_covers_every_file():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 7)
    schedule = BalancedSchedule(labels, 3, images_per_class=2, seed=0)
    seen = set()
    for step in range(10):
        batch = schedule.batch(step)
        assert labels[batch].tolist() == [0, 0, 1, 1, 2, 2]
        seen.update(batch.tolist())
    assert seen == set(range(len(labels)))
    again = BalancedSchedule(labels, 3, images_per_class=2, seed=0)
    assert again.batch(7).tolist() == schedule.batch(7).tolist()
    assert BalancedSchedule(labels, 3, 2, seed=1).batch(0).tolist() != schedule.batch(0).tolist() or \
        BalancedSchedule(labels, 3, 2, seed=1).batch(1).tolist() != schedule.batch(1).tolist()


def test_training_batches_shapes_reproducible_and_resumable(upsampling_data):
    files = read_dataset(upsampling_data["train"])
    config = make_config("tiny")
    first = list(training_dataset(files, config).take(3).as_numpy_iterator())
    images, labels = first[0]
    assert images.shape == (12, 4, 32, 32, 3) and images.dtype == np.float32
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert images.min() >= -1.0 and images.max() <= 1.0
    again = list(training_dataset(files, config).take(3).as_numpy_iterator())
    for (a, _), (b, _) in zip(first, again):
        np.testing.assert_array_equal(a, b)
    resumed = next(training_dataset(files, config, start_step=2).as_numpy_iterator())
    np.testing.assert_array_equal(resumed[0], first[2][0])


def test_base_mode_gives_whole_images(upsampling_data):
    files = read_dataset(upsampling_data["train"])
    config = make_config("tiny", mode="base")
    images, labels = next(training_dataset(files, config).as_numpy_iterator())
    assert images.shape == (12, 64, 64, 3)


def _threads_at(niceness):
    """OS thread ids of this process whose nice value is `niceness` now."""
    found = set()
    for name in os.listdir("/proc/self/task"):
        try:
            if os.getpriority(os.PRIO_PROCESS, int(name)) == niceness:
                found.add(int(name))
        except OSError:  # the thread ended meanwhile
            pass
    return found


@pytest.mark.skipif(not input_priority.supported() or os.getpriority(os.PRIO_PROCESS, 0) >= 10,
                    reason="per-thread nice values are Linux's; the process must run below nice 10")
def test_input_threads_run_at_the_configured_niceness_and_batches_do_not_change(upsampling_data):
    files = read_dataset(upsampling_data["train"])
    main_thread = threading.get_native_id()
    main_niceness = os.getpriority(os.PRIO_PROCESS, main_thread)
    before = _threads_at(10)

    unchanged = iter(training_dataset(files, make_config("tiny", input_niceness=0)))
    plain = [next(unchanged) for _ in range(3)]
    assert _threads_at(10) - before == set()

    lowered_iterator = iter(training_dataset(files, make_config("tiny", input_niceness=10)))
    lowered = [next(lowered_iterator) for _ in range(3)]
    niced = _threads_at(10) - before
    assert niced, "no thread of the pipeline runs at nice 10"
    assert main_thread not in niced
    assert os.getpriority(os.PRIO_PROCESS, main_thread) == main_niceness
    for (a, la), (b, lb) in zip(plain, lowered):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(la.numpy(), lb.numpy())
