"""Inputs checked before anything is written: `--strategy multiworker`'s TF_CONFIG (fit, pretrain), a TF_CONFIG left
in the environment of a single-process training (it must still write its run), and `import-torch`'s CHECKPOINT
inside the `--out` that `--overwrite` empties, and its `--resize2`.

The TF_CONFIG values here fail before any TensorFlow server starts (none, not JSON, a task index outside the
cluster), so that nothing waits for workers that do not exist.
"""
import io
import json
import os
import shutil

import pytest

from clirun import files_under, run_cli
from dnadet_tf.config import make_config
from dnadet_tf.errors import DnadetError
from dnadet_tf.runs import BEST_MODEL, RunDir
from synthetic import CLASSES, make_photos

# (TF_CONFIG, the end of the message: what was received); None: no TF_CONFIG at all
BAD_TF_CONFIGS = [
    (None, "received none."),
    ("notjson", "received 'notjson', which is not JSON (Expecting value: line 1 column 1 (char 0))."),
    (json.dumps({"cluster": {"worker": ["localhost:12345"]}, "task": {"type": "worker", "index": 3}}),
     "expected a task \"index\" from 0 to 0 (the cluster's 1 \"worker\" address), received 3."),
]
IDS = ["missing", "not-json", "index-out-of-range"]
MARKER = b"the model of an earlier run"


def set_tf_config(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)


def earlier_run(path, class_names=CLASSES):
    """A run dir as a finished training leaves it (config.json, labels.txt, a best.keras, a checkpoint file):
    what `overwrite` would replace. Returns {file name: bytes} of its files."""
    RunDir(path).start(make_config("tiny"), class_names)
    with open(os.path.join(path, BEST_MODEL), "wb") as f:
        f.write(MARKER)
    os.makedirs(os.path.join(path, "checkpoints"))
    with open(os.path.join(path, "checkpoints", "checkpoint"), "w", encoding="utf-8") as f:
        f.write('model_checkpoint_path: "ckpt-40"\n')
    return files_under(path)


# ------------------------------------------------------------------------------------- 1. a bad TF_CONFIG
@pytest.mark.parametrize("tf_config, received", BAD_TF_CONFIGS, ids=IDS)
def test_fit_with_a_bad_tf_config_keeps_the_run_it_would_overwrite(tf_config, received, upsampling_data, tmp_path,
                                                                   monkeypatch):
    """It failed after the run dir was started: an earlier run under --overwrite was wiped to config.json and
    labels.txt; not JSON or a task index outside the cluster were tracebacks (JSONDecodeError, ValueError)."""
    set_tf_config(monkeypatch, tf_config)
    out = str(tmp_path / "run")
    before = earlier_run(out)
    with pytest.raises(DnadetError, match=r"^TF_CONFIG \(read by `strategy` multiworker\): expected ") as raised:
        from dnadet_tf.training import fit

        fit(upsampling_data["train"], out, preset="tiny", steps=2, strategy="multiworker", overwrite=True,
            output=io.StringIO())
    assert str(raised.value).endswith(received) and "\n" not in str(raised.value)
    assert files_under(out) == before


@pytest.mark.parametrize("tf_config, received", BAD_TF_CONFIGS, ids=IDS)
def test_fit_command_with_a_bad_tf_config_writes_nothing(tf_config, received, upsampling_data, tmp_path,
                                                         monkeypatch):
    """Without --overwrite a half-made run dir (config.json, labels.txt) was left, which refused the corrected
    command ("the folder already holds files")."""
    set_tf_config(monkeypatch, tf_config)
    out = str(tmp_path / "new")
    code, _, stderr = run_cli(["fit", "--data", upsampling_data["train"], "--out", out, "--preset", "tiny",
                               "--steps", "2", "--strategy", "multiworker"])
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("dnadet-tf fit: error: TF_CONFIG (read by --strategy multiworker): expected "), stderr
    assert stderr.strip().endswith(received), stderr
    assert not os.path.exists(out)


