"""Shared fixtures: small generated datasets and one tiny trained run per session."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from synthetic import make_photos, make_upsampling_tree  # noqa: E402


@pytest.fixture(scope="session")
def upsampling_data(tmp_path_factory):
    """{'train': ROOT, 'val': ROOT, 'test': ROOT}: 3 classes (real, nearest, transposed), 32 px PNGs,
    held-out content in val and test."""
    root = tmp_path_factory.mktemp("upsampling")
    sizes = {"train": 24, "val": 12, "test": 12}
    for seed, (split, count) in enumerate(sizes.items(), start=1):
        make_upsampling_tree(str(root / split), count, seed=seed)
    return {split: str(root / split) for split in sizes}


@pytest.fixture(scope="session")
def tiny_run(upsampling_data, tmp_path_factory):
    """A run dir of the `tiny` preset trained for 40 steps on `upsampling_data` (train/val)."""
    from dnadet_tf.training import fit

    run_dir = str(tmp_path_factory.mktemp("runs") / "tiny")
    fit(upsampling_data["train"], run_dir, val=upsampling_data["val"], preset="tiny", steps=40)
    return run_dir


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory):
    """A run dir of the `tiny` preset (crop 32, patch 32) holding an untrained classifier (no open-set score):
    enough to predict, evaluate and export (the weights play no part in what is refused)."""
    from dnadet_tf import runs
    from dnadet_tf.config import make_config
    from dnadet_tf.model import Backbone, Classifier
    from synthetic import CLASSES

    run_dir = str(tmp_path_factory.mktemp("untrained") / "run")
    os.makedirs(run_dir)
    config = make_config("tiny")
    runs.RunDir(run_dir).start(config, CLASSES)
    Classifier(Backbone(config.model.width), len(CLASSES), config.model.dropout, CLASSES, config.preprocess).save(
        os.path.join(run_dir, runs.BEST_MODEL))
    return run_dir


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """tmp_path as the working folder, with train/ and val/ trees (real, nearest, transposed: 3 and 2 images of
    32 px each) and photos/ (2 photos of 192 x 160 px); crops are cached in tmp_path/cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))
    make_upsampling_tree("train", 3, seed=1)
    make_upsampling_tree("val", 2, seed=2)
    make_photos("photos", 2)
    return tmp_path
