"""Edges of `zoo build` and `zoo swap-content`: repeated photos, empty paths, folders whose build.json is gone,
swap-content on a zoo missing files or stopped midway. No generator is trained here: a build that gets past the
checks under test is stopped (`_build` replaced), and swap-content runs on a zoo of real images alone."""
import glob
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from dnadet_tf.errors import DataError
from dnadet_tf.images import save_png_atomic
from dnadet_tf.zoo import build as build_module
from dnadet_tf.zoo.build import build_zoo, plan
from dnadet_tf.zoo.photos import PACKAGED_PHOTOS, find_photos
from dnadet_tf.zoo.swap_content import write_swapped_splits
from synthetic import packaged_photo_dirs

CLASSES = ["real", "progan", "mmdgan", "sngan", "infomaxgan"]


class Built(Exception):
    """Raised where a build would start training: the checks before it let the folder through."""


@pytest.fixture
def no_training(monkeypatch):
    def stop(*args, **kwargs):
        raise Built()

    monkeypatch.setattr(build_module, "_build", stop)


def test_repeated_photos_are_left_out_with_one_warning(tmp_path):
    # A copy in B, a link in C and a lossless re-save in A of one A photo: each in another content group put test
    # content into training (A-train / A-test, A / B); they were all used.
    photos = packaged_photo_dirs(str(tmp_path / "photos"), {"a": 5, "b": 3, "c": 3})
    first = sorted(glob.glob(os.path.join(photos, "a", "*.jpg")))[0]
    shutil.copy(first, os.path.join(photos, "b", "copy.jpg"))
    os.symlink(first, os.path.join(photos, "c", "link.jpg"))
    Image.open(first).save(os.path.join(photos, "a", "resaved.png"))
    warnings = []
    photo_set = find_photos(photos, warn=warnings.append)
    assert [len(photo_set.domains[d]) for d in "ABC"] == [5, 3, 3]
    used = [path for d in "ABC" for path in photo_set.domains[d]]
    assert first in used and not any(os.path.basename(p) in ("copy.jpg", "link.jpg", "resaved.png") for p in used)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("warning: skipping 3 photo(s) that repeat another (a photo in two content groups "
                                  "would put test content into training): ")
    assert f"copy.jpg (the same pixels as {first})" in warnings[0]
    # The photos shipped with the package hold no repeat: their fingerprint (zoos already built) is unchanged.
    assert len(find_photos(None, warn=warnings.append).domains["A"]) == len(
        glob.glob(os.path.join(PACKAGED_PHOTOS, "a", "*.jpg")))


def test_empty_paths_are_refused_before_anything_is_written(tmp_path, monkeypatch, no_training):
    # `--out "$OUT"` with OUT unset: the build wrote its zoo into the current folder beside what it held.
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    with pytest.raises(DataError, match=r"^--out: expected a folder path, received an empty value \(a shell "
                                        r"variable that is not set\?\)\.$"):
        build_zoo("", size="tiny")
    with pytest.raises(DataError, match=r"^--photos: expected a folder path, received an empty value"):
        build_zoo(str(tmp_path / "zoo"), size="tiny", photos="")
    with pytest.raises(DataError, match=r"^--zoo: expected a folder path, received an empty value"):
        write_swapped_splits("", str(tmp_path / "swap"))
    with pytest.raises(DataError, match=r"^--out: expected a folder path, received an empty value"):
        write_swapped_splits(str(tmp_path / "zoo"), "")
    assert os.listdir(work) == ["notes.txt"] and not os.path.exists(tmp_path / "zoo")


def test_a_folder_of_a_models_folder_alone_is_not_a_zoo_to_write_into(tmp_path, no_training):
    # Only an empty models/ (a build stopped before build.json) passes; a models/ of one's own files did.
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "mine.keras").write_bytes(b"model")
    with pytest.raises(DataError, match=r"^--out .*project: expected an empty folder or a zoo this command built "
                                        r"\(build.json in it\), received a folder of other files\.$"):
        build_zoo(str(project), size="tiny")
    assert os.listdir(project) == ["models"] and os.listdir(project / "models") == ["mine.keras"]
    (project / "models" / "mine.keras").unlink()
    with pytest.raises(Built):
        build_zoo(str(project), size="tiny")
    # A wrong --out is named before the photos are read (and a missing --photos folder named after it).
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"^--out .*file: expected a folder for the zoo, received a file\.$"):
        build_zoo(str(tmp_path / "file"), size="tiny", photos=str(tmp_path / "missing"))


def _zoo_json(seed, size="tiny", wild=False):
    return {"format": build_module.ZOO_FORMAT, "size": size, "seed": seed, "wild": wild,
            "photos": {"fingerprint": find_photos(None).fingerprint}, "classes": CLASSES, "models": []}


def test_a_zoo_without_build_json_is_compared_with_its_zoo_json(tmp_path, no_training):
    # Its models' names hold neither the build seed nor the size: all were skipped as built, the images kept and
    # zoo.json rewritten to say seed 1 (or demo, its tiny models then making demo's many more images).
    out = tmp_path / "zoo"
    out.mkdir()
    (out / "zoo.json").write_text(json.dumps(_zoo_json(seed=0)))
    for seed, size, differ in ((1, "tiny", "seed: 0 there, 1 now"), (0, "demo", "size: 'tiny' there, 'demo' now")):
        with pytest.raises(DataError, match=rf"^--out .*zoo: expected a zoo built with the same settings \(to resume "
                                            rf"or rerun it\), received one built with other settings \({differ}\); "
                                            rf"use another --out or delete that folder\.$"):
            build_zoo(str(out), size=size, seed=seed)
        assert not (out / "build.json").exists()
    with pytest.raises(Built):  # the settings it was built with: resumed, and build.json written again
        build_zoo(str(out), size="tiny", seed=0)
    assert json.loads((out / "build.json").read_text())["seed"] == 0