@pytest.mark.parametrize("tf_config, received", BAD_TF_CONFIGS, ids=IDS)
def test_pretrain_with_a_bad_tf_config_keeps_the_run_and_writes_nothing(tf_config, received, tmp_path, monkeypatch):
    from dnadet_tf.transforms import TRANSFORM_NAMES

    set_tf_config(monkeypatch, tf_config)
    photos = make_photos(str(tmp_path / "photos"), 12)
    out = str(tmp_path / "run")
    before = earlier_run(out, TRANSFORM_NAMES)
    code, _, stderr = run_cli(["pretrain", "--photos", photos, "--out", out, "--preset", "tiny", "--steps", "2",
                               "--strategy", "multiworker", "--overwrite"])
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("dnadet-tf pretrain: error: TF_CONFIG (read by --strategy multiworker): expected "), stderr
    assert stderr.strip().endswith(received), stderr
    assert files_under(out) == before
    new = str(tmp_path / "new")
    code, _, stderr = run_cli(["pretrain", "--photos", photos, "--out", new, "--preset", "tiny", "--steps", "2",
                               "--strategy", "multiworker"])
    assert code == 2 and "TF_CONFIG" in stderr and not os.path.exists(new)


@pytest.mark.parametrize("tf_config, received", [
    ('["worker"]', "expected a JSON object such as"),
    ('{"task": {"type": "worker", "index": 0}}', 'expected a "cluster" object of chief and worker jobs'),
    ('{"cluster": {"ps": ["localhost:1"]}, "task": {"type": "ps", "index": 0}}', "received job 'ps'."),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}',
     'expected cluster job "worker" as a non-empty list of "host:port" addresses, received ["localhost"].'),
    ('{"cluster": {"worker": ["localhost:1"]}}', 'expected a "task" object naming this process'),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "chief", "index": 0}}',
     "expected a task \"type\" among the cluster's jobs (worker), received 'chief'."),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker"}}', "received none."),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": -1}}', "received -1."),
    ("  ", "received an empty value."),
])
def test_other_tf_configs_that_do_not_fit_are_one_line(tf_config, received, monkeypatch):
    from dnadet_tf.distribute import check_strategy, read_tf_config

    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(DnadetError, match=r"^TF_CONFIG ") as raised:
        check_strategy("multiworker")
    assert received in str(raised.value) and "\n" not in str(raised.value)
    check_strategy("default")  # read by multiworker only
    for good in ({"cluster": {"worker": ["localhost:1", "[::1]:2"]}, "task": {"type": "worker", "index": 1}},
                 {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "chief", "index": "0"}}):
        monkeypatch.setenv("TF_CONFIG", json.dumps(good))
        assert read_tf_config() == good


# -------------------------------------------------- 2. a TF_CONFIG left over from a multi-worker training
LEFTOVER = json.dumps({"cluster": {"worker": ["localhost:12345", "localhost:12346"]},
                       "task": {"type": "worker", "index": 1}})


def test_a_leftover_tf_config_of_a_worker_does_not_stop_a_single_process_fit_from_writing(upsampling_data, tmp_path,
                                                                                          monkeypatch):
    """The trainer read TF_CONFIG whatever the strategy: worker 1 is no chief, so `--strategy default` saved no
    best.keras, checkpoint or metrics, yet said "done" and exited 0."""
    monkeypatch.setenv("TF_CONFIG", LEFTOVER)
    out = str(tmp_path / "run")
    code, stdout, stderr = run_cli(["fit", "--data", upsampling_data["train"], "--out", out, "--preset", "tiny",
                                    "--steps", "2", "--strategy", "default"])
    assert code == 0, stderr
    assert os.path.isfile(os.path.join(out, BEST_MODEL))
    assert os.listdir(os.path.join(out, "checkpoints"))
    assert os.path.getsize(os.path.join(out, "metrics.jsonl")) > 0
    assert "] step 2/2" in stdout and "done: step 2" in stdout  # its progress lines too
    import tensorflow as tf

    from dnadet_tf.distribute import is_chief

    assert is_chief(tf.distribute.get_strategy())  # only a MultiWorkerMirroredStrategy reads TF_CONFIG


