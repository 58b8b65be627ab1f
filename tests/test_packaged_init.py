"""`--init packaged` / `none`: the step 1 shipped with the package, and random initialisation."""
import filecmp
import hashlib
import json
import os

import pytest

from dnadet_tf import pretrained
from dnadet_tf.cli.main import main
from dnadet_tf.config import make_config
from dnadet_tf.errors import DnadetError, RunDirError
from dnadet_tf.runs import RunDir
from dnadet_tf.training import fit


@pytest.fixture
def shipped_tiny(tiny_run, tmp_path, monkeypatch):
    """A package folder that ships `tiny_run` as the tiny preset's step 1."""
    folder = tmp_path / "pretrained"
    document = pretrained.ship(tiny_run, "dnadet-tf fit ... (a step-2 run stands in here)", "0123abc", str(folder))
    monkeypatch.setattr(pretrained, "FOLDER", str(folder))
    return str(folder / "step1-tiny"), document


def test_ship_copies_the_kept_model_and_records_where_it_came_from(shipped_tiny, tiny_run):
    path, document = shipped_tiny
    with open(os.path.join(path, "best.keras"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == document["best_keras_sha256"]
    assert filecmp.cmp(os.path.join(path, "best.keras"), RunDir(tiny_run).best_model_path, shallow=False)
    assert pretrained.provenance("tiny") == json.loads(json.dumps(document))
    kept = document["kept_validation"]
    assert kept["kind"] == "val" and kept["step"] == document["kept_step"] and 0 < kept["step"] <= 40
    assert document["config"]["preset"] == "tiny" and document["commit"] == "0123abc"


def test_packaged_init_loads_the_shipped_run_and_none_trains_from_scratch(shipped_tiny, upsampling_data, tmp_path,
                                                                         capsys):
    shipped, _ = shipped_tiny
    out = str(tmp_path / "dnadet")
    fit(upsampling_data["train"], out, preset="tiny", steps=2, init="packaged")
    printed = capsys.readouterr().out
    assert f"--init packaged (the step 1 shipped for the tiny preset, {shipped}): loaded" in printed
    assert "training DNA-Det" in printed
    assert RunDir(out).config.init == "packaged"  # config.json names what it started from, portably
    fit(upsampling_data["train"], str(tmp_path / "scratch"), preset="tiny", steps=2, init="none")
    printed = capsys.readouterr().out
    assert "--init" not in printed and "training Base+PCL" in printed
    assert RunDir(str(tmp_path / "scratch")).config.init == ""


def test_packaged_init_errors_name_the_flag_and_what_to_do(shipped_tiny, upsampling_data, tmp_path, capsys):
    with pytest.raises(DnadetError, match=r"shipped for preset\(s\) tiny only; .* --init none"):
        pretrained.resolve_init("packaged", "paper")
    code = main(["fit", "--data", upsampling_data["train"], "--out", str(tmp_path / "r"), "--preset", "tiny",
                 "--init", "packaged", "--width", "0.5"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("dnadet-tf fit: error: --init packaged (the step 1 shipped for the tiny preset")
    assert "pass --init none to train from random initialisation" in err
    assert not os.path.exists(tmp_path / "r" / "config.json")
    with pytest.raises(RunDirError, match="expected a finished run dir"):
        fit(upsampling_data["train"], str(tmp_path / "r2"), preset="tiny", steps=2, init=str(tmp_path))


def test_none_is_random_initialisation_whatever_the_preset_says():
    assert make_config("tiny", init="none").init == ""
    assert make_config("tiny", init="some/run").init == "some/run"



def test_the_cpu_preset_starts_from_the_step1_shipped_with_the_package():
    from dnadet_tf.model import Backbone, Classifier, encoder_mismatch

    config = make_config("cpu")
    assert config.init == "packaged"
    path = pretrained.resolve_init(config.init, "cpu")
    assert path == pretrained.packaged_run("cpu") and path.startswith(pretrained.FOLDER)
    document = pretrained.provenance("cpu")
    assert document["command"].startswith("dnadet-tf pretrain --photos dnadet_tf/zoo/demo_photos ")
    assert document["config"]["model"]["width"] == config.model.width and document["preset"] == "cpu"
    from dnadet_tf.training import init_magnification

    assert init_magnification(path) == config.preprocessing.resize2  # made at the magnification step 2 uses
    with open(os.path.join(path, "best.keras"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == document["best_keras_sha256"]
    source = RunDir(path).load_model()
    assert encoder_mismatch(source, Classifier(Backbone(config.model.width), 5, config.model.dropout)) is None
    assert len(source.class_names) == 170
