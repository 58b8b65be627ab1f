import io
import json
import os
import shutil

import numpy as np
import pytest

from dnadet_tf.cli.main import main
from dnadet_tf.config import make_config
from dnadet_tf.data import read_dataset
from dnadet_tf.distribute import make_strategy
from dnadet_tf.errors import DnadetError, RunDirError
from dnadet_tf.evaluation import evaluate
from dnadet_tf.pipeline import training_dataset
from dnadet_tf.predictor import KerasPredictor, attribute_files
from dnadet_tf import runs
from dnadet_tf.runs import RunDir
from dnadet_tf.trainer import Trainer
from dnadet_tf.training import fit


def test_tiny_preset_learns_upsampling_traces_on_held_out_content(tiny_run, upsampling_data):
    rows = evaluate(KerasPredictor(tiny_run), [upsampling_data["test"]], progress=lambda m: None)
    accuracy = rows[0]["metrics"]["accuracy"]
    assert accuracy >= 0.8, f"held-out accuracy {accuracy:.3f}; chance is 0.333"


def test_run_dir_contents(tiny_run):
    for name in ("config.json", "labels.txt", "best.keras", "metrics.jsonl", "checkpoints", "tensorboard"):
        assert os.path.exists(os.path.join(tiny_run, name)), name
    config = RunDir(tiny_run).config
    assert config.preset == "tiny" and config.loop.steps == 40 and config.data.endswith("train")
    records = [json.loads(line) for line in open(os.path.join(tiny_run, "metrics.jsonl"))]
    assert {r["kind"] for r in records} == {"train", "val"}
    assert all(np.isfinite(r["loss"]) for r in records if r["kind"] == "train")
    assert any(name.startswith("events") for name in os.listdir(os.path.join(tiny_run, "tensorboard")))


FRESH_PROCESS_PREDICT = '''
import sys
import keras
import numpy as np
import dnadet_tf.model  # registers the model classes, as `import keras_hub` does for its own
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
images = np.load(sys.argv[2])
np.save(sys.argv[3], model.predict(images, verbose=0))
print(type(model).__name__, ",".join(model.class_names))
'''


def test_best_keras_alone_predicts_in_a_fresh_process(tiny_run, upsampling_data, tmp_path):
    import subprocess
    import sys

    from PIL import Image

    from dnadet_tf.data import read_dataset as read

    files = read(upsampling_data["test"])
    paths = files.paths[::6]
    images = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths])
    np.save(tmp_path / "images.npy", images)
    predictor = KerasPredictor(tiny_run)
    expected = predictor.predict_pixels(np.stack([predictor.model.preprocess(image)[0] for image in images]))
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS_PREDICT, os.path.join(tiny_run, "best.keras"),
                           str(tmp_path / "images.npy"), str(tmp_path / "probabilities.npy")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["Classifier", ",".join(files.class_names)]
    np.testing.assert_allclose(np.load(tmp_path / "probabilities.npy"), expected, atol=1e-6)
    from dnadet_tf.predictor import predict_files

    np.testing.assert_allclose(predict_files(predictor, paths), expected, atol=1e-6)


def _trainer_state(run_dir, config, files):
    trainer = Trainer(config, files.class_names, run_dir, make_strategy("default"),
                      train_dataset=lambda start: training_dataset(files, config, start))
    trainer.restore_latest()
    return trainer


