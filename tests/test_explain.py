"""Grad-CAM (dnadet_tf.explain, `dnadet-tf explain`) on a model trained to spot a local artefact."""
import glob
import io
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from dnadet_tf.errors import DnadetError

SIZE = 64
CLASSES = ("marked", "plain")  # sorted: marked = 0, plain = 1


def _smooth_content(rng):
    low = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(low).resize((SIZE, SIZE), Image.BICUBIC), np.float64)


def make_region_tree(root, per_class, seed):
    """ROOT/plain: smooth random content; ROOT/marked: the same kind of content plus a
    one-pixel checkerboard (+-40) confined to the top-left quadrant."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    checker = np.where((rows + cols) % 2 == 0, 40.0, -40.0)[..., None]
    half = SIZE // 2
    for i in range(per_class):
        for name in CLASSES:
            image = _smooth_content(rng)
            if name == "marked":
                image[:half, :half] += checker[:half, :half]
            os.makedirs(os.path.join(root, name), exist_ok=True)
            pixels = np.clip(image + 0.5, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, name, f"{i:03d}.png"))


@pytest.fixture(scope="module")
def region_run(tmp_path_factory):
    """A Base-mode `tiny` run (64 px in, no resizing, width 0.25: 32 channels at stage 2)
    trained for 60 steps on the region data (a few seconds)."""
    from dnadet_tf.training import fit

    root = tmp_path_factory.mktemp("region")
    make_region_tree(str(root / "train"), 16, seed=1)
    make_region_tree(str(root / "test"), 6, seed=2)
    run_dir = str(root / "run")
    fit(str(root / "train"), run_dir, preset="tiny", mode="base", steps=60, width=0.25, crop_size=SIZE,
        resize1=SIZE, resize2=SIZE, output=io.StringIO())
    return {"run": run_dir, "test": str(root / "test")}


@pytest.fixture(scope="module")
def loaded(region_run):
    from dnadet_tf.explain import load_pixels
    from dnadet_tf.predictor import KerasPredictor

    run = KerasPredictor(region_run["run"])
    paths = {name: sorted(glob.glob(os.path.join(region_run["test"], name, "*.png"))) for name in CLASSES}
    pixels = {name: load_pixels(paths[name], run.preprocess) for name in CLASSES}
    return run, paths, pixels


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_maps_have_the_input_size_and_finite_values(loaded, method):
    from dnadet_tf.explain import gradcam_maps

    run, _, pixels = loaded
    batch = np.concatenate([pixels["marked"][:2], pixels["plain"][:2]])
    maps, probabilities, targets = gradcam_maps(run.model, batch, method=method)
    assert maps.shape == (4, SIZE, SIZE) == batch.shape[:3]
    assert np.isfinite(maps).all()
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert probabilities.shape == (4, 2)
    np.testing.assert_array_equal(targets, np.argmax(probabilities, axis=-1))


def test_layer_names_and_unknown_layer(loaded):
    from dnadet_tf.explain import gradcam_layer_names, gradcam_maps
    from dnadet_tf.model import DEFAULT_GRADCAM_LAYER

    run, _, pixels = loaded
    names = gradcam_layer_names(run.model)
    assert DEFAULT_GRADCAM_LAYER in names and "stage1_conv1" in names and "stage4_act2" in names
    assert not any("_bn" in n or "_pad" in n or n in ("feature", "logits") for n in names)
    with pytest.raises(DnadetError) as error:
        gradcam_maps(run.model, pixels["plain"][:1], layer="stage9_act1")
    message = str(error.value)
    assert "\n" not in message and "stage9_act1" in message
    assert all(name in message for name in names)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_heatmap_mass_sits_on_the_artefact(loaded, method):
    from dnadet_tf.explain import gradcam_maps

    run, _, pixels = loaded
    marked = run.class_names.index("marked")
    maps, probabilities, targets = gradcam_maps(run.model, pixels["marked"], method=method)
    assert (targets == marked).all(), "the model should recognise the marked images"
    half = SIZE // 2
    mass = maps[:, :half, :half].sum(axis=(1, 2)) / np.maximum(maps.sum(axis=(1, 2)), 1e-9)
    # The top-left quadrant is 25 % of the area. Over 14 training seeds, Grad-CAM put 68-93 % of
    # each image's mass there, Grad-CAM++ 58-78 % on average (it spills more past the region's
    # edges, which stage-2 units 11 px away still see).
    if method == "gradcam":
        assert (mass > 0.5).all(), mass
    assert mass.mean() > 0.5, mass


def test_explain_cli_writes_pngs_and_json(region_run, tmp_path, capsys):
    from dnadet_tf.cli.main import main

    marked = sorted(glob.glob(os.path.join(region_run["test"], "marked", "*.png")))[0]
    plain_dir = os.path.join(region_run["test"], "plain")
    out = tmp_path / "explain"
    code = main(["explain", "--model", region_run["run"], marked, plain_dir, "--out", str(out),
                 "--method", "gradcam++"])
    assert code == 0
    rows = json.loads((out / "explain.json").read_text())
    assert len(rows) == 1 + 6
    assert len({row["png"] for row in rows}) == len(rows)  # same file names in two folders do not collide
    assert rows[0]["class"] == "marked" and 0.0 <= rows[0]["probability"] <= 1.0
    for row in rows:
        with Image.open(row["png"]) as image:
            assert image.size[0] > SIZE and image.mode in ("RGB", "RGBA")
    assert "marked" in capsys.readouterr().out

    code = main(["explain", "--model", region_run["run"], marked, "--out", str(tmp_path / "other"), "--layer", "nope"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stage2_act2" in err[0] and "stage1_conv1" in err[0]

    # A second explain into the same folder: refused without --overwrite, nothing changed; with it, explain.json
    # lists the new PNGs and the earlier ones it no longer lists are gone, other files kept.
    (out / "notes.txt").write_text("keep me")
    before = sorted(os.listdir(out))
    assert main(["explain", "--model", region_run["run"], marked, "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"dnadet-tf explain: error: --out {out}: the folder already holds files; pass --overwrite to write into it "
        "(an earlier explain's PNGs are replaced) or give another folder.")
    assert sorted(os.listdir(out)) == before
    assert main(["explain", "--model", region_run["run"], marked, "--out", str(out), "--overwrite"]) == 0
    again = json.loads((out / "explain.json").read_text())
    assert len(again) == 1 and sorted(os.listdir(out)) == sorted(
        ["explain.json", "notes.txt", os.path.basename(again[0]["png"])])
    # a user's file under the name a PNG would take is not written over (it was): the PNG takes the next name
    mine = out / os.path.basename(plain_png := sorted(glob.glob(os.path.join(plain_dir, "*.png")))[0]).replace(
        ".png", ".gradcampp.png")
    mine.write_bytes(b"my own")
    assert main(["explain", "--model", region_run["run"], plain_png, "--out", str(out), "--overwrite",
                 "--method", "gradcam++"]) == 0
    third = json.loads((out / "explain.json").read_text())
    assert mine.read_bytes() == b"my own" and os.path.basename(third[0]["png"]) == mine.name.replace(
        ".gradcampp.png", "-2.gradcampp.png")


def test_explain_rerun_with_a_relative_out_from_another_folder_replaces_its_pngs(region_run, tmp_path,
                                                                                 monkeypatch, capsys):
    # explain.json named its PNGs as --out gave them (now absolute); a rerun from another working folder into the same folder
    # (another relative --out) replaced nothing: the PNG took a -2 name and the earlier ones stayed
    from dnadet_tf.cli.main import main

    marked = sorted(glob.glob(os.path.join(region_run["test"], "marked", "*.png")))
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "--model", region_run["run"], *marked[:2], "--out", "explain"]) == 0
    first = json.loads((tmp_path / "explain" / "explain.json").read_text())
    assert [os.path.isabs(row["png"]) for row in first] == [True, True]  # resolves from any working folder
    monkeypatch.chdir(tmp_path / "sub")
    assert main(["explain", "--model", region_run["run"], marked[0], "--out", "../explain", "--overwrite"]) == 0
    capsys.readouterr()
    again = json.loads((tmp_path / "explain" / "explain.json").read_text())
    assert os.path.basename(again[0]["png"]) == os.path.basename(first[0]["png"])
    assert sorted(os.listdir(tmp_path / "explain")) == sorted(["explain.json", os.path.basename(first[0]["png"])])


def test_explain_of_a_calibrated_run_says_unknown_as_predict_does(region_run, tmp_path, capsys):
    # A calibrated run's explain gives each image the open-set verdict predict gives it; the map stays that of
    # the nearest known class. A threshold keeping half the validation images flags about half of them.
    from dnadet_tf.cli.main import main

    run = str(tmp_path / "run")
    shutil.copytree(region_run["run"], run)
    train = os.path.join(os.path.dirname(region_run["test"]), "train")
    assert main(["calibrate", run, "--data", train, "--val", region_run["test"], "--known-rate", "0.5"]) == 0
    capsys.readouterr()
    out = tmp_path / "explain"
    assert main(["explain", "--model", run, region_run["test"], "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = {row["path"]: row for row in json.loads((out / "explain.json").read_text())}
    assert main(["predict", "--model", run, "--json", region_run["test"]]) == 0
    predicted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(predicted) == len(rows) == 12
    for record in predicted:
        row = rows[record["path"]]
        assert row["unknown"] == record["unknown"] and row["class"] == record["class"]
        assert row["ood_score"] == pytest.approx(record["ood_score"], rel=1e-4, abs=1e-5)
        assert row["ood_threshold"] == pytest.approx(record["ood_threshold"], rel=1e-6)
    flagged = [row for row in rows.values() if row["unknown"]]
    assert 0 < len(flagged) < len(rows)
    assert printed.count("unknown (open-set score ") == len(flagged)
    assert f"\tunknown (open-set score {flagged[0]['ood_score']:.4g} > threshold" in printed