def test_photos_of_other_settings_are_shown_short(tmp_path, no_training):
    # They were two digests of 64 hex digits each, naming no flag.
    out = tmp_path / "zoo"
    out.mkdir()
    photo_set = find_photos(None)
    settings = build_module._build_settings("tiny", 0, False, photo_set)
    (out / "build.json").write_text(json.dumps({**settings, "photos": "ab" * 32}))
    with pytest.raises(DataError, match=r"other settings \(photos: abababababab\.\.\. there, [0-9a-f]{12}\.\.\. "
                                        r"now\); use another --out"):
        build_zoo(str(out), size="tiny")


def test_a_model_record_of_another_build_seed_is_refused(tmp_path):
    # A build killed (its build.lock left) whose build.json was then deleted, resumed with another --seed: its
    # models were taken as this build's.
    out = tmp_path / "zoo"
    (out / "models").mkdir(parents=True)
    (out / "build.lock").write_text("999999999\n")  # no such process
    spec = plan("tiny")[0]
    other = build_module.seed_key(0, "model", spec.name) % (2**31 - 2)
    (out / "models" / f"{spec.name}.json").write_text(json.dumps(
        {"name": spec.name, "family": spec.family, "rng_seed": other, "steps": spec.steps, "finetuned_from": None}))
    (out / "models" / f"{spec.name}.weights.h5").write_bytes(b"weights")
    lines = []
    with pytest.raises(DataError, match=rf"models[/\\]{spec.name}\.json: expected a model of this build \(--size tiny "
                                        rf"--seed 1\), received one trained otherwise \(rng_seed {other} there, "):
        build_zoo(str(out), size="tiny", seed=1, progress=lines.append)
    assert not any("already built" in line for line in lines)


def _real_zoo(root, per_split=3):
    """A complete zoo folder as far as swap-content reads one, with real images and no generator."""
    os.makedirs(root)
    rng = np.random.default_rng(0)
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    for split, group in (("test", "A-test"), ("cross_dataset", "B-test")):
        lines = []
        for i in range(per_split):
            relative = f"images/{split}/real/real-{group}_{i:05d}.png"
            os.makedirs(os.path.dirname(root / relative), exist_ok=True)
            save_png_atomic(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), str(root / relative))
            lines.append(f"{relative}\t0\n")
        (root / f"{split}.txt").write_text("".join(lines))
    (root / "zoo.json").write_text(json.dumps({**_zoo_json(seed=0), "models": []}))
    return root


def test_swap_content_refuses_a_zoo_missing_a_weights_file_before_writing(tmp_path):
    # It wrote cross_content, then stopped on cross_weights with h5py's "Unable to synchronously open file".
    zoo = _real_zoo(tmp_path / "zoo")
    record = {"name": "sngan-B-seed0-hinge-l1", "family": "sngan", "seed": 0, "domain": "B",
              "adversarial_loss": "hinge", "reconstruction_loss": "l1", "finetuned_from": None,
              "weights": "models/sngan-B-seed0-hinge-l1.weights.h5", "weights_sha256": "0" * 64}
    (zoo / "zoo.json").write_text(json.dumps({**_zoo_json(seed=0), "models": [record]}))
    out = tmp_path / "swap"
    with pytest.raises(DataError, match=r"^--zoo .*zoo: expected a complete zoo, received one without .*models[/\\]"
                                        r"sngan-B-seed0-hinge-l1\.weights\.h5; run 'dnadet-tf zoo build' on it again "):
        write_swapped_splits(str(zoo), str(out), progress=lambda line: None)
    assert not out.exists()
    os.remove(zoo / "cross_dataset.txt")
    with pytest.raises(DataError, match=r"received one without .*cross_dataset\.txt and 1 more;"):
        write_swapped_splits(str(zoo), str(out), progress=lambda line: None)


def test_swap_content_stopped_midway_leaves_no_list_of_images_it_removed(tmp_path, monkeypatch):
    # A rerun removes a split's images before writing them anew: stopped there, the earlier list was left behind,
    # naming images that are gone (or, from another zoo, others under the same names).
    from dnadet_tf.zoo import swap_content

    zoo = _real_zoo(tmp_path / "zoo")
    out = tmp_path / "swap"
    write_swapped_splits(str(zoo), str(out), progress=lambda line: None)
    assert (out / "cross_weights.txt").is_file()
    written = swap_content.save_png_atomic

    def save(array, path):
        if f"{os.sep}cross_weights{os.sep}" in path:
            raise KeyboardInterrupt
        written(array, path)

    monkeypatch.setattr(swap_content, "save_png_atomic", save)
    with pytest.raises(KeyboardInterrupt):
        write_swapped_splits(str(zoo), str(out), progress=lambda line: None)
    assert (out / "cross_content.txt").is_file() and not (out / "cross_weights.txt").exists()
    for line in (out / "cross_content.txt").read_text().splitlines():
        assert (out / line.split("\t")[0]).is_file()
    assert json.loads((out / "swap_content.json").read_text())["splits"] == {}
