"""Accuracy under test-time attacks (dnadet_tf.robustness, `dnadet-tf robustness`)."""
import json

import numpy as np
import pytest

from by_hand import attacked_metrics  # imports the project's own attacks module: a broken one fails, never skips


@pytest.fixture(scope="module")
def predictor(tiny_run):
    from dnadet_tf.api import load as load_predictor

    return load_predictor(tiny_run)


def test_a_row_per_dataset_a_column_per_attack_and_deterministic(predictor, upsampling_data):
    from dnadet_tf.robustness import DEFAULT_ATTACKS, robustness

    quiet = lambda message: None  # noqa: E731
    from dnadet_tf.evaluation import expand_data_specs

    rows = robustness(predictor, [upsampling_data["test"]], seed=3, progress=quiet)
    assert len(rows) == 1
    row = rows[0]
    assert row["name"] == expand_data_specs([upsampling_data["test"]])[0][0] and row["num_images"] == 36
    assert list(row["accuracy"]) == ["none", "crop", "blur", "jpeg", "noise", "relight", "combo"]
    assert tuple(row["accuracy"])[1:] == DEFAULT_ATTACKS
    for column, value in row["accuracy"].items():
        assert 0.0 <= value <= 1.0, (column, value)
        assert 0.0 <= row["macro_f1"][column] <= 1.0
    again = robustness(predictor, [upsampling_data["test"]], attacks=("blur", "combo"), seed=3, progress=quiet)
    assert list(again[0]["accuracy"]) == ["none", "blur", "combo"]
    for column in again[0]["accuracy"]:
        assert again[0]["accuracy"][column] == row["accuracy"][column]
        assert again[0]["macro_f1"][column] == row["macro_f1"][column]
    # A column is the accuracy of its attacked images: the figures of two columns computed here image by image
    # (each image i attacked with seed (3, i)), which the attacks move away from the clean column's.
    clean = attacked_metrics(predictor, upsampling_data["test"], None, 3)
    assert (row["accuracy"]["none"], row["macro_f1"]["none"]) == pytest.approx((clean["accuracy"], clean["macro_f1"]))
    for column in ("blur", "jpeg"):
        attacked = attacked_metrics(predictor, upsampling_data["test"], column, 3)
        assert np.abs(attacked["probabilities"] - clean["probabilities"]).max() > 1e-3, column
        assert attacked["accuracy"] != clean["accuracy"], column  # else a lost attack would go unseen here
        assert row["accuracy"][column] == pytest.approx(attacked["accuracy"]), column
        assert row["macro_f1"][column] == pytest.approx(attacked["macro_f1"]), column


def test_unknown_attack_is_refused(predictor, upsampling_data):
    from dnadet_tf.robustness import robustness

    with pytest.raises(ValueError, match="blurr"):
        robustness(predictor, [upsampling_data["test"]], attacks=("blurr",), progress=lambda m: None)


def test_cli_prints_and_writes_json_and_markdown(tiny_run, upsampling_data, tmp_path, capsys):
    from dnadet_tf.cli.main import main
    from dnadet_tf.evaluation import expand_data_specs

    names = [name for name, _ in expand_data_specs([upsampling_data["test"], upsampling_data["val"]])]
    out = tmp_path / "robustness.json"
    code = main(["robustness", "--model", tiny_run, "--data", upsampling_data["test"], upsampling_data["val"],
                 "--json", str(out), "--attacks", "jpeg,noise", "--seed", "5"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "no attack" in printed and "JPEG" in printed and names[0] in printed
    result = json.loads(out.read_text())
    assert result["seed"] == 5 and result["attacks"] == ["jpeg", "noise"]
    assert [row["name"] for row in result["rows"]] == names
    for row in result["rows"]:
        assert set(row["accuracy"]) == {"none", "jpeg", "noise"}
        assert all(0.0 <= v <= 1.0 for v in row["accuracy"].values())
    markdown = (tmp_path / "robustness.md").read_text()
    assert markdown.count("\n| ") == 3 and "| no attack |" in markdown

    code = main(["robustness", "--model", tiny_run, "--data", upsampling_data["test"], "--attacks", "fog"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fog" in err[0] and "relight" in err[0]


def test_cli_default_output_is_per_data_and_beside_an_export(tiny_run, upsampling_data, tmp_path, capsys):
    import os

    from clirun import run_and_namesake_data
    from dnadet_tf.cli.output_paths import default_output_dir
    from dnadet_tf.cli.main import main

    run, other = run_and_namesake_data(tiny_run, upsampling_data["val"], tmp_path)
    folders = os.path.join(run, "robustness")
    for data in (upsampling_data["test"], other, upsampling_data["test"]):
        assert main(["robustness", "--model", run, "--data", data, "--attacks", "jpeg"]) == 0
    assert sorted(os.listdir(folders)) == ["test", "test-2"]
    # another attack seed is another measurement: a folder of its own, the first ones kept
    assert main(["robustness", "--model", run, "--data", other, "--attacks", "jpeg", "--seed", "1"]) == 0
    assert sorted(os.listdir(folders)) == ["test", "test-2", "test-3"]
    for name, data, seed in (("test", upsampling_data["test"], 0), ("test-2", other, 0), ("test-3", other, 1)):
        result = json.load(open(os.path.join(folders, name, "robustness.json")))
        assert result["data"] == [os.path.abspath(data)] and [row["data"] for row in result["rows"]] == [data]
        assert result["attacks"] == ["jpeg"] and result["seed"] == seed
        assert os.path.isfile(os.path.join(folders, name, "robustness.md"))
    assert not os.path.exists(os.path.join(run, "robustness.json"))
    # Beside a SavedModel version folder or a model file, as evaluate writes, never inside the SavedModel.
    savedmodel = tmp_path / "export" / "savedmodel" / "1"
    savedmodel.mkdir(parents=True)
    (savedmodel / "saved_model.pb").write_bytes(b"")
    assert default_output_dir(str(savedmodel), [other], folder="robustness") == f"{savedmodel}-robustness/test"
    tflite = tmp_path / "model.tflite"
    tflite.write_bytes(b"")
    assert default_output_dir(str(tflite), [other], folder="robustness") == f"{tflite}-robustness/test"
    # --json must be a file path: checked before the model is loaded.
    capsys.readouterr()
    code = main(["robustness", "--model", run, "--data", other, "--json", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"dnadet-tf robustness: error: --json {tmp_path}: expected a file path, received a folder."
