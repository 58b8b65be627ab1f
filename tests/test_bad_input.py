"""Bad input, file by file and flag by flag: what is refused, skipped or stopped, and how it is said.

Issue 10: images too small for the preprocessing, PNG checksums, one-class data,
missing or duplicated list entries, --init with another encoder, metrics.jsonl
after a resume, fuzzed decoder input, and a quiet, conventional CLI.
"""
import argparse
import contextlib
import importlib.util
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dnadet_tf import runs
from dnadet_tf.cli.main import build_parser
from dnadet_tf.config import make_config
from dnadet_tf.data import check_files, read_dataset
from dnadet_tf.errors import DataError, DnadetError, RunDirError
from dnadet_tf.evaluation import evaluate
from dnadet_tf.images import ImageError, load_rgb
from dnadet_tf.model import Backbone, Classifier, encoder_mismatch
from dnadet_tf.predictor import KerasPredictor
from dnadet_tf.preprocess import PreprocessConfig, preprocess_image
from dnadet_tf.training import fit, load_init_weights
from synthetic import make_upsampling_tree
from clirun import run_cli as _cli

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _png(height, width, seed=0):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        buffer, format="PNG")
    return buffer.getvalue()


def _write(path, data):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "wb") as f:
        f.write(data)
    return str(path)


def _broken_idat_checksum(png):
    """The PNG with the CRC of its first IDAT chunk inverted (its pixels untouched)."""
    data = bytearray(png)
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4:at])[0]
    crc = at + 4 + length
    data[crc:crc + 4] = bytes(b ^ 0xFF for b in data[crc:crc + 4])
    return bytes(data)


