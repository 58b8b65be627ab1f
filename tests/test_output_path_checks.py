"""Output paths refused before any work: `dnadet_tf.evaluate(out_dir=FILE/sub)` (it failed after the whole
evaluation) and an `--json` file holding `[]` (a file of the user's: `evaluate` never writes an empty list)."""
import os

import pytest

import dnadet_tf
from dnadet_tf.errors import DnadetError
from clirun import run_cli


def test_evaluate_out_dir_under_a_file_is_refused_before_inference(untrained_run, upsampling_data, tmp_path,
                                                                     monkeypatch):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    import dnadet_tf.api as api

    def no_model(model):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(api, "_predictor", no_model)
    target = os.path.join(str(blocker), "sub", "deeper")
    with pytest.raises(DnadetError, match=r"^out_dir .*/notes\.txt/sub/deeper: expected a folder path for the "
                                          r"confusion-matrix PNGs, but .*/notes\.txt is a file\.$"):
        dnadet_tf.evaluate(untrained_run, upsampling_data["test"], out_dir=target)
    assert blocker.read_text() == "mine"


def test_evaluate_out_dir_missing_under_a_folder_is_made(untrained_run, upsampling_data, tmp_path):
    target = tmp_path / "new" / "pngs"
    rows = dnadet_tf.evaluate(untrained_run, upsampling_data["test"], out_dir=str(target))
    assert rows and sorted(os.listdir(target)) and all(name.endswith(".png") for name in os.listdir(target))


def test_json_holding_an_empty_list_is_kept(untrained_run, upsampling_data, tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text("[]")
    code, _, stderr = run_cli(["evaluate", "--model", untrained_run, "--data", upsampling_data["test"],
                               "--json", str(mine)])
    assert code == 2 and stderr.strip().splitlines() == [
        f"dnadet-tf evaluate: error: --json {mine}: expected a new file or an earlier evaluation JSON to replace, "
        f"received an existing file that is not one (it is kept; name another file)."]
    assert mine.read_text() == "[]"