def test_a_leftover_tf_config_of_a_worker_does_not_stop_a_single_process_pretrain_from_writing(tmp_path,
                                                                                               monkeypatch):
    from dnadet_tf.pretraining import pretrain

    monkeypatch.setenv("TF_CONFIG", LEFTOVER)
    photos = make_photos(str(tmp_path / "photos"), 12)
    out = str(tmp_path / "run")
    summary = pretrain(photos, out, preset="tiny", steps=2, val_every=2, strategy="auto", output=io.StringIO())
    assert summary["end_step"] == 2
    assert os.path.isfile(os.path.join(out, BEST_MODEL))
    assert os.listdir(os.path.join(out, "checkpoints"))


# --------------------------------------------------------------------------------------------- 3, 4. import-torch
@pytest.fixture
def release_checkpoint(tmp_path):
    """A torch.save'd state dict of the release's network at nf = 4 with 2 classes (random weights)."""
    if os.environ.get("CI"):
        import torch  # CI must run these tests: .ci/run installs the torch extra
    else:
        torch = pytest.importorskip("torch", reason="the torch extra is not installed: pip install -e '.[torch]'")
    from dnadet_tf.torch_import import expected_tensors

    generator = torch.Generator().manual_seed(0)
    state = {name: torch.rand(shape, generator=generator) + 0.5 for name, shape in expected_tensors(4, 2)}
    path = tmp_path / "model.pth"
    torch.save(state, path)
    return str(path)


IMPORT_FLAGS = ["--classes", "real,fake", "--crop-size", "32", "--resize1", "32", "--resize2", "32"]


def test_import_torch_refuses_a_checkpoint_inside_the_out_it_would_empty(release_checkpoint, tmp_path):
    """`import-torch RUN/model.pth --out RUN --overwrite` emptied RUN first, deleting the checkpoint it then
    failed to read."""
    run = str(tmp_path / "run")
    code, _, stderr = run_cli(["import-torch", release_checkpoint, "--out", run] + IMPORT_FLAGS)
    assert code == 0, stderr
    inside = os.path.join(run, "model.pth")
    shutil.copy(release_checkpoint, inside)
    os.symlink(inside, tmp_path / "link.pth")
    before = files_under(run)
    for given in (inside, os.path.join(run, ".", "model.pth"), str(tmp_path / "link.pth")):
        code, _, stderr = run_cli(["import-torch", given, "--out", run, "--overwrite"] + IMPORT_FLAGS)
        assert code == 2, stderr
        assert stderr.strip() == (
            f"dnadet-tf import-torch: error: checkpoint {given}: expected a file outside --out {run}, which "
            f"--overwrite empties before the checkpoint is read, received one inside it; move the checkpoint out "
            f"of the folder first, or import into another one."), stderr
        assert files_under(run) == before
    # from outside, --overwrite replaces the run as before
    code, _, stderr = run_cli(["import-torch", release_checkpoint, "--out", run, "--overwrite"] + IMPORT_FLAGS)
    assert code == 0, stderr
    assert not os.path.exists(inside) and os.path.isfile(os.path.join(run, BEST_MODEL))


def test_import_torch_names_resize2_when_the_patch_size_it_derives_does_not_fit(release_checkpoint, tmp_path):
    """--resize2 40 was refused as "patch_size: expected a multiple of 16", a parameter import-torch has no flag
    for (it derives the patch size, min(64, resize2)); --resize2 100 named --resize2."""
    for value, near in ((40, "32 or 48"), (100, "96 or 112"), (8, "16")):
        out = str(tmp_path / f"run{value}")
        code, _, stderr = run_cli(["import-torch", release_checkpoint, "--classes", "real,fake", "--out", out,
                                   "--resize2", str(value)])
        assert code == 2, stderr
        assert stderr.strip() == (f"dnadet-tf import-torch: error: --resize2: expected a multiple of 16 (the "
                                  f"encoder's total stride), such as {near}, received {value}."), stderr
        assert not os.path.exists(out)
    code, _, stderr = run_cli(["import-torch", release_checkpoint, "--classes", "real,fake", "--out",
                               str(tmp_path / "run48"), "--crop-size", "48", "--resize1", "48", "--resize2", "48"])
    assert code == 0, stderr  # a multiple of 16 below 64: the patch size is 48 too