@pytest.fixture(scope="module")
def serving_default(untrained_run, tmp_path_factory):
    from dnadet_tf.exports.savedmodel import write_savedmodel

    predictor = KerasPredictor(untrained_run)
    path = str(tmp_path_factory.mktemp("savedmodel") / "1")
    write_savedmodel(predictor.model, predictor.class_names, predictor.preprocess, path, {})
    return tf.saved_model.load(path).signatures["serving_default"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step `tiny` run on a tree holding three images too small for it, validated at steps 2 and 4."""
    root = tmp_path_factory.mktemp("bad_fit")
    data, val = str(root / "data"), str(root / "val")
    make_upsampling_tree(data, 6, seed=3)
    make_upsampling_tree(val, 3, seed=4)
    small = [_write(root / "data" / "nearest" / "tiny-8x8.png", _png(8, 8)),
             _write(root / "data" / "real" / "wide-2000x16.png", _png(16, 2000)),
             _write(root / "data" / "transposed" / "square-31.png", _png(31, 31))]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        summary = fit(data, str(root / "run"), val=val, preset="tiny", steps=4, val_every=2, checkpoint_every=2,
                      log_every=1, output=out)
    return {"root": root, "data": data, "val": val, "run": str(root / "run"), "small": small,
            "summary": summary, "stdout": out.getvalue(), "stderr": err.getvalue()}


# ---------------------------------------------------------------- 1. too small
def test_size_rule_names_the_sizes():
    config = PreprocessConfig(crop_size=32, resize1=32, resize2=64, min_side=32)
    assert config.size_problem(32, 32) is None and config.size_problem(33, 40) is None
    assert "square image with sides >= 32 px, received 8x8 px" in config.size_problem(8, 8)
    assert "both sides >= 32 px" in config.size_problem(16, 2000) and "2000x16 px" in config.size_problem(16, 2000)
    assert "31x31" in config.size_problem(31, 31)
    # A non-square image needs the crop even when min_side is lower (the cpu preset: crop 128, patch 64).
    cpu = make_config("cpu").preprocess
    assert cpu.min_side == 64 and cpu.size_problem(64, 64) is None and "128 px" in cpu.size_problem(100, 130)


@pytest.mark.parametrize("shape", [(8, 8, 3), (16, 2000, 3), (31, 31, 3), (40, 31, 3)])
def test_preprocess_image_refuses_small_images_in_the_graph(shape):
    config = PreprocessConfig(crop_size=32, resize1=32, resize2=64, min_side=32)
    image = np.zeros(shape, np.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError, match="image too small"):
        preprocess_image(image, config)
    with pytest.raises(tf.errors.InvalidArgumentError, match="image too small"):
        tf.function(lambda x: preprocess_image(x, config))(image)
    assert preprocess_image(np.zeros((32, 40, 3), np.uint8), config).shape == (64, 64, 3)


def test_preprocess_image_applies_pillows_pixel_limit(monkeypatch):
    config = PreprocessConfig(crop_size=32, resize1=32, resize2=64, min_side=32)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 40)
    assert preprocess_image(np.zeros((40, 40, 3), np.uint8), config).shape == (64, 64, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="image too large: expected at most 1600 pixels"):
        preprocess_image(np.zeros((40, 41, 3), np.uint8), config)


def test_min_side_comes_from_the_run_and_old_exports_still_load(untrained_run):
    assert KerasPredictor(untrained_run).preprocess == PreprocessConfig(32, 32, 64, min_side=32)
    assert make_config("paper").preprocess.min_side == 64
    # Preprocessing parameters written before min_side existed (exports, sidecars).
    old = PreprocessConfig.from_dict({"crop_size": 128, "resize1": 128, "resize2": 256})
    assert old == PreprocessConfig(128, 128, 256) and old.min_side == 1
    assert PreprocessConfig.from_dict(old.to_dict()) == old


def test_predict_refuses_small_images_with_one_line_each(untrained_run, tmp_path):
    tiny = _write(tmp_path / "tiny.png", _png(8, 8))
    wide = _write(tmp_path / "wide.png", _png(16, 2000))
    good = _write(tmp_path / "good.png", _png(48, 48))
    code, stdout, stderr = _cli(["predict", "--model", untrained_run, tiny, wide, good])
    assert code == 0, stderr
    assert [line.split("\t")[0] for line in stdout.splitlines()] == [good]
    lines = stderr.strip().splitlines()
    # This run was never calibrated: predict says so once, then one line per refused file.
    assert sum(line.startswith("note:") and "no open-set score" in line for line in lines) == 1
    warnings = [line for line in lines if not line.startswith("note:")]
    assert len(warnings) == 3 and warnings[-1] == "2 file(s) skipped"
    assert "tiny.png" in warnings[0] and ">= 32 px" in warnings[0] and "8x8 px" in warnings[0]
    assert "wide.png" in warnings[1] and "2000x16 px" in warnings[1]
    # --json: a program reading the records hears of every file it gave, the skipped ones after the answers
    code, stdout, stderr = _cli(["predict", "--model", untrained_run, "--json", tiny, wide, good])
    records = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0 and [record["path"] for record in records] == [good, tiny, wide]
    assert "class" in records[0] and "skipped" not in records[0]
    assert [sorted(record) for record in records[1:]] == [["path", "skipped"]] * 2
    assert ">= 32 px" in records[1]["skipped"] and "8x8 px" in records[1]["skipped"]
    assert not records[1]["skipped"].startswith(tiny)  # the reason alone: the path has its own key
    code, stdout, stderr = _cli(["predict", "--model", untrained_run, tiny])
    assert code == 2 and stdout == "" and stderr.strip().splitlines()[-1].startswith("dnadet-tf predict: error:")


def test_predict_on_a_folder_names_the_files_it_does_not_read(untrained_run, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = _write(folder / "good.png", _png(48, 48))
    _write(folder / "notes.txt", b"mine")
    _write(folder / "README", b"mine")
    _write(folder / ".hidden", b"mine")
    code, stdout, stderr = _cli(["predict", "--model", untrained_run, str(folder)])
    assert code == 0 and [line.split("\t")[0] for line in stdout.splitlines()] == [good]
    [warning] = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert warning.startswith(f"warning: {folder}: 2 file(s) without an image extension (.png .jpg ")
    assert warning.endswith(f"not read, e.g. {folder / 'README'}")


def test_overwrite_never_empties_a_folder_that_is_no_run_dir(untrained_run, trained, tmp_path):
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    _write(folder / "important.txt", b"mine")
    for argv in (["fit", "--data", trained["data"], "--out", str(folder), "--preset", "tiny", "--steps", "2",
                  "--overwrite"],
                 ["adapt", untrained_run, "--images", trained["val"], "--out", str(folder), "--overwrite"]):
        code, _, stderr = _cli(argv)
        assert code == 2 and f"--out {folder}: expected a run dir to replace" in stderr.strip().splitlines()[-1]
        assert sorted(os.listdir(folder)) == ["important.txt", "sub"]


def test_empty_attacks_and_an_out_that_is_a_file_are_refused(untrained_run, trained, tmp_path):
    code, _, stderr = _cli(["robustness", "--model", untrained_run, "--data", trained["val"], "--attacks", ""])
    assert code == 2 and "--attacks: expected one or more attack names, received ''." in stderr
    a_file = _write(tmp_path / "notes.txt", b"mine")
    code, _, stderr = _cli(["zoo", "swap-content", "--zoo", str(tmp_path), "--out", a_file])
    assert code == 2 and stderr.strip() == f"dnadet-tf zoo swap-content: error: --out {a_file}: exists and is not a folder."


def test_savedmodel_refuses_small_and_broken_images(serving_default):
    for encoded in (_png(8, 8), _png(16, 2000), _png(31, 31)):
        with pytest.raises(tf.errors.InvalidArgumentError, match="image too small"):
            serving_default(images=tf.constant([encoded]))
    with pytest.raises(tf.errors.InvalidArgumentError):
        serving_default(images=tf.constant([_broken_idat_checksum(_png(48, 48))]))
    assert serving_default(images=tf.constant([_png(48, 48), _png(32, 40)]))["probabilities"].shape == (2, 3)


def test_training_skips_small_images_with_a_warning_naming_each(trained):
    assert trained["summary"]["skipped_files"] == 3
    warnings = [line for line in trained["stderr"].splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 3
    for path in trained["small"]:
        assert sum(path in line and "too small" in line for line in warnings) == 1
    assert "3 file(s) skipped" in trained["stdout"]


def test_evaluation_skips_small_images(untrained_run, tmp_path):
    make_upsampling_tree(str(tmp_path / "data"), 2, seed=5)
    small = _write(tmp_path / "data" / "real" / "small.png", _png(20, 20))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rows = evaluate(KerasPredictor(untrained_run), [str(tmp_path / "data")], progress=lambda line: None)
    assert rows[0]["metrics"]["skipped_files"] == 1 and rows[0]["metrics"]["num_images"] == 6
    assert small in err.getvalue() and "20x20 px" in err.getvalue()


# ---------------------------------------------------------------- 2. PNG checksum
def test_png_with_a_broken_idat_checksum_is_skipped(tmp_path):
    broken = _broken_idat_checksum(_png(40, 40))
    path = _write(tmp_path / "gan" / "broken.png", broken)
    with Image.open(io.BytesIO(broken)) as image:
        image.load()  # Pillow's load alone accepts it: the reason for the verify
    with pytest.raises(ImageError, match="broken.png: cannot be decoded .*IDAT"):
        load_rgb(path)
    _write(tmp_path / "gan" / "good.png", _png(40, 40))
    _write(tmp_path / "real" / "good.png", _png(40, 40, seed=1))
    warnings = []
    files = check_files(read_dataset(str(tmp_path)), crop_size=32, warn=warnings.append)
    assert [p for p, _ in files.skipped] == [path] and len(warnings) == 1 and "\n" not in warnings[0]


def test_gif_whose_first_frame_does_not_fill_the_screen_is_refused(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).convert("P").save(buffer, format="GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", 39, 4000)  # a damaged header: a 39x4000 screen for a 10x10 frame
    path = _write(tmp_path / "screen.gif", bytes(data))
    with pytest.raises(ImageError, match="first frame .10x10 px at 0,0. does not fill its 39x4000 px screen"):
        load_rgb(path)
    assert load_rgb(_write(tmp_path / "plain.gif", buffer.getvalue())).shape == (10, 10, 3)


# ---------------------------------------------------------------- 3. one class
def test_fit_needs_two_classes_evaluate_does_not(untrained_run, tmp_path):
    make_upsampling_tree(str(tmp_path / "both"), 2, seed=6)
    os.makedirs(tmp_path / "one")
    shutil.copytree(tmp_path / "both" / "nearest", tmp_path / "one" / "nearest")
    with pytest.raises(DataError, match="expected at least two classes .*received one \\('nearest'\\)"):
        fit(str(tmp_path / "one"), str(tmp_path / "run"), preset="tiny", steps=1, output=io.StringIO())
    assert not os.path.exists(tmp_path / "run")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rows = evaluate(KerasPredictor(untrained_run), [str(tmp_path / "one")], progress=lambda line: None)
    assert rows[0]["metrics"]["num_images"] == 2


# ---------------------------------------------------------------- 4, 5. annotation lists
def test_missing_path_in_a_list_stops_naming_list_line_and_path(tmp_path):
    _write(tmp_path / "a.png", _png(40, 40))
    (tmp_path / "classes.txt").write_text("real\ngan\n")
    (tmp_path / "train.txt").write_text("a.png\t0\n# comment\nimg/missing.png\t1\n")
    with pytest.raises(DataError, match=r"train.txt:3: expected an image file, received 'img/missing.png', "
                                        r"which does not exist"):
        read_dataset(str(tmp_path / "train.txt"))


def test_a_path_listed_twice(tmp_path):
    _write(tmp_path / "a.png", _png(40, 40))
    _write(tmp_path / "b.png", _png(40, 40, seed=1))
    (tmp_path / "classes.txt").write_text("real\ngan\n")
    (tmp_path / "same.txt").write_text(f"a.png\t0\nb.png\t1\n./a.png\t0\n{tmp_path / 'b.png'}\t1\n")
    warnings = []
    files = read_dataset(str(tmp_path / "same.txt"), warn=warnings.append)
    assert len(files) == 2 and files.labels.tolist() == [0, 1]
    assert len(warnings) == 2 and "same.txt:3:" in warnings[0] and "repeats line 1" in warnings[0]
    (tmp_path / "clash.txt").write_text("a.png\t0\nb.png\t1\na.png\t1\n")
    with pytest.raises(DataError, match=r"clash.txt:3: 'a.png' is labelled 1 \(gan\), but line 1 labels the "
                                        r"same file 0 \(real\)"):
        read_dataset(str(tmp_path / "clash.txt"))


# ---------------------------------------------------------------- 6. --init
def test_encoder_mismatch_ignores_the_head():
    narrow, wide = Classifier(Backbone(0.0625), 3), Classifier(Backbone(0.125), 3)
    assert encoder_mismatch(narrow, wide) == ("stage1_conv1/kernel", (4, 4, 3, 8), (4, 4, 3, 4))
    assert encoder_mismatch(narrow, Classifier(Backbone(0.0625), 5)) is None


def test_init_from_another_encoder_stops_unless_partial(trained, tmp_path):
    out = str(tmp_path / "wider")
    with pytest.raises(RunDirError, match=r"weight stage1_conv1/kernel expected shape \(4, 4, 3, 8\), received "
                                          r"\(4, 4, 3, 4\); pass init_partial=True"):
        fit(trained["data"], out, preset="tiny", steps=1, init=trained["run"], width=0.125, output=io.StringIO())
    assert not os.path.exists(out)
    printed = io.StringIO()
    with contextlib.redirect_stderr(io.StringIO()):
        fit(trained["data"], out, preset="tiny", steps=1, init=trained["run"], width=0.125, init_partial=True,
            output=printed)
    assert f"--init {trained['run']}: loaded" in printed.getvalue() and os.path.isfile(os.path.join(out, "best.keras"))


def test_init_with_another_class_count_reinitialises_the_head_only(trained):
    printed = io.StringIO()
    apply = load_init_weights(trained["run"], make_config("tiny"), num_classes=5, output=printed)
    apply(Classifier(Backbone(0.0625), 5))
    assert printed.getvalue().strip().endswith("re-initialised 2: logits/kernel, logits/bias")


def test_init_head_follows_the_classes_by_name(trained):
    """A head of the same shape is loaded as it is for the init run's classes in its order, with its columns in
    this run's order for the same classes in another order, and re-initialised for other classes."""
    source = runs.RunDir(trained["run"]).load_model()
    names = list(source.class_names)
    kernel, bias = source.get_layer("logits").get_weights()
    for class_names, expected in ((names, [0, 1, 2]), (names[::-1], [2, 1, 0]), (["a", "b", "c"], None)):
        printed = io.StringIO()
        apply = load_init_weights(trained["run"], make_config("tiny"), num_classes=3, output=printed,
                                  class_names=class_names)
        target = Classifier(Backbone(0.0625), 3, class_names=class_names)
        apply(target)
        loaded_kernel, loaded_bias = target.get_layer("logits").get_weights()
        line = printed.getvalue().strip()
        if expected is None:
            assert not np.allclose(loaded_kernel, kernel)
            assert line.endswith(f"re-initialised 2: logits/kernel, logits/bias (the init run's classes are "
                                 f"{', '.join(names)}, not this run's)"), line
        else:
            assert np.array_equal(loaded_kernel, kernel[:, expected]) and np.array_equal(loaded_bias, bias[expected])
            assert "re-initialised 0: none" in line, line
            assert ("put in this run's order" in line) == (expected != [0, 1, 2]), line


def test_init_from_another_magnification_warns_once_naming_both_sizes(trained):
    def warnings_for(**overrides):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            load_init_weights(trained["run"], make_config("tiny", **overrides), num_classes=5, output=io.StringIO())
        return err.getvalue().strip().splitlines()

    assert warnings_for() == []  # the tiny run was trained at the tiny preset's 64 px
    lines = warnings_for(resize2=80)
    assert len(lines) == 1 and lines[0].startswith(f"warning: --init {trained['run']}: ")
    assert "resized to 64 px, this run resizes them to 80 px (--resize2)" in lines[0]
    assert "--resize2 80" in lines[0]


def test_init_partial_flag_reaches_fit():
    from dnadet_tf.cli.fit import overrides_from

    args = build_parser().parse_args(["fit", "--init", "RUN", "--init-partial"])
    assert overrides_from(args)["init_partial"] is True
    assert overrides_from(build_parser().parse_args(["fit"]))["init_partial"] is False


# ---------------------------------------------------------------- 7. metrics.jsonl after a resume
def test_truncate_metrics_keeps_what_the_checkpoint_covers(tmp_path):
    lines = [{"kind": "train", "step": 1}, {"kind": "val", "step": 2}, {"kind": "train", "step": 3}]
    (tmp_path / runs.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"kind": "tr')
    assert runs.RunDir(tmp_path).truncate_log(2) == 2
    kept = [json.loads(line) for line in (tmp_path / runs.METRICS_FILE).read_text().splitlines()]
    assert kept == lines[:2] and os.listdir(tmp_path) == [runs.METRICS_FILE]
    assert runs.RunDir(tmp_path / "nowhere").truncate_log(0) == 0


def test_resume_after_a_kill_logs_every_step_once(trained, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(trained["run"], run_dir)
    # As if killed after logging step 4 but before its checkpoint was written: the latest is step 2.
    checkpoints = os.path.join(run_dir, runs.CHECKPOINTS)
    for name in os.listdir(checkpoints):
        if name.startswith("ckpt-4"):
            os.remove(os.path.join(checkpoints, name))
    with open(os.path.join(checkpoints, "checkpoint"), "w", encoding="utf-8") as f:
        f.write('model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-2"\n')
    # and killed while writing best.keras and config.json (their temporary files stayed: never removed)
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not runs.process_alive(pid))
    stale = [f"best.tmp-{dead}.keras", f"config.json.tmp-{dead}"]
    kept = [f"metrics.jsonl.tmp-{os.getppid()}", "notes.tmp-1x"]  # a live process's, and no temporary name
    for name in stale + kept:
        with open(os.path.join(run_dir, name), "w", encoding="utf-8") as f:
            f.write("partial")
    printed = io.StringIO()
    with contextlib.redirect_stderr(io.StringIO()):
        fit(trained["data"], run_dir, val=trained["val"], preset="tiny", resume=True, output=printed)
    assert "at step 2; dropped 3 metrics.jsonl record(s) of later steps" in printed.getvalue()
    assert not any(os.path.exists(os.path.join(run_dir, name)) for name in stale)
    assert all(os.path.exists(os.path.join(run_dir, name)) for name in kept)
    with open(os.path.join(run_dir, runs.METRICS_FILE), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    assert [r["step"] for r in records if r["kind"] == "val"] == [2, 4]


def test_a_truncated_checkpoint_is_named_and_the_one_before_it_resumed(trained, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(trained["run"], run_dir)
    checkpoints = os.path.join(run_dir, runs.CHECKPOINTS)
    [data_file] = [n for n in os.listdir(checkpoints) if n.startswith("ckpt-4.data")]
    path = os.path.join(checkpoints, data_file)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    printed = io.StringIO()
    with contextlib.redirect_stderr(io.StringIO()):
        summary = fit(trained["data"], run_dir, preset="tiny", resume=True, output=printed)
    lines = printed.getvalue().splitlines()
    assert any(line.startswith(f"warning: checkpoint {os.path.join(checkpoints, 'ckpt-4')} cannot be read (")
               for line in lines), lines
    assert any(f"resumed from {os.path.join(checkpoints, 'ckpt-2')} at step 2" in line for line in lines)
    assert summary["end_step"] == 4
    for name in os.listdir(checkpoints):  # every checkpoint unreadable: one line naming them
        if name.startswith("ckpt-"):
            with open(os.path.join(checkpoints, name), "r+b") as f:
                f.truncate(3)
    code, _, stderr = _cli(["fit", "--data", trained["data"], "--out", run_dir, "--resume", "--steps", "6"])
    errors = [line for line in stderr.splitlines() if not line.startswith("warning: skipped")]  # its small images
    assert code == 2 and len(errors) == 1 and "expected a checkpoint that can be read" in errors[0], stderr


def test_an_out_under_a_file_is_one_line_and_exit_code_1(trained, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine", encoding="utf-8")
    code, _, stderr = _cli(["fit", "--data", trained["data"], "--out", str(a_file / "run"), "--preset", "tiny",
                            "--steps", "2"])
    lines = [line for line in stderr.splitlines() if not line.startswith("warning: skipped")]  # its small images
    assert code == 1 and len(lines) == 1 and lines[0].startswith("dnadet-tf fit: error: ") and "notes.txt" in lines[0]
    assert "Traceback" not in stderr and a_file.read_text(encoding="utf-8") == "mine"


# ---------------------------------------------------------------- 8. fuzzed decoder input
def _fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_decoders", os.path.join(BENCHMARKS, "fuzz_decoders.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fuzzed_bytes_are_refused_by_serving_default_and_predict(tmp_path):
    fuzz = _fuzz_module()
    result = fuzz.run(500, seed=1, folder=str(tmp_path))
    assert sum(result["kinds"].values()) == 500 and all(result["kinds"].values())
    serving, predict = result["serving_default"]["outcomes"], result["predict"]["outcomes"]
    assert set(serving) <= {"invalid_argument", "answer"}, serving
    assert set(predict) <= {"refused", "answer"}, predict
    assert result["disagreements"] == 0
    # Every seed image is smaller than min_side: an answer needs a JPEG whose damaged header
    # declares a larger size (libjpeg fills it in, in both decoders).
    for case in result["answered"]:
        assert case["seed"].startswith("jpeg") and case["decoded_size"], case


# ---------------------------------------------------------------- 9. the command line
def test_no_command_prints_usage_on_stderr_and_exits_2():
    code, stdout, stderr = _cli([])
    assert code == 2 and stderr.startswith("usage: dnadet-tf") and "fit" in stderr and stdout == ""
    code, stdout, stderr = _cli(["zoo"])
    assert code == 2 and stderr.startswith("usage: dnadet-tf zoo") and "build" in stderr and stdout == ""


def _all_parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _all_parsers(child)


def test_no_help_shows_default_none_or_an_off_flags_value():
    parsers = list(_all_parsers(build_parser()))
    assert {p.prog for p in parsers} >= {"dnadet-tf fit", "dnadet-tf predict", "dnadet-tf zoo build"}
    for parser in parsers:
        text = parser.format_help()
        assert "default: None" not in text and "default: False" not in text, parser.prog
        # an on/off flag such as ablate's --no-validation (store_false) is True when absent: not a default to show
        assert "default: True" not in text, parser.prog
        assert "%%" not in text, parser.prog  # descriptions are not %-formatted: a doubled % shows as is
    predict = next(p for p in parsers if p.prog == "dnadet-tf predict").format_help()
    assert "(default: 3)" in predict  # real defaults are still shown


def test_verbose_flag_before_or_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["--verbose", "predict", "--model", "m", "x.png"]).verbose is True
    assert parser.parse_args(["predict", "--model", "m", "x.png", "--verbose"]).verbose is True
    assert parser.parse_args(["predict", "--model", "m", "x.png"]).verbose is False


def test_version_flag_names_the_package_and_its_libraries(capsys):
    import keras

    import dnadet_tf

    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["--version"])
    assert stopped.value.code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"dnadet-tf {dnadet_tf.__version__} (TensorFlow 2.21")
    assert f"Keras {keras.__version__}," in line


def test_predict_prints_no_tensorflow_start_up_lines(untrained_run, tmp_path):
    image = _write(tmp_path / "good.png", _png(48, 48))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    done = subprocess.run([sys.executable, "-m", "dnadet_tf.cli.main", "predict", "--model", untrained_run, image],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    # Only our own note (this run was never calibrated), no TensorFlow start-up line.
    assert [line for line in done.stderr.splitlines() if not line.startswith("note: ")] == []
    assert len(done.stdout.splitlines()) == 1 and done.stdout.startswith(image)


def test_a_wrong_flag_is_one_line_also_when_the_command_runs_as_a_module(untrained_run):
    # `python -m dnadet_tf.cli.main` runs main.py as __main__ beside the dnadet_tf.cli.main the commands import:
    # a UsageError defined in main.py was two classes, and the handler caught neither's twin (a traceback).
    done = subprocess.run([sys.executable, "-m", "dnadet_tf.cli.main", "predict", "--model", untrained_run,
                           "x.png", "--top-k", "0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "dnadet-tf predict: error: --top-k: expected a positive integer, received 0."


@pytest.mark.parametrize("command", [["predict", "--model", "RUN", "IMAGE"], ["calibrate", "RUN"],
                                     ["explain", "--model", "RUN", "IMAGE", "--out", "OUT"],
                                     ["evaluate", "--model", "RUN", "--data", "IMAGE"],
                                     ["robustness", "--model", "RUN", "--data", "IMAGE"]])
def test_a_batch_size_below_one_is_refused_in_one_line(untrained_run, tmp_path, command):
    from clirun import run_cli

    image = _write(tmp_path / "good.png", _png(48, 48))
    names = {"RUN": untrained_run, "IMAGE": image, "OUT": str(tmp_path / "explained")}
    argv = [names.get(part, part) for part in command] + ["--batch-size", "0"]
    code, _, stderr = run_cli(argv)
    assert code == 2 and stderr.strip() == f"dnadet-tf {command[0]}: error: --batch-size: expected a positive integer, received 0."
    assert not os.path.exists(names["OUT"])


def test_a_model_path_that_is_no_run_says_what_it_is(untrained_run, tmp_path):
    from clirun import run_cli

    image = _write(tmp_path / "good.png", _png(48, 48))
    benchmark = tmp_path / "zoo"
    benchmark.mkdir()
    (benchmark / "classes.txt").write_text("real\n")
    (benchmark / "train.txt").write_text("")
    truncated = tmp_path / "truncated"
    shutil.copytree(untrained_run, truncated)
    whole = (truncated / runs.BEST_MODEL).read_bytes()
    (truncated / runs.BEST_MODEL).write_bytes(whole[:len(whole) // 2])
    accepted = "expected a run dir written by 'dnadet-tf fit', a SavedModel folder or a .tflite file, received"
    best = os.path.join(untrained_run, runs.BEST_MODEL)
    web = tmp_path / "export" / "dnadet" / "web"
    web.mkdir(parents=True)
    (web / "site.json").write_text("{}")
    (web / "index.html").write_text("")
    swapped = tmp_path / "swap"
    (swapped / "images").mkdir(parents=True)
    for name in ("swap_content.json", "cross_content.txt", "cross_weights.txt"):
        (swapped / name).write_text("")
    for model, received in [(str(benchmark), "a benchmark folder (images and split lists, no trained model)"),
                            (best, f"a .keras file (its run dir: {untrained_run})"),
                            (str(web), "the web app of an export (its models: the SavedModel version folders and "
                                       "the .tflite files beside it)"),
                            (str(swapped), "the splits of 'dnadet-tf zoo swap-content' (its annotation lists: "
                                           "cross_content.txt, cross_weights.txt)"),
                            (str(tmp_path / "nope"), "no such file or folder")]:
        code, _, stderr = run_cli(["predict", "--model", model, image])
        assert code == 2 and stderr.strip() == f"dnadet-tf predict: error: --model {model}: {accepted} {received}."
    code, _, stderr = run_cli(["predict", "--model", str(truncated), image])
    assert code == 2 and stderr.strip() == (
        f"dnadet-tf predict: error: {truncated / runs.BEST_MODEL}: expected a Keras model file (a zip archive), "
        "received a file that is not one (truncated or overwritten?).")
    code, _, stderr = run_cli(["calibrate", str(benchmark)])
    assert code == 2 and stderr.strip() == (
        f"dnadet-tf calibrate: error: {benchmark}: expected a run dir written by 'dnadet-tf fit' (with config.json), "
        "received a benchmark folder (images and split lists, no trained model).")


def test_an_atomic_write_that_fails_leaves_no_temporary_file(tmp_path):
    folder = tmp_path / "taken"
    folder.mkdir()
    with pytest.raises(OSError):
        runs.write_json_atomic(str(folder), {"a": 1})  # a folder is where the file would go
    assert sorted(os.listdir(tmp_path)) == ["taken"]


# ---------------------------------------------------------------- user folders (an audit of odd but real data)
def test_a_file_name_that_is_not_utf8_is_skipped_with_one_line(untrained_run, tmp_path):
    # Zips made on other systems carry names in other encodings; TF's string paths hold UTF-8 only, so such a
    # file is skipped by the check every command makes, before any pipeline sees it.
    make_upsampling_tree(str(tmp_path / "data"), 2, seed=5)
    bad = os.path.join(os.fsencode(str(tmp_path / "data" / "real")), b"bad\xffname.png")
    with open(bad, "wb") as f:
        f.write(_png(40, 40))
    with pytest.raises(ImageError, match=r"bad\\udcffname.png: the file name is not valid UTF-8"):
        load_rgb(os.fsdecode(bad))
    code, out, err = _cli(["predict", "--model", untrained_run, str(tmp_path / "data")])
    assert code == 0, err
    assert "the file name is not valid UTF-8 (the data pipeline reads UTF-8 names); rename the file." in err
    assert len([line for line in out.splitlines() if line.endswith(".png") or "\t" in line]) >= 6


def test_a_byte_order_mark_is_not_part_of_a_class_name(tmp_path):
    _write(tmp_path / "a.png", _png(40, 40))
    _write(tmp_path / "b.png", _png(40, 40, seed=1))
    (tmp_path / "classes.txt").write_bytes(b"\xef\xbb\xbfreal\r\ngan\r\n")  # as Windows Notepad saves it
    (tmp_path / "train.txt").write_bytes(b"\xef\xbb\xbfa.png\t0\r\nb.png\t1\r\n")
    files = read_dataset(str(tmp_path / "train.txt"))
    assert files.class_names == ["real", "gan"] and files.paths[0] == str(tmp_path / "a.png")


def test_16_bit_images_scale_by_their_bit_depth_whatever_their_content(tmp_path):
    # A 16-bit PNG whose samples all lie below 256 is a very dark image, as TF's decoder reads it.
    dark = np.full((40, 40), 200, np.uint16)
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    with Image.open(tmp_path / "dark16.png") as image:
        assert image.mode.startswith("I;16")
    decoded = tf.io.decode_png((tmp_path / "dark16.png").read_bytes(), channels=3).numpy()
    assert np.array_equal(load_rgb(str(tmp_path / "dark16.png")), decoded)  # the high byte of 200: 0
    assert load_rgb(str(tmp_path / "dark16.png")).max() == 0


def test_folder_trees_follow_linked_folders_and_say_what_they_do_not_read(tmp_path):
    root = tmp_path / "data"
    make_upsampling_tree(str(root), 2, seed=5)
    elsewhere = tmp_path / "elsewhere"
    _write(elsewhere / "one.png", _png(40, 40))
    _write(elsewhere / "two.png", _png(40, 40, seed=1))
    os.symlink(elsewhere, root / "nearest" / "linked")
    os.symlink(root / "nearest", root / "nearest" / "loop")  # a link back up: read once, no endless walk
    _write(root / "loose.png", _png(40, 40))  # in no class
    (root / "real" / "notes.txt").write_text("not an image")
    warnings = []
    files = read_dataset(str(root), warn=warnings.append)
    assert files.class_counts().tolist() == [2, 4, 2]  # real, nearest (2 + 2 linked), transposed
    assert any(f"{root}: 1 image file(s) outside the class folders not read" in line for line in warnings)
    assert any(f"{root}: 1 file(s) without an image extension" in line and "notes.txt" in line for line in warnings)
    # One file in two classes (a linked class folder) has no one source: refused, naming both classes.
    os.symlink(root / "real", root / "transposed" / "also-real")
    with pytest.raises(DataError, match=r"the same file as .*real.*, in class 'real' and class 'transposed'; "
                                        r"expected each file in one class\."):
        read_dataset(str(root), warn=warnings.append)


def test_a_link_in_an_annotation_list_is_the_file_it_links_to(tmp_path):
    _write(tmp_path / "a.png", _png(40, 40))
    os.symlink(tmp_path / "a.png", tmp_path / "link.png")
    (tmp_path / "classes.txt").write_text("real\ngan\n")
    (tmp_path / "clash.txt").write_text("a.png\t0\nlink.png\t1\n")
    with pytest.raises(DataError, match=r"clash.txt:2: 'link.png' is labelled 1 \(gan\), but line 1 labels the "
                                        r"same file 0 \(real\)"):
        read_dataset(str(tmp_path / "clash.txt"))


def test_extra_real_photos_skip_a_broken_one_and_stop_only_with_none(tmp_path, monkeypatch, capsys):
    from dnadet_tf.extra_real import extra_real_crops

    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))
    photos = tmp_path / "photos"
    for i in range(2):
        _write(photos / f"p{i}.png", _png(140, 150, seed=i))
    _write(photos / "broken.jpg", b"not a jpeg")
    crops = extra_real_crops(str(photos), 3, flag="--photos", packaged=False)
    assert len(crops) == 3 and all(os.path.isfile(path) for path in crops)
    err = capsys.readouterr().err
    assert f"warning: --photos {photos}: skipped {photos / 'broken.jpg'}: not an image file" in err
    for name in ("p0.png", "p1.png"):
        os.remove(photos / name)
    with pytest.raises(DataError, match=r"--photos .*: none of its 1 photos is usable; expected readable images of "
                                        r"at least 128 px"):
        extra_real_crops(str(photos), 3, flag="--photos", packaged=False)


def test_fit_names_val_and_its_classes_and_warns_of_a_class_it_cannot_check(tmp_path):
    make_upsampling_tree(str(tmp_path / "data"), 4, seed=5)
    make_upsampling_tree(str(tmp_path / "val"), 2, seed=6)
    shutil.rmtree(tmp_path / "val" / "transposed")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        fit(str(tmp_path / "data"), str(tmp_path / "run"), val=str(tmp_path / "val"), preset="tiny", steps=1,
            output=io.StringIO())
    assert (f"warning: --val {tmp_path / 'val'}: no validation images of transposed; validation cannot tell how "
            "well the run attributes it") in err.getvalue()
    os.rename(tmp_path / "val" / "nearest", tmp_path / "val" / "stylegan")
    with pytest.raises(DataError, match=r"^--val .*val: classes \['stylegan'\] are not among the training data's "
                                        r"classes \['real', 'nearest', 'transposed'\]\.$"):
        fit(str(tmp_path / "data"), str(tmp_path / "run2"), val=str(tmp_path / "val"), preset="tiny", steps=1,
            output=io.StringIO())


def test_evaluate_says_how_many_files_it_skipped(untrained_run, tmp_path):
    make_upsampling_tree(str(tmp_path / "data"), 2, seed=5)
    _write(tmp_path / "data" / "real" / "small.png", _png(20, 20))
    code, out, err = _cli(["evaluate", "--model", untrained_run, "--data", str(tmp_path / "data"), "--json",
                           str(tmp_path / "evaluation.json")])
    assert code == 0, err
    assert "; 1 file(s) skipped (the warnings above name them)" in out


def test_predict_into_a_closed_pipe_ends_quietly_and_escapes_odd_names(untrained_run, tmp_path):
    make_upsampling_tree(str(tmp_path / "data"), 4, seed=5)
    odd = _write(tmp_path / "data" / "real" / "new\nline\tname.png", _png(40, 40))
    # A reader that left before the first line (`| head -1` after its line does the same on a long output): no
    # error line, no traceback, the exit status of a command ended by SIGPIPE
    done = subprocess.run(f"{sys.executable} -m dnadet_tf.cli.main predict --model {untrained_run} "
                          f"{tmp_path / 'data'} | true; echo \"rc=${{PIPESTATUS[0]}}\"", shell=True,
                          executable="/bin/bash", capture_output=True, text=True, timeout=300)
    assert done.stdout == "rc=141\n", done.stdout
    assert "Broken pipe" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    # A name with a newline or tab stays on its own line, escaped; --json keeps it as it is.
    code, out, err = _cli(["predict", "--model", untrained_run, odd])
    assert code == 0 and out.count("\n") == 1 and out.startswith(odd.replace("\n", "\\n").replace("\t", "\\t") + "\t")
    code, out, err = _cli(["predict", "--model", untrained_run, "--json", odd])
    assert json.loads(out)["path"] == odd


def test_predict_json_writes_null_for_a_number_json_has_not():
    from dnadet_tf.cli.predict import json_number

    assert json_number(np.float32(0.1234567)) == 0.123457
    assert json_number(float("nan")) is None and json_number(np.inf) is None


def test_fit_without_data_resumes_the_newest_demo_run_and_refuses_before_building_when_there_is_none(
        tmp_path, monkeypatch):
    from dnadet_tf.cli.fit import _demo_run_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))
    for flag in ("--resume", "--overwrite"):
        code, stdout, stderr = _cli(["fit", flag])
        assert code == 2 and stderr.strip().splitlines() == [
            f"dnadet-tf fit: error: {flag}: expected a run of fit with no --data in runs/demo (or runs/demo-1, ...), "
            f"found none; name the run with --out."]
    assert not os.path.exists(tmp_path / "cache")  # refused before the zoo is built
    base = os.path.join("runs", "demo")
    os.makedirs(base)
    os.makedirs(base + "-1")
    new, again = argparse.Namespace(resume=False, overwrite=False), argparse.Namespace(resume=True, overwrite=False)
    assert _demo_run_dir(base, new) == base + "-2"
    assert _demo_run_dir(base, again) == base + "-1"
    shutil.rmtree(base + "-1")
    assert _demo_run_dir(base, argparse.Namespace(resume=False, overwrite=True)) == base


def test_json_of_evaluate_and_robustness_replaces_only_an_earlier_result(untrained_run, upsampling_data, tmp_path):
    """`--json` naming an existing file that is not an earlier result of the command (a run's config.json,
    best.keras) is refused before any inference, and the file kept; an earlier result is replaced."""
    run = str(tmp_path / "run")
    shutil.copytree(untrained_run, run)
    kept = {name: open(os.path.join(run, name), "rb").read() for name in ("config.json", runs.BEST_MODEL)}
    for command in (["evaluate"], ["robustness", "--attacks", "crop"]):
        for name in kept:
            target = os.path.join(run, name)
            code, _, stderr = _cli(command + ["--model", run, "--data", upsampling_data["test"], "--json", target])
            what = "an earlier evaluation JSON" if command == ["evaluate"] else "an earlier robustness JSON"
            assert code == 2 and stderr.strip().splitlines() == [
                f"dnadet-tf {command[0]}: error: --json {target}: expected a new file or {what} to replace, received "
                f"an existing file that is not one (it is kept; name another file)."]
    assert kept == {name: open(os.path.join(run, name), "rb").read() for name in kept}
    notes = tmp_path / "notes.md"
    notes.write_text("my notes")
    code, _, stderr = _cli(["robustness", "--model", run, "--data", upsampling_data["test"], "--attacks", "crop",
                            "--json", str(tmp_path / "notes.json")])
    assert code == 2 and "--json (its Markdown table)" in stderr and notes.read_text() == "my notes"
    for command in (["evaluate"], ["robustness", "--attacks", "crop"]):
        json_path = str(tmp_path / f"{command[0]}.json")
        for _ in range(2):  # the second replaces the first
            code, _, stderr = _cli(command + ["--model", run, "--data", upsampling_data["test"], "--json", json_path])
            assert code == 0, stderr


def test_resume_is_refused_for_a_run_with_a_model_but_no_checkpoint(untrained_run, upsampling_data, tmp_path):
    """An adapted run (or an imported one) has no training to continue: resuming it would train from step 0 and
    replace its best.keras."""
    run = str(tmp_path / "adapted")
    shutil.copytree(untrained_run, run)
    with open(os.path.join(run, runs.ADAPTATION_FILE), "w", encoding="utf-8") as f:
        f.write("{}")
    model = open(os.path.join(run, runs.BEST_MODEL), "rb").read()
    with pytest.raises(RunDirError, match=r"no checkpoint to continue from \(made by 'dnadet-tf adapt'\)"):
        fit(upsampling_data["train"], run, resume=True, steps=2, preset="tiny")
    assert open(os.path.join(run, runs.BEST_MODEL), "rb").read() == model


def test_a_folder_read_as_classes_names_the_annotation_lists_it_holds(tmp_path):
    """A `zoo swap-content` folder given as DATA reads as one class, `images`: the error names its lists."""
    from dnadet_tf.data import remap_to

    folder = tmp_path / "swap"
    _write(folder / "images" / "a.png", _png(48, 48))
    (folder / "cross_content.txt").write_text("images/a.png\treal\n")
    with pytest.raises(DataError) as caught:
        remap_to(read_dataset(str(folder)), ["real", "progan"])
    assert str(caught.value) == (f"{folder}: classes ['images'] are not among the model's classes ['real', 'progan']; "
                                 f"the folder also holds the annotation lists cross_content.txt: pass one of them.")


def test_api_evaluate_refuses_an_out_dir_that_is_a_file(untrained_run, upsampling_data, tmp_path):
    import dnadet_tf

    taken = tmp_path / "taken.png"
    taken.write_bytes(b"mine")
    with pytest.raises(DnadetError, match="out_dir .*: expected a folder for the confusion-matrix PNGs, "
                                          "received a file."):
        dnadet_tf.evaluate(untrained_run, upsampling_data["test"], out_dir=str(taken))
    assert taken.read_bytes() == b"mine"


def _parser_whose_command_raises(error):
    """A `dnadet-tf` parser with one command, `go`, whose run raises `error`."""
    parser = argparse.ArgumentParser(prog="dnadet-tf")
    commands = parser.add_subparsers(dest="command")
    go = commands.add_parser("go")

    def run(args):
        raise error

    go.set_defaults(func=run, command_parser=go)
    return parser


def test_a_full_disk_in_tensorflows_own_writes_is_one_line(monkeypatch, capsys):
    # A checkpoint or a SavedModel written into a full disk raised ResourceExhaustedError: a 60-line traceback
    from dnadet_tf.cli import main as cli_main

    full = tf.errors.ResourceExhaustedError(
        None, None, "{{function_node __wrapped__SaveV2_dtypes_40_device_/job:localhost}} run/checkpoints/ckpt-60_temp/"
        "part-00000-of-00001.data-00000-of-00001.tempstate123; No space left on device [Op:SaveV2]")
    monkeypatch.setattr(cli_main, "build_parser", lambda: _parser_whose_command_raises(full))
    assert cli_main.main(["go"]) == 1
    assert capsys.readouterr().err == (
        "dnadet-tf go: error: run/checkpoints/ckpt-60_temp/part-00000-of-00001.data-00000-of-00001.tempstate123; No "
        "space left on device [Op:SaveV2] (--verbose shows where)\n")
    memory = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[64,512,512,32]")
    monkeypatch.setattr(cli_main, "build_parser", lambda: _parser_whose_command_raises(memory))
    with pytest.raises(tf.errors.ResourceExhaustedError):  # out of memory is no file-system error: shown whole
        cli_main.main(["go"])


def test_ctrl_c_while_starting_is_one_line(monkeypatch, capsys):
    # In the seconds before a command runs (TensorFlow's import, the parsers) Ctrl-C gave a traceback
    from dnadet_tf.cli import main as cli_main

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "build_parser", interrupted)
    assert cli_main.main(["predict"]) == 130
    assert capsys.readouterr().err == "dnadet-tf: interrupted while starting; nothing was written.\n"


def test_interrupts_during_an_exports_renames_take_effect_after_them():
    # export's install renames each replaced file away, then the new one in: a Ctrl-C between the two lost a file
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job ignores SIGINT
    try:
        done = []
        with pytest.raises(KeyboardInterrupt):
            with runs.interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                done.append("renamed")  # the block runs to its end
        assert done == ["renamed"]
        with runs.interrupts_deferred():  # nothing received: nothing raised, the handlers as they were
            pass
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
