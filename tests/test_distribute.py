"""tf.distribute: 2 logical CPU replicas agree with 1; 2 worker processes train together."""
import json
import os
import socket
import subprocess
import sys

import numpy as np


HERE = os.path.dirname(os.path.abspath(__file__))


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return env


def test_mirrored_two_replicas_match_one_replica(upsampling_data):
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, "mirrored_check.py"), upsampling_data["train"]],
        capture_output=True, text=True, timeout=300, env=_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["max_update"] > 1e-3  # the step really changed the weights
    # Same updated weights after one SGD step (see mirrored_check.py): every variable's update
    # agrees to within 5 % (measured here: about 1 %, float round-off through the BatchNorm
    # backward pass; unsynchronised BatchNorm measured 177 %).
    assert report["max_relative_diff"] < 0.05, report
    assert report["loss_weights_diff"] < 1e-6, report
    for single, mirrored in zip(report["loss_single"], report["loss_mirrored"]):
        assert abs(single - mirrored) < 1e-4 * max(1.0, abs(single)), report
    # Uneven replica batches (5 and 4 images) and the content alignment give one device's losses: total,
    # cross-entropy, contrastive, alignment (cross-entropy was 1.2258 against 1.2174 when each replica counted
    # its own images times the replicas; the alignment 0.0727 against 0.0463 when each aligned its own images).
    for name in ("uneven", "aligned"):
        single, mirrored = report["first_losses"][name]
        assert np.allclose(single, mirrored, rtol=1e-4, atol=1e-6), (name, single, mirrored)
    assert report["first_losses"]["aligned"][0][3] > 0  # the alignment has two groups to measure
    assert not report["dropout_masks_equal"] and all(0.3 < kept < 0.7 for kept in report["dropout_kept"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multiworker_two_processes_on_localhost(upsampling_data, tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    processes = []
    for index in range(2):
        env = _env()
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        command = [sys.executable, "-m", "dnadet_tf.cli.main", "fit", "--data", upsampling_data["train"],
                   "--val", upsampling_data["val"], "--out", str(tmp_path / f"worker{index}"),
                   "--preset", "tiny", "--steps", "4", "--strategy", "multiworker"]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outputs = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=300)
            outputs.append((process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for code, out, err in outputs:
        assert code == 0, err[-3000:]
    chief_out = outputs[0][1]
    assert "2 replica(s)" in chief_out and "done: step 4" in chief_out
    assert os.path.isfile(tmp_path / "worker0" / "best.keras")
    assert os.path.isdir(tmp_path / "worker0" / "checkpoints")


def test_mirrored_on_one_device_says_how_to_split_the_cpu(capsys):
    import tensorflow as tf

    from dnadet_tf.distribute import make_strategy

    if len(tf.config.list_logical_devices("CPU")) > 1 or tf.config.list_physical_devices("GPU"):
        # this process has more than one device: the check runs in a fresh one that sees no GPU and one CPU
        code = ("from dnadet_tf.distribute import make_strategy; "
                "print(make_strategy('mirrored').num_replicas_in_sync)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env=dict(_env(), CUDA_VISIBLE_DEVICES=""))
        assert done.returncode == 0, done.stderr[-3000:]
        replicas, err = int(done.stdout.strip().splitlines()[-1]), done.stderr
    else:
        replicas, err = make_strategy("mirrored").num_replicas_in_sync, capsys.readouterr().err
    assert replicas == 1
    assert ("warning: --strategy mirrored: one device (no GPU and one logical CPU), so one replica; split the CPU "
            "from Python before TensorFlow starts") in err


def test_mirrored_on_one_gpu_says_one_gpu_not_one_cpu(monkeypatch, capsys):
    # The warning for one device said "no GPU and one logical CPU" and how to split the CPU, also on one GPU.
    from types import SimpleNamespace

    from dnadet_tf import distribute

    def listed(kind):
        return [SimpleNamespace(name="/device:GPU:0")] if kind == "GPU" else [SimpleNamespace(name="/device:CPU:0")]

    made = []
    monkeypatch.setattr(distribute, "configure_runtime", lambda name: None)
    monkeypatch.setattr(distribute.tf.config, "list_logical_devices", listed)
    monkeypatch.setattr(distribute.tf.distribute, "MirroredStrategy", lambda devices: made.append(devices) or devices)
    distribute.make_strategy("mirrored")
    assert made == [["/device:GPU:0"]]
    err = capsys.readouterr().err
    assert "warning: --strategy mirrored: one device (one GPU), so one replica" in err and "CPU" not in err