def test_resume_carries_on_step_optimizer_and_weights(upsampling_data, tmp_path):
    data = upsampling_data["train"]
    straight = str(tmp_path / "straight")
    split = str(tmp_path / "split")
    fit(data, straight, preset="tiny", steps=30, seed=3)
    fit(data, split, preset="tiny", steps=15, seed=3)
    config = RunDir(split).config
    files = read_dataset(data)
    halfway = _trainer_state(split, config, files)
    assert halfway.step == 15
    saved_moments = [v.numpy().copy() for v in halfway.optimizer.variables]
    assert any(np.abs(m).sum() > 0 for m in saved_moments[2:])

    summary = fit(data, split, preset="tiny", steps=30, resume=True)
    assert summary["start_step"] == 15 and summary["end_step"] == 30
    resumed = _trainer_state(split, config, files)
    reference = _trainer_state(straight, config, files)
    assert resumed.step == reference.step == 30
    assert int(resumed.optimizer.iterations.numpy()) == 30
    for a, b in zip(resumed.classifier.weights, reference.classifier.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    for a, b in zip(resumed.optimizer.variables, reference.optimizer.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    np.testing.assert_allclose(resumed.loss_weights.params.numpy(), reference.loss_weights.params.numpy(), atol=1e-4)


def test_existing_run_dir_is_not_overwritten(upsampling_data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(RunDirError, match="pass overwrite=True"):
        fit(upsampling_data["train"], str(out), preset="tiny", steps=2)
    assert (out / "keep.txt").read_text() == "precious"
    assert main(["fit", "--data", upsampling_data["train"], "--out", str(out), "--preset", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"dnadet-tf fit: error: --out {out}: ") and "pass --overwrite to replace them or --resume" in err


@pytest.mark.parametrize("argv, message", [
    (["--width", "0"], "--width: expected a width multiplier above 0 and at most 16, received 0.0."),
    (["--lr", "-1"], "--lr: expected a learning rate above 0 and at most 10, received -1.0."),
    (["--lr-decay", "0"], "--lr-decay: expected a decay factor above 0 and at most 1, received 0.0."),
    (["--seed", "-5"], "--seed: expected an integer from 0 to 2147483647, received -5."),
])
def test_fit_refuses_out_of_range_values_before_the_run_dir_exists(upsampling_data, tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["fit", "--data", upsampling_data["train"], "--out", str(out), "--preset", "tiny"] + argv) == 2
    assert capsys.readouterr().err.strip() == f"dnadet-tf fit: error: {message}"
    assert not out.exists()


def test_library_parameters_become_the_commands_flags():
    from dnadet_tf.cli.main import build_parser, in_flag_words

    subcommands = build_parser()._subparsers._group_actions[0].choices
    fit_parser, pretrain_parser = subcommands["fit"], subcommands["pretrain"]
    assert in_flag_words("learning_rate: expected a number, received 'x'.", fit_parser) == (
        "--lr: expected a number, received 'x'.")
    assert in_flag_words("resume and overwrite: expected at most one", pretrain_parser) == (
        "--resume and --overwrite: expected at most one")
    assert in_flag_words("pretrain_batch_size: expected 1", pretrain_parser) == "--batch-size: expected 1"
    assert in_flag_words("init RUN: pass init_partial=True to load", fit_parser) == "--init RUN: pass --init-partial to load"
    assert in_flag_words("mode: expected dnadet, received 'x'.", fit_parser) == "mode: expected dnadet, received 'x'."


def test_base_mode_and_init_from_another_run(tiny_run, upsampling_data, tmp_path, capsys):
    out = str(tmp_path / "base")
    summary = fit(upsampling_data["train"], out, val=upsampling_data["val"], preset="tiny", steps=4,
                  mode="base", init=tiny_run)
    assert summary["end_step"] == 4
    assert RunDir(out).config.model.mode == "base"
    printed = capsys.readouterr().out
    assert "--init" in printed and "loaded" in printed and "re-initialised 0" in printed
    assert " con " not in printed[printed.find("step 4/4"):].splitlines()[0]


def test_frozen_stages_keep_the_init_weights_and_the_rest_trains(tiny_run, upsampling_data, tmp_path):
    out = str(tmp_path / "frozen")
    fit(upsampling_data["train"], out, preset="tiny", steps=4, init=tiny_run, frozen_stages=2)
    assert RunDir(out).config.optimizer.frozen_stages == 2
    before = {w.path: w.numpy() for w in RunDir(tiny_run).load_model().weights}
    after = {w.path: w.numpy() for w in RunDir(out).load_model().weights}
    stage = lambda path: path.split("/")[0][:6]  # noqa: E731  ('stage1', ...)
    frozen = [p for p in after if stage(p) in ("stage1", "stage2")]
    trained = [p for p in after if stage(p) in ("stage3", "stage4")]
    assert frozen and trained
    assert any("moving_variance" in p for p in frozen)  # BatchNorm statistics are kept too
    for path in frozen:
        np.testing.assert_allclose(after[path], before[path], rtol=1e-6, atol=0, err_msg=path)
    assert all(not np.allclose(after[p], before[p]) for p in trained if "kernel" in p)


def test_zero_mean_stem_flag_reaches_the_trained_encoder(upsampling_data, tmp_path, capsys):
    out = str(tmp_path / "zero-mean")
    assert main(["fit", "--data", upsampling_data["train"], "--out", out, "--preset", "tiny", "--steps", "3",
                 "--zero-mean-stem"]) == 0
    assert RunDir(out).config.model.zero_mean_stem is True
    backbone = RunDir(out).load_model().backbone
    assert backbone.zero_mean_stem
    np.testing.assert_allclose(backbone.get_layer("stage1_conv1").kernel.numpy().mean(axis=(0, 1)), 0.0, atol=1e-6)
    assert abs(backbone.get_layer("stage2_conv1").kernel.numpy().mean(axis=(0, 1))).max() > 1e-4


def test_an_init_trained_with_another_zero_mean_stem_setting_is_named_in_a_warning(tiny_run, upsampling_data,
                                                                                   tmp_path, capsys):
    fit(upsampling_data["train"], str(tmp_path / "zm"), preset="tiny", steps=2, init=tiny_run, zero_mean_stem=True)
    warning = capsys.readouterr().err
    assert "was trained without --zero-mean-stem, this run trains it with" in warning
    assert "pass --no-zero-mean-stem to match it" in warning
    fit(upsampling_data["train"], str(tmp_path / "plain"), preset="tiny", steps=2, init=tiny_run)
    assert "zero-mean-stem" not in capsys.readouterr().err


def test_frozen_stages_need_an_init_and_at_most_four_stages(upsampling_data, tmp_path):
    with pytest.raises(DnadetError, match=r"frozen_stages: expected an init run .* received frozen_stages=1"):
        make_config("tiny", frozen_stages=1, init="none")
    with pytest.raises(DnadetError, match=r"frozen_stages: expected 0 to 4 .* received 5"):
        make_config("tiny", frozen_stages=5, init="some/run")


def test_cli_errors_are_one_line(tmp_path, capsys):
    code = main(["fit", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), "--preset", "tiny"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "missing" in err and "no such file or folder" in err
    code = main(["fit", "--data", str(tmp_path), "--preset", "tiny"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--out" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--preset", "huge"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_cli_fit_resume_evaluate_predict(upsampling_data, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["fit", "--data", upsampling_data["train"], "--val", upsampling_data["val"], "--out", out,
                 "--preset", "tiny", "--steps", "10"]) == 0
    assert main(["fit", "--data", upsampling_data["train"], "--val", upsampling_data["val"], "--out", out,
                 "--preset", "tiny", "--steps", "20", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "resumed from" in printed and "at step 10" in printed and "step 20/20" in printed
    report = str(tmp_path / "eval" / "result.json")
    assert main(["evaluate", "--model", out, "--data", upsampling_data["test"], upsampling_data["val"],
                 "--json", report]) == 0
    rows = json.load(open(report))
    assert [r["name"] for r in rows] == ["test", "val"]
    assert os.path.isfile(tmp_path / "eval" / "confusion_test.png")
    capsys.readouterr()
    image = os.path.join(upsampling_data["test"], "transposed", "0001.png")
    assert main(["predict", "--model", out, "--json", "--top-k", "2", image]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["path"] == image and len(line["top_k"]) == 2 and 0 <= line["probability"] <= 1


@pytest.mark.parametrize("flags", [["--precision", "mixed_bfloat16"], ["--precision", "mixed_float16"], ["--jit"]])
def test_gpu_options_run_on_cpu(flags, upsampling_data, tmp_path):
    out = str(tmp_path / "run")
    assert main(["fit", "--data", upsampling_data["train"], "--val", upsampling_data["val"], "--out", out,
                 "--preset", "tiny", "--steps", "2"] + flags) == 0
    assert os.path.isfile(os.path.join(out, "best.keras"))
    import keras

    assert keras.config.dtype_policy().name == "float32"  # the precision is the model's, not a global setting
    model = KerasPredictor(out).model
    assert model.get_layer("stage1_conv1").compute_dtype == ("float32" if flags == ["--jit"] else flags[1][6:])


def test_augmented_training_and_perturbed_evaluation(tiny_run, upsampling_data, tmp_path, capsys, monkeypatch):
    import tensorflow as tf

    from dnadet_tf import training as training_module
    from dnadet_tf.attacks import apply_attacks

    augment_fns = []

    def recording_dataset(files, config, start_step=0, augment_fn=None, **options):
        augment_fns.append(augment_fn)
        return training_dataset(files, config, start_step, augment_fn, **options)

    monkeypatch.setattr(training_module, "training_dataset", recording_dataset)
    out = str(tmp_path / "augmented")
    assert main(["fit", "--data", upsampling_data["train"], "--out", out, "--preset", "tiny", "--steps", "2",
                 "--augment", "crop,jpeg"]) == 0
    assert RunDir(out).config.sampling.augment == ("crop", "jpeg")
    # the training batches were made with the perturbation: crop then JPEG, as attacks.apply_attacks applies them
    assert augment_fns and all(fn is not None for fn in augment_fns)
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (32, 32, 3)), tf.uint8)
    seed = tf.constant([7, 11], tf.int64)
    augmented = augment_fns[0](image, seed).numpy()
    assert np.abs(augmented - image.numpy()).max() > 0
    np.testing.assert_array_equal(augmented, apply_attacks(image, ("crop", "jpeg"), seed).numpy())
    code = main(["fit", "--data", upsampling_data["train"], "--out", str(tmp_path / "bad"), "--preset", "tiny",
                 "--augment", "crop,sharpen"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "sharpen" in err and len(err.splitlines()) == 1
    report = str(tmp_path / "perturbed.json")
    assert main(["evaluate", "--model", tiny_run, "--data", upsampling_data["test"], "--perturb", "combo",
                 "--json", report]) == 0
    clean = str(tmp_path / "clean.json")
    assert main(["evaluate", "--model", tiny_run, "--data", upsampling_data["test"], "--json", clean]) == 0
    perturbed_metrics = json.load(open(report))[0]["metrics"]
    clean_metrics = json.load(open(clean))[0]["metrics"]
    assert np.sum(perturbed_metrics["confusion_matrix"]) == np.sum(clean_metrics["confusion_matrix"]) == 36
    # the same images, perturbed: other probabilities (so another calibration error) and here other predictions
    assert perturbed_metrics["ece"] != clean_metrics["ece"]
    assert perturbed_metrics["confusion_matrix"] != clean_metrics["confusion_matrix"]


def test_resize_chain_flags_reach_the_run_and_bad_sizes_name_the_flag(upsampling_data, tmp_path, capsys):
    out = str(tmp_path / "native")
    assert main(["fit", "--data", upsampling_data["train"], "--out", out, "--preset", "tiny", "--steps", "2",
                 "--crop-size", "48", "--resize1", "48", "--resize2", "48", "--crop-square", "--crop-grid", "16",
                 "--patch-size", "16", "--patches-per-image", "2"]) == 0
    preprocessing = RunDir(out).config.preprocessing
    sampling = RunDir(out).config.sampling
    assert (sampling.crop_grid, sampling.patch_size, sampling.patches_per_image) == (16, 16, 2)
    assert (preprocessing.crop_size, preprocessing.resize1, preprocessing.resize2) == (48, 48, 48)
    assert preprocessing.crop_square is True
    predictor = KerasPredictor(out)
    assert (predictor.preprocess.resize1, predictor.preprocess.resize2, predictor.preprocess.crop_square) == (
        48, 48, True)
    assert make_config("cpu").preprocess.crop_square and not make_config("paper").preprocess.crop_square
    assert not make_config("cpu", crop_square=False).preprocess.crop_square
    capsys.readouterr()
    for flags, message in ((["--resize2", "40"], "--resize2: expected a multiple of 16 (the encoder's total stride), "
                                                 "received 40."),
                           (["--resize1", "0"], "--resize1: expected a positive integer, received 0."),
                           (["--crop-grid", "0"], "--crop-grid: expected a positive integer, received 0."),
                           (["--patch-size", "40"], "--patch-size: expected a multiple of 16 (the encoder's total "
                                                    "stride), received 40."),
                           (["--patch-size", "80"], "--patch-size: expected at most resize2=64, received 80."),
                           (["--patches-per-image", "0"], "--patches-per-image: expected a positive integer, "
                                                          "received 0.")):
        bad = tmp_path / f"bad{flags[1]}"
        code = main(["fit", "--data", upsampling_data["train"], "--out", str(bad), "--preset", "tiny"] + flags)
        err = capsys.readouterr().err.strip()
        assert code == 2 and err == f"dnadet-tf fit: error: {message}"
        assert not bad.exists()


def test_evaluate_without_json_keeps_what_fit_and_ablate_wrote(tiny_run, upsampling_data, tmp_path, capsys):
    from dnadet_tf.cli.output_paths import default_output_dir

    run = str(tmp_path / "run")
    shutil.copytree(tiny_run, run)
    fitted = os.path.join(run, "evaluation", "evaluation.json")  # where fit and ablate keep their figures
    os.makedirs(os.path.dirname(fitted), exist_ok=True)
    with open(fitted, "w", encoding="utf-8") as f:
        f.write('[{"name": "closed-set"}]')
    assert main(["evaluate", "--model", run, "--data", upsampling_data["test"]]) == 0
    assert open(fitted, encoding="utf-8").read() == '[{"name": "closed-set"}]'
    written = os.path.join(run, "evaluations", "test", "evaluation.json")
    assert [r["name"] for r in json.load(open(written))] == ["test"]
    assert os.path.isfile(os.path.join(run, "evaluations", "test", "confusion_test.png"))
    assert f"wrote {written}" in capsys.readouterr().out
    tflite = tmp_path / "model.tflite"
    tflite.write_bytes(b"")
    assert default_output_dir(str(tflite), ["a/b.txt"], "jpeg", 2) == f"{tflite}-evaluations/b-perturb-jpeg-seed2"


def _folder_state(folder):
    """{file name: (bytes, mtime_ns)} of the files in `folder`."""
    state = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            state[name] = (f.read(), os.stat(path).st_mtime_ns)
    return state


def test_evaluate_keeps_each_data_in_its_own_folder(tiny_run, upsampling_data, tmp_path, capsys):
    from clirun import run_and_namesake_data

    run, other = run_and_namesake_data(tiny_run, upsampling_data["val"], tmp_path)
    evaluations = os.path.join(run, "evaluations")
    first, second = os.path.join(evaluations, "test"), os.path.join(evaluations, "test-2")
    assert main(["evaluate", "--model", run, "--data", upsampling_data["test"]]) == 0
    first_rows = json.load(open(os.path.join(first, "evaluation.json")))
    capsys.readouterr()
    assert main(["evaluate", "--model", run, "--data", other]) == 0
    printed = capsys.readouterr().out
    assert json.load(open(os.path.join(first, "evaluation.json"))) == first_rows
    assert f"wrote {os.path.join(second, 'evaluation.json')}" in printed and f"{first} holds the evaluation of" in printed
    assert [row["data"] for row in json.load(open(os.path.join(second, "evaluation.json")))] == [other]
    assert json.load(open(os.path.join(first, "evaluated.json"))) == {
        "data": [os.path.abspath(upsampling_data["test"])], "unknown": []}
    # The same data again replaces its own folder.
    assert main(["evaluate", "--model", run, "--data", upsampling_data["test"]]) == 0
    assert f"wrote {os.path.join(first, 'evaluation.json')}" in capsys.readouterr().out
    assert sorted(os.listdir(evaluations)) == ["test", "test-2"]


def test_evaluate_refuses_bad_data_before_inference_and_leaves_earlier_results(tiny_run, upsampling_data, tmp_path,
                                                                                capsys):
    run = str(tmp_path / "run")
    shutil.copytree(tiny_run, run)
    evaluations = os.path.join(run, "evaluations")
    assert main(["evaluate", "--model", run, "--data", upsampling_data["test"]]) == 0
    before = _folder_state(os.path.join(evaluations, "test"))
    # A bad --unknown or second DATA: one line naming it, before any inference, and nothing written or replaced.
    for flags, named in ((["--unknown", str(tmp_path / "bad" / "nope")], "--unknown"),
                         ([str(tmp_path / "missing")], "missing")):
        capsys.readouterr()
        code = main(["evaluate", "--model", run, "--data", upsampling_data["test"]] + flags)
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and named in err, err
        assert "evaluating" not in captured.out  # no inference ran
        assert os.listdir(evaluations) == ["test"]
        assert _folder_state(os.path.join(evaluations, "test")) == before


def test_evaluate_json_must_be_a_file_path_checked_before_any_work(tiny_run, upsampling_data, tmp_path, capsys,
                                                                   monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (tmp_path / "file").write_text("x")
    for path, expected in ((str(tmp_path), "expected a file path, received a folder."),
                           (str(tmp_path / "file" / "evaluation.json"),
                            f"expected a file path under a folder, but {tmp_path / 'file'} is a file.")):
        code = main(["evaluate", "--model", tiny_run, "--data", upsampling_data["test"], "--json", path])
        captured = capsys.readouterr()
        assert code == 2 and captured.err.strip() == f"dnadet-tf evaluate: error: --json {path}: {expected}"
        assert "evaluating" not in captured.out
        assert os.listdir(cwd) == [] and sorted(os.listdir(tmp_path)) == ["cwd", "file"]


def test_val_split_holds_out_the_same_images_for_validation_resume_and_calibrate(upsampling_data, tmp_path, capsys):
    out = str(tmp_path / "run")
    common = ["fit", "--data", upsampling_data["train"], "--out", out, "--preset", "tiny", "--val-every", "5"]
    assert main(common + ["--steps", "5", "--val-split", "0.25"]) == 0
    printed = capsys.readouterr().out
    # 24 images per class: 6 of each held out, the other 18 trained on.
    assert "val_split 0.25: 18 of the 72 training images held out as validation images (6 real, 6 nearest, " \
           "6 transposed)" in printed
    assert "on 18 real, 18 nearest, 18 transposed" in printed
    assert "validation at step 5: " in printed and "no validation data" not in printed
    with open(os.path.join(out, "calibration.json"), encoding="utf-8") as f:
        fitted = json.load(f)
    assert fitted["val"] == "the share val_split of the training data, held out"
    assert RunDir(out).config.val_split == 0.25 and RunDir(out).config.val == ""
    # Resuming holds out again (which images: test_data's hold_out test) and validates on them.
    assert main(common + ["--steps", "10", "--resume"]) == 0
    assert "val_split 0.25: 18 of the 72" in capsys.readouterr().out
    # `calibrate RUN` later holds out the same images again.
    assert main(["calibrate", out]) == 0
    with open(os.path.join(out, "calibration.json"), encoding="utf-8") as f:
        later = json.load(f)
    assert later["val"] == fitted["val"] and later["val_images"] == fitted["val_images"] == 18
    assert later["train_images"] == fitted["train_images"] == 54
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if '"val"' in line]
    assert [r["step"] for r in records] == [5, 10]
    # --val and --val-split at once: one line naming both.
    capsys.readouterr()
    assert main(common + ["--val-split", "0.1", "--val", upsampling_data["val"], "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--val-split: expected no --val beside it" in err
    assert main(common + ["--val-split", "1.5", "--overwrite"]) == 2
    assert "--val-split: expected a share of the training images from 0 to below 1, received 1.5" in \
        capsys.readouterr().err


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_its_init_weights(tiny_run, upsampling_data,
                                                                                  tmp_path):
    data = upsampling_data["train"]
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    fit(data, straight, preset="tiny", steps=6, seed=3, init=tiny_run)
    fit(data, stopped, preset="tiny", steps=6, seed=3, init=tiny_run)
    for name in (runs.CHECKPOINTS, "best.keras", runs.METRICS_FILE):  # as if killed at its first steps
        path = os.path.join(stopped, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    printed = io.StringIO()
    fit(data, stopped, resume=True, output=printed)
    assert f"--init {tiny_run}" in printed.getvalue() and "resumed from no checkpoint" in printed.getvalue()
    for a, b in zip(RunDir(stopped).load_model().weights, RunDir(straight).load_model().weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)


def test_resume_keeps_the_runs_own_data_and_records_a_new_step_budget(tiny_run, upsampling_data, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(tiny_run, run_dir)
    train, val = upsampling_data["train"], upsampling_data["val"]
    with pytest.raises(DnadetError, match=r"^data: expected the resumed run's own \(.*\), received "):
        fit(val, run_dir, resume=True, steps=50)
    with pytest.raises(DnadetError, match=r"^val: expected the resumed run's own \(.*\), received "):
        fit(train, run_dir, val=train, resume=True, steps=50)
    with pytest.raises(DnadetError, match=r"^steps: expected at least the resumed run's step \(40\), received 20\."):
        fit(train, run_dir, resume=True, steps=20)
    assert RunDir(run_dir).config.loop.steps == 40
    printed = io.StringIO()
    fit(train + os.sep, run_dir, resume=True, steps=50, output=printed)  # another spelling of the same folder
    assert "validation at step 50" in printed.getvalue()  # its --val, taken from config.json
    assert RunDir(run_dir).config.loop.steps == 50


def test_fit_resume_with_an_out_and_no_data_continues_on_the_runs_own_data(tiny_run, tmp_path, monkeypatch,
                                                                         capsys):
    # `fit --resume --out RUN` without --data built the demo zoo (15 minutes and more), then refused it as not
    # the run's data; a run dir that holds no run is refused before any zoo
    import dnadet_tf.zoo as zoo_module

    def no_zoo(*args, **kwargs):
        raise AssertionError("the demo zoo was built")

    monkeypatch.setattr(zoo_module, "ensure_zoo", no_zoo)
    run_dir = str(tmp_path / "run")
    shutil.copytree(tiny_run, run_dir)
    assert main(["fit", "--resume", "--out", run_dir, "--steps", "50"]) == 0
    assert "validation at step 50" in capsys.readouterr().out
    assert RunDir(run_dir).config.loop.steps == 50
    assert main(["fit", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"dnadet-tf fit: error: --resume: {tmp_path / 'none'} holds no run to resume (no config.json).")


def test_init_is_recorded_as_an_absolute_path(tiny_run, upsampling_data, tmp_path, monkeypatch, capsys):
    # config.json held --init as typed: a run stopped before its first checkpoint, resumed from another folder,
    # looked for its init weights there
    monkeypatch.chdir(os.path.dirname(tiny_run))
    run_dir = str(tmp_path / "run")
    fit(upsampling_data["train"], run_dir, preset="tiny", steps=2, init=os.path.basename(tiny_run),
        output=io.StringIO())
    assert RunDir(run_dir).config.init == os.path.abspath(tiny_run)
    assert "no encoder weight matched" not in capsys.readouterr().err  # every encoder weight loaded


def test_init_names_a_file_or_a_missing_folder_and_warns_when_nothing_of_the_encoder_loads(tiny_run, upsampling_data,
                                                                                              tmp_path, capsys):
    train = upsampling_data["train"]
    best = os.path.join(tiny_run, "best.keras")
    for given, found in ((best, "a file: give the run dir that holds it"), (str(tmp_path / "nowhere"), "no such folder")):
        assert main(["fit", "--data", train, "--out", str(tmp_path / "run"), "--preset", "tiny", "--init", given]) == 2
        assert capsys.readouterr().err.strip() == (
            f"dnadet-tf fit: error: --init {given}: expected a finished run dir (a folder with a best.keras), "
            f"received {found}.")
    # another width with --init-partial loads no encoder weight: it said "training DNA-Det" and nothing else
    assert main(["fit", "--data", train, "--out", str(tmp_path / "wide"), "--preset", "tiny", "--steps", "2",
                 "--init", tiny_run, "--init-partial", "--width", "0.125"]) == 0
    assert (f"warning: --init {os.path.abspath(tiny_run)}: no encoder weight matched (--init-partial): this run trains "
            "from random weights") in capsys.readouterr().err


def test_resume_refuses_another_preset_or_a_changed_setting(tiny_run, upsampling_data, capsys):
    before = sorted(os.listdir(tiny_run))
    common = ["fit", "--data", upsampling_data["train"], "--out", tiny_run, "--resume"]
    assert main(common + ["--preset", "cpu"]) == 2
    assert capsys.readouterr().err.strip() == (
        "dnadet-tf fit: error: --preset: expected the resumed run's own (tiny) or none, received cpu.")
    assert main(common + ["--lr", "0.5"]) == 2
    assert capsys.readouterr().err.strip().startswith(
        "dnadet-tf fit: error: --lr: expected no change on resume (the run's config.json holds it; only steps, ")
    assert sorted(os.listdir(tiny_run)) == before


def test_evaluate_reports_progress_on_many_images(tiny_run, upsampling_data):
    lines = []
    predictor = KerasPredictor(tiny_run)
    files = read_dataset(upsampling_data["val"], "val")
    outputs = attribute_files(predictor, files.paths, batch_size=4, progress=lines.append, every_s=0.0)
    assert len(outputs["probabilities"]) == len(files.paths)
    counts = [int(line.split("/")[0]) for line in lines]
    assert lines and all(line.endswith(f"/{len(files.paths)} images") for line in lines)
    assert counts == sorted(counts) and counts[0] == 4 and counts[-1] < len(files.paths)


def test_steps_the_loss_scaler_skips_are_counted_and_move_no_loss_weight(upsampling_data, tmp_path, monkeypatch):
    # mixed_float16 (the GPU precision): a loss scale so large that every gradient overflows, so the scaler skips
    # every update. The loop still counts 4 steps and checkpoints them as steps 4, and the loss weights, whose
    # gradients overflow too, stay where they started (they moved while the model stood still).
    import keras
    import tensorflow as tf

    built = keras.optimizers.LossScaleOptimizer.__init__

    def huge_scale(self, inner_optimizer, initial_scale=2.0 ** 15, *args, **kwargs):
        built(self, inner_optimizer, 2.0 ** 60, *args, **kwargs)

    monkeypatch.setattr(keras.optimizers.LossScaleOptimizer, "__init__", huge_scale)
    out = str(tmp_path / "f16")
    summary = fit(upsampling_data["train"], out, preset="tiny", precision="mixed_float16", steps=4,
                  checkpoint_every=2, val_every=100, output=io.StringIO())
    assert summary["end_step"] == 4
    reader = tf.train.load_checkpoint(os.path.join(out, "checkpoints", "ckpt-4"))
    assert reader.get_tensor("steps_done/.ATTRIBUTES/VARIABLE_VALUE") == 4
    assert reader.get_tensor("optimizer/inner_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 0  # all skipped
    np.testing.assert_array_equal(reader.get_tensor("loss_weights/params/.ATTRIBUTES/VARIABLE_VALUE"), [1.0, 1.0])
    printed = io.StringIO()
    fit(upsampling_data["train"], out, preset="tiny", precision="mixed_float16", steps=6, checkpoint_every=2,
        val_every=100, resume=True, output=printed)
    assert "at step 4" in printed.getvalue()


def test_evaluate_names_two_datas_of_one_name_apart_and_replaces_its_own_pngs(tiny_run, upsampling_data, tmp_path,
                                                                                capsys):
    from clirun import run_and_namesake_data

    run, other = run_and_namesake_data(tiny_run, upsampling_data["val"], tmp_path)  # `other` is named test too
    out = tmp_path / "out" / "evaluation.json"
    assert main(["evaluate", "--model", run, "--data", upsampling_data["test"], other, "--json", str(out)]) == 0
    rows = json.load(open(out))
    assert [row["name"] for row in rows] == ["test", "test-2"]
    assert [os.path.basename(row["confusion_png"]) for row in rows] == ["confusion_test.png", "confusion_test-2.png"]
    assert all(os.path.isabs(row["confusion_png"]) and row["class_names"] == ["real", "nearest", "transposed"]
               for row in rows)
    # Another evaluation into the same JSON: the PNGs it no longer lists are gone, other files kept.
    (tmp_path / "out" / "notes.txt").write_text("keep me")
    assert main(["evaluate", "--model", run, "--data", upsampling_data["val"], "--json", str(out)]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["confusion_val.png", "evaluation.json", "notes.txt"]
    # Another precision writes beside the model's own figures, not over them.
    capsys.readouterr()
    assert main(["evaluate", "--model", run, "--data", upsampling_data["test"], "--precision",
                 "mixed_bfloat16"]) == 0
    assert os.path.isfile(os.path.join(run, "evaluations", "test-mixed_bfloat16", "evaluation.json"))


def test_a_checkpoint_written_before_the_loop_counted_its_steps_resumes_at_its_step(upsampling_data, tmp_path):
    # Checkpoints of earlier versions hold no `steps_done`: the optimizer's iterations were the step count.
    import tensorflow as tf

    data = upsampling_data["train"]
    run = str(tmp_path / "old")
    fit(data, run, preset="tiny", steps=4, checkpoint_every=2, val_every=100, output=io.StringIO())
    config, files = RunDir(run).config, read_dataset(data)
    trainer = _trainer_state(run, config, files)
    shutil.rmtree(os.path.join(run, "checkpoints"))
    legacy = tf.train.Checkpoint(classifier=trainer.classifier, optimizer=trainer.optimizer,
                                 projector=trainer.projector, loss_weights=trainer.loss_weights,
                                 weight_optimizer=trainer.weight_optimizer)
    tf.train.CheckpointManager(legacy, os.path.join(run, "checkpoints"), max_to_keep=2).save(checkpoint_number=4)
    assert _trainer_state(run, config, files).step == 4


def test_a_resumed_run_without_validation_is_calibrated_again_on_the_val_its_calibration_json_records(
        upsampling_data, tmp_path):
    """`calibrate RUN --val DATA` calibrated the run; resumed without validation data of its own, its new best.keras
    is calibrated again on that DATA (calibration.json records it: the user's choice is kept), and the run says so.
    When the recorded DATA is gone there is nothing to calibrate on: the calibration.json that described the old
    best.keras goes, and the run says that."""
    import json
    import shutil

    from dnadet_tf.calibrate import calibrate_run

    out = str(tmp_path / "run")
    val = str(tmp_path / "val")
    shutil.copytree(upsampling_data["val"], val)
    fit(upsampling_data["train"], out, preset="tiny", steps=2, output=io.StringIO())
    calibrate_run(out, "mahalanobis", data=upsampling_data["train"], val=val, output=io.StringIO())
    printed = io.StringIO()
    fit(upsampling_data["train"], out, preset="tiny", steps=4, resume=True, output=printed)
    assert "resumed run: calibrating again with the settings its calibration.json records" in printed.getvalue()
    with open(os.path.join(out, "calibration.json"), encoding="utf-8") as f:
        assert os.path.abspath(json.load(f)["val"]) == os.path.abspath(val)
    shutil.rmtree(val)
    printed = io.StringIO()
    fit(upsampling_data["train"], out, preset="tiny", steps=6, resume=True, output=printed)
    assert not os.path.isfile(os.path.join(out, "calibration.json"))
    assert f"removed {os.path.join(out, 'calibration.json')}: it described the calibration" in printed.getvalue()
