"""The same command gives the same numbers: runs in separate processes agree exactly."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

SCRIPT = textwrap.dedent(
    """
    import sys
    from dnadet_tf.distribute import configure_runtime
    from dnadet_tf.training import fit

    configure_runtime()  # first thing, as the CLI does

    import json

    data, val, out, build = sys.argv[1:5]
    overrides = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    if build != "-":
        from dnadet_tf.zoo import build_zoo  # a zoo build first, in the same process, as `dnadet-tf fit` does
        build_zoo(build, size="tiny", progress=lambda line: None)
    # Width 0.25: kernels large enough that TF's default inter-op pool made runs differ.
    fit(data, out, val=val, preset="tiny", steps=30, seed=5, select="nll", width=0.25, **overrides)
    """
)


def _run(args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-2000:]


def _weights(run_dir):
    reader = tf.train.load_checkpoint(os.path.join(run_dir, "checkpoints"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


def _log(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    for record in records:
        record.pop("patches_per_s", None)  # wall-clock speed, the only figure allowed to differ
    return records


def test_two_processes_and_a_zoo_build_before_training_give_identical_runs(upsampling_data, tmp_path):
    data, val = upsampling_data["train"], upsampling_data["val"]
    _run([data, val, str(tmp_path / "a"), "-"])
    _run([data, val, str(tmp_path / "b"), "-"])
    _run([data, val, str(tmp_path / "c"), str(tmp_path / "zoo")])
    reference = _weights(tmp_path / "a")
    assert len(reference) > 50  # model, projection head, loss weights, optimizers, dropout state
    for other in ("b", "c"):
        weights = _weights(tmp_path / other)
        assert sorted(weights) == sorted(reference)
        for name, value in reference.items():
            np.testing.assert_array_equal(weights[name], value, err_msg=f"{other}: {name}")
        assert _log(tmp_path / other) == _log(tmp_path / "a")


def test_bfloat16_and_window_crops_repeat_exactly(upsampling_data, tmp_path):
    """What the `cpu` preset runs on this kind of CPU: bfloat16 (`auto`) and crops from windows
    (2 crops of 32 px from 64 px pay off, `crops.windows_pay_off`)."""
    from dnadet_tf.config import make_config
    from dnadet_tf.crops import windows_pay_off

    overrides = {"precision": "mixed_bfloat16", "patches_per_image": 2}
    config = make_config("tiny", **overrides)
    assert windows_pay_off(config.preprocess, config.sampling.patch_size, config.sampling.patches_per_image)
    data, val = upsampling_data["train"], upsampling_data["val"]
    for name in ("a", "b"):
        _run([data, val, str(tmp_path / name), "-", json.dumps(overrides)])
    reference, other = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert sorted(other) == sorted(reference)
    for name, value in reference.items():
        np.testing.assert_array_equal(other[name], value, err_msg=name)
    assert _log(tmp_path / "b") == _log(tmp_path / "a")


def test_runtime_is_configured_before_the_first_op_and_warns_when_too_late():
    script = textwrap.dedent(
        """
        import io
        import tensorflow as tf
        from dnadet_tf.distribute import configure_runtime

        assert configure_runtime("auto") and tf.config.threading.get_inter_op_parallelism_threads() == 1
        assert not configure_runtime("mirrored")  # multi-replica strategies keep TF's pool
        print(tf.reduce_sum(tf.ones(3)).numpy())
        assert configure_runtime("auto")  # already configured: nothing to change, no warning
        """
    )
    late = textwrap.dedent(
        """
        import io
        import tensorflow as tf
        from dnadet_tf.distribute import configure_runtime

        tf.reduce_sum(tf.ones(3)).numpy()  # the runtime starts here
        stream = io.StringIO()
        assert not configure_runtime("auto", output=stream)
        assert "may differ in the last digits" in stream.getvalue(), stream.getvalue()
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    for code in (script, late):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
