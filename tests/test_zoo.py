"""The generator zoo: layout, labels, images, determinism, resuming, bad photo folders.

One `tiny` zoo is built per module; a second one is built partly in a subprocess that
is interrupted after a few models and then resumed here, which checks resuming and
(against the first) that the same seed gives the same weights and image bytes.
"""
import argparse
import glob
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from dnadet_tf.errors import DataError, DnadetError
from dnadet_tf.images import load_rgb, save_png_atomic
from dnadet_tf.zoo import SPLITS, build_zoo, plan
from dnadet_tf.zoo.photos import PACKAGED_PHOTOS, find_photos
from synthetic import packaged_photo_dirs

PAPER_CLASSES = ["real", "progan", "mmdgan", "sngan", "infomaxgan"]
INTERRUPT_AFTER = 3


def _read_list(path):
    entries = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            relative, label = line.rstrip("\n").split("\t")
            entries.append((relative, int(label)))
    return entries


def _model_lines(lines):
    return [line for line in lines if line.startswith("[")]


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("zoo") / "first")
    lines = []
    build_zoo(out, size="tiny", progress=lines.append)
    return out, lines


@pytest.fixture(scope="module")
def resumed_zoo(tmp_path_factory):
    """A tiny zoo whose build was interrupted (in another process) after INTERRUPT_AFTER models, then resumed."""
    out = str(tmp_path_factory.mktemp("zoo") / "second")
    script = textwrap.dedent(
        f"""
        import sys
        from dnadet_tf.zoo import build_zoo

        class Stop(Exception):
            pass

        trained = []

        def progress(line):
            print(line, flush=True)
            if line.startswith("[") and " steps, " in line:
                trained.append(line)
                if len(trained) == {INTERRUPT_AFTER}:
                    raise Stop()

        try:
            build_zoo(sys.argv[1], size="tiny", progress=progress)
        except Stop:
            sys.exit(3)
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", script, out], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-3000:]
    weights = sorted(glob.glob(os.path.join(out, "models", "*.weights.h5")))
    mtimes = {path: os.stat(path).st_mtime_ns for path in weights}
    lines = []
    build_zoo(out, size="tiny", progress=lines.append)
    return out, result.stdout.splitlines(), lines, mtimes


def test_every_split_with_consistent_labels_and_128px_images(tiny_zoo):
    out, _ = tiny_zoo
    with open(os.path.join(out, "classes.txt"), encoding="utf-8") as handle:
        classes = handle.read().split()
    assert classes == PAPER_CLASSES
    present = {}
    for split in SPLITS:
        entries = _read_list(os.path.join(out, f"{split}.txt"))
        assert entries, split
        for relative, label in entries:
            assert 0 <= label < len(classes)
            # images/<split>/<class>/<model>_<index>.png: the folder names the class the label says.
            parts = relative.split("/")
            assert parts[:2] == ["images", split] and parts[2] == classes[label], relative
            if label:
                assert os.path.basename(relative).startswith(classes[label] + "-"), relative
            image = load_rgb(os.path.join(out, relative))
            assert image.shape == (128, 128, 3), relative
        present[split] = {classes[label] for _, label in entries}
    for split in ("train", "val", "test"):
        assert present[split] == set(PAPER_CLASSES)
    assert present["cross_seed"] == {"progan"}
    assert present["cross_loss"] <= {"mmdgan", "infomaxgan"}
    assert "real" not in present["cross_finetune"]
    assert "real" in present["cross_dataset"] and len(present["cross_dataset"]) >= 2


def test_zoo_json_describes_every_model(tiny_zoo):
    out, lines = tiny_zoo
    with open(os.path.join(out, "zoo.json"), encoding="utf-8") as handle:
        zoo = json.load(handle)
    assert zoo["size"] == "tiny" and zoo["seed"] == 0 and zoo["classes"] == PAPER_CLASSES
    assert "packaged" in zoo["photos"]["source"]
    from dnadet_tf.data import benchmark_digest

    assert zoo["zoo_sha256"] == benchmark_digest(out) and lines[-1].endswith(f"; zoo_sha256 {zoo['zoo_sha256']}")
    specs = plan("tiny")
    assert [m["name"] for m in zoo["models"]] == [s.name for s in specs]
    for model in zoo["models"]:
        for key in ("name", "family", "seed", "adversarial_loss", "reconstruction_loss", "domain",
                    "finetuned_from", "steps"):
            assert key in model, key
        assert set(model["final_losses"]) == {"g_adv", "rec", "d"}
        assert all(math.isfinite(v) for v in model["final_losses"].values())
        assert len(model["weights_sha256"]) == 64
        assert os.path.exists(os.path.join(out, model["weights"]))
    finetuned = [m for m in zoo["models"] if m["finetuned_from"]]
    assert finetuned and all(m["domain"] == "C" for m in finetuned)
    assert {m["seed"] for m in zoo["models"] if m["family"] == "progan"} >= {0, 1}
    # One progress line per model, in the documented form.
    model_lines = _model_lines(lines)
    assert len(model_lines) == len(specs)
    assert model_lines[0].startswith(f"[1/{len(specs)}] progan seed=0 loss=")
    assert " steps, " in model_lines[0] and "g_adv=" in model_lines[0] and " d=" in model_lines[0]
    # Held-out content: A's groups are disjoint.
    groups = zoo["photos"]["content_groups"]
    train, val, test = (set(groups[g]) for g in ("A-train", "A-val", "A-test"))
    assert train and val and test and not (train & val) and not (train & test) and not (val & test)


def test_contact_sheet_per_split(tiny_zoo):
    out, _ = tiny_zoo
    for split in SPLITS:
        sheet = load_rgb(os.path.join(out, f"contact_{split}.png"))
        rows = len({label for _, label in _read_list(os.path.join(out, f"{split}.txt"))})
        assert sheet.shape[0] == rows * (128 + 4) + 4, split


def test_interrupted_build_resumes_without_retraining(resumed_zoo):
    out, first_lines, lines, mtimes = resumed_zoo
    trained_before = [line for line in _model_lines(first_lines) if " steps, " in line]
    assert len(trained_before) == INTERRUPT_AFTER
    model_lines = _model_lines(lines)
    assert len(model_lines) == len(plan("tiny"))
    for line in model_lines[:INTERRUPT_AFTER]:
        assert "already built" in line and "skipped" in line, line
    for line in model_lines[INTERRUPT_AFTER:]:
        assert " steps, " in line, line
    assert len(mtimes) == INTERRUPT_AFTER
    for path, mtime in mtimes.items():
        assert os.stat(path).st_mtime_ns == mtime, path
    assert os.path.exists(os.path.join(out, "zoo.json"))


def test_same_seed_gives_same_weights_and_image_bytes(tiny_zoo, resumed_zoo):
    first, second = tiny_zoo[0], resumed_zoo[0]

    def checksums(out):
        with open(os.path.join(out, "zoo.json"), encoding="utf-8") as handle:
            return {m["name"]: m["weights_sha256"] for m in json.load(handle)["models"]}

    assert checksums(first) == checksums(second)
    for split in SPLITS:
        entries = _read_list(os.path.join(first, f"{split}.txt"))
        assert entries == _read_list(os.path.join(second, f"{split}.txt"))
        for relative, _ in entries:
            with open(os.path.join(first, relative), "rb") as a, open(os.path.join(second, relative), "rb") as b:
                assert a.read() == b.read(), relative


def test_too_few_photos_is_a_data_error(tmp_path):
    photos = packaged_photo_dirs(str(tmp_path / "photos"), {"a": 1, "b": 1, "c": 1})
    with pytest.raises(DataError, match=r"too few usable photos for content domain A .*found 1, need at least 4"):
        build_zoo(str(tmp_path / "zoo"), size="tiny", photos=photos)
    assert not os.path.exists(tmp_path / "zoo")


def test_empty_domain_folder_is_a_data_error(tmp_path):
    photos = packaged_photo_dirs(str(tmp_path / "photos"), {"a": 5, "b": 0, "c": 2})
    with pytest.raises(DataError, match=r"photos[/\\]b: domain B folder holds no photo"):
        build_zoo(str(tmp_path / "zoo"), size="tiny", photos=photos)


def test_small_photo_is_a_data_error_and_unreadable_photos_are_skipped(tmp_path):
    photos = packaged_photo_dirs(str(tmp_path / "photos"), {"a": 5, "b": 3, "c": 3})
    with open(os.path.join(photos, "a", "broken.jpg"), "wb") as handle:
        handle.write(b"not a jpeg")
    warnings = []
    photo_set = find_photos(photos, warn=warnings.append)
    assert len(photo_set.domains["A"]) == 5
    assert len(warnings) == 1 and "broken.jpg" in warnings[0]
    transparent = Image.new("RGBA", (200, 160), (40, 90, 200, 0))  # composited onto one colour
    transparent.save(os.path.join(photos, "b", "transparent.png"))
    Image.new("RGB", (200, 160), (255, 255, 255)).save(os.path.join(photos, "b", "blank.jpg"), quality=90)
    photo_set = find_photos(photos, warn=warnings.append)
    assert len(photo_set.domains["B"]) == 3 and len(warnings) == 4
    assert all(f"{name}: expected content, received an image of one colour" in line
               for name, line in zip(("blank.jpg", "transparent.png"), warnings[2:]))
    save_png_atomic(np.zeros((100, 300, 3), np.uint8), os.path.join(photos, "c", "small.png"))
    with pytest.raises(DataError, match=r"too small .*small\.png \(300x100 px\)"):
        find_photos(photos, warn=warnings.append)


def test_a_zoo_inside_its_photo_folder_is_refused_before_any_work(tmp_path):
    # the first build passed; its rerun (or a resumed build) read the zoo folder as a domain and was refused
    photos = packaged_photo_dirs(str(tmp_path / "photos"), {"a": 5, "b": 3, "c": 3})
    out = os.path.join(photos, "zoo")
    with pytest.raises(DataError, match=rf"^--out {re.escape(out)}: expected a folder outside --photos "):
        build_zoo(out, size="tiny", photos=photos)
    assert not os.path.exists(out)


def test_small_photos_of_every_domain_are_named_in_one_message(tmp_path):
    photos = packaged_photo_dirs(str(tmp_path / "photos"), {"a": 5, "b": 3, "c": 3})
    save_png_atomic(np.zeros((100, 300, 3), np.uint8), os.path.join(photos, "a", "small-a.png"))
    save_png_atomic(np.zeros((90, 90, 3), np.uint8), os.path.join(photos, "c", "small-c.png"))
    with pytest.raises(DataError, match=r"^2 photo\(s\) too small .*small-a\.png \(300x100 px\), .*small-c\.png"):
        find_photos(photos, warn=lambda line: None)


def test_flat_folder_and_subfolder_rules(tmp_path):
    flat = str(tmp_path / "flat")
    os.makedirs(flat)
    for path in sorted(glob.glob(os.path.join(PACKAGED_PHOTOS, "a", "*.jpg")))[:8]:
        shutil.copy(path, flat)
    photo_set = find_photos(flat)
    assert [len(photo_set.domains[d]) for d in "ABC"] == [4, 2, 2]
    named = packaged_photo_dirs(str(tmp_path / "named"), {"x1": 4, "x2": 2, "x3": 1, "x4": 1})
    photo_set = find_photos(named)
    assert [len(photo_set.domains[d]) for d in "ABC"] == [4, 2, 2]
    two = packaged_photo_dirs(str(tmp_path / "two"), {"x1": 4, "x2": 2})
    with pytest.raises(DataError, match="found 2"):
        find_photos(two)
    # Photos beside the domain subfolders are in no domain: said, not used.
    shutil.copy(photo_set.domains["A"][0], os.path.join(named, "loose.jpg"))
    warnings = []
    photo_set = find_photos(named, warn=warnings.append)
    assert [len(photo_set.domains[d]) for d in "ABC"] == [4, 2, 2]
    assert warnings == [f"--photos {named}: 1 photo(s) beside the domain subfolders not used (each domain is a "
                        f"subfolder), e.g. {os.path.join(named, 'loose.jpg')}"]


def test_folder_built_with_other_settings_is_refused(tiny_zoo, tmp_path):
    out = str(tmp_path / "zoo")
    shutil.copytree(tiny_zoo[0], out)
    with pytest.raises(DataError, match=r"other settings \(seed: 0 there, 1 now\)"):
        build_zoo(out, size="tiny", seed=1)


def test_a_folder_of_other_files_or_a_file_is_refused_as_out(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(DataError, match=r"expected an empty folder or a zoo this command built \(build.json in it\), "
                                        r"received a run dir\.$"):
        build_zoo(str(run), size="tiny")
    assert sorted(os.listdir(run)) == ["config.json"]  # nothing written beside it
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"jpeg")
    with pytest.raises(DataError, match=r"received a folder of other files\.$"):
        build_zoo(str(photos), size="tiny")
    with pytest.raises(DataError, match=r"expected a folder for the zoo, received a file\.$"):
        build_zoo(str(photos / "a.jpg"), size="tiny")
    # A folder-tree data set holds a classes.txt, a project a models/ folder: neither is a zoo to write into.
    data = tmp_path / "data"
    (data / "real").mkdir(parents=True)
    (data / "classes.txt").write_text("real\ngan\n")
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "README.txt").write_text("x")
    for folder in (data, project):
        before = sorted(os.listdir(folder))
        with pytest.raises(DataError, match=r"received a folder of other files\.$"):
            build_zoo(str(folder), size="tiny")
        assert sorted(os.listdir(folder)) == before
    assert (data / "classes.txt").read_text() == "real\ngan\n"


def test_a_folder_is_built_by_one_process_at_a_time(tiny_zoo, tmp_path):
    out = str(tmp_path / "zoo")
    shutil.copytree(tiny_zoo[0], out)
    lock = os.path.join(out, "build.lock")
    with open(lock, "w", encoding="utf-8") as handle:
        handle.write(f"{os.getppid()}\n")  # a live process
    with pytest.raises(DataError, match=r"another build \(process \d+\) is writing this zoo"):
        build_zoo(out, size="tiny")
    with open(lock, "w", encoding="utf-8") as handle:
        handle.write("999999999\n")  # no such process: a stale lock is taken over
    lines = []
    build_zoo(out, size="tiny", progress=lines.append)
    assert all("skipped" in line for line in _model_lines(lines))
    assert not os.path.exists(lock)


def test_cli_registers_zoo_build(tmp_path, capsys):
    from dnadet_tf.cli import zoo as zoo_cli

    parser = argparse.ArgumentParser(prog="dnadet-tf")
    zoo_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["zoo", "build", "--out", str(tmp_path / "z"), "--size", "tiny", "--seed", "3",
                              "--wild", "--photos", str(tmp_path / "missing")])
    assert args.func is zoo_cli.run
    assert (args.size, args.seed, args.wild) == ("tiny", 3, True)
    with pytest.raises(DataError, match="not a folder"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["zoo", "build", "--help"])
    text = capsys.readouterr().out
    for flag in ("--out DIR", "--size {tiny,demo,full}", "--photos DIR", "--seed N", "--wild"):
        assert flag in text


def test_swapped_splits_run_each_generator_set_on_the_other_sets_reals(tiny_zoo, tmp_path):
    from dnadet_tf.zoo.build import GENERATE_BATCH, SCALE
    from dnadet_tf.zoo.photos import seed_key
    from dnadet_tf.zoo.swap_content import load_generator, write_swapped_splits
    from dnadet_tf.zoo.training import generate

    zoo, _ = tiny_zoo
    out = str(tmp_path / "swap")
    lines = []
    paths = write_swapped_splits(zoo, out, progress=lines.append)
    with open(os.path.join(zoo, "zoo.json"), encoding="utf-8") as handle:
        record = json.load(handle)
    models = {m["name"]: m for m in record["models"]}
    assert open(os.path.join(out, "classes.txt")).read() == open(os.path.join(zoo, "classes.txt")).read()
    # cross_content: the four A-trained base models on the cross_dataset reals; cross_weights: the zoo's
    # B-trained models (sngan alone at size tiny) on the test split's reals.
    expected_models = {
        "cross_content": ("cross_dataset", ["progan-A-seed0-nonsaturating-l1", "mmdgan-A-seed0-hinge-l1",
                                            "sngan-A-seed0-hinge-l1", "infomaxgan-A-seed0-hinge-l1"]),
        "cross_weights": ("test", ["sngan-B-seed0-hinge-l1"]),
    }
    described = json.load(open(os.path.join(out, "swap_content.json")))
    for split, (source, names) in expected_models.items():
        assert [m["name"] for m in described["splits"][split]["models"]] == names
        reals = sorted(r for r, label in _read_list(os.path.join(zoo, f"{source}.txt")) if label == 0)
        entries = _read_list(paths[split])
        labels = [0] + [PAPER_CLASSES.index(models[n]["family"]) for n in names]
        assert sorted({l for _, l in entries}) == labels
        assert all(sum(1 for _, l in entries if l == label) == len(reals) for label in labels)
        # The real class is the source split's real crops, pixel for pixel, in sorted order.
        for mine, theirs in zip(sorted(p for p, l in entries if l == 0), reals):
            assert np.array_equal(load_rgb(os.path.join(out, mine)), load_rgb(os.path.join(zoo, theirs)))
        # Class k's image i is that model run on real image i (paired).
        name = names[-1]
        fakes = sorted(p for p, l in entries if l == PAPER_CLASSES.index(models[name]["family"]))
        assert all(os.path.basename(p).startswith(name + "_") for p in fakes)
        inputs = np.stack([load_rgb(os.path.join(zoo, r)) for r in reals[:GENERATE_BATCH]])
        key = seed_key(record["seed"], "noise", name, split) % (2**31 - 1)
        expected = generate(load_generator(zoo, models[name]), inputs, [(key, i) for i in range(len(inputs))], SCALE)
        written = np.stack([load_rgb(os.path.join(out, p)) for p in fakes[:len(inputs)]])
        assert written.shape == (len(inputs), 128, 128, 3)
        assert np.array_equal(written, expected) and not np.array_equal(written, inputs)
    assert [line.split(": ", 1)[1].split(" in ")[0] for line in lines if "the real class" in line] == [
        "40 images (4 generators and the real class)", "16 images (1 generator and the real class)"]
    # The same zoo gives the same bytes; earlier splits are replaced, the zoo's own folder refused.
    def checksums(folder):
        return {os.path.relpath(p, folder): open(p, "rb").read()
                for p in glob.glob(os.path.join(folder, "images", "*", "*", "*.png"))}
    first = checksums(out)
    write_swapped_splits(zoo, out, progress=lambda line: None)
    assert checksums(out) == first and len(first) == 5 * 8 + 2 * 8
    before = sorted(os.listdir(zoo))
    with pytest.raises(DataError, match="expected an empty folder or one this command wrote"):
        write_swapped_splits(zoo, zoo, progress=lambda line: None)
    assert sorted(os.listdir(zoo)) == before
    with pytest.raises(DataError, match=r"^--zoo .*nothing: expected a complete zoo folder .*received no such "
                                        r"folder\.$"):
        write_swapped_splits(str(tmp_path / "nothing"), str(tmp_path / "swap2"), progress=lambda line: None)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "build.json").write_text("{}")
    with pytest.raises(DataError, match=r"received an unfinished zoo build: run 'dnadet-tf zoo build' on it again"):
        write_swapped_splits(str(unfinished), str(tmp_path / "swap3"), progress=lambda line: None)


def test_cli_registers_zoo_swap_content(tiny_zoo, tmp_path, capsys):
    from dnadet_tf.cli import zoo as zoo_cli

    parser = argparse.ArgumentParser(prog="dnadet-tf")
    zoo_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["zoo", "swap-content", "--zoo", tiny_zoo[0], "--out", str(tmp_path / "swap")])
    assert args.func(args) == 0
    assert os.path.isfile(tmp_path / "swap" / "cross_content.txt")
    assert os.path.isfile(tmp_path / "swap" / "cross_weights.txt")
    assert "cross_weights: " in capsys.readouterr().out


def test_ablation_over_seeds_reports_mean_std_and_every_selection_rule(tiny_zoo, tmp_path, capsys):
    import json as json_module

    from dnadet_tf.ablation import ablate, format_ablation
    from dnadet_tf.config import TrainConfig
    from dnadet_tf.data import benchmark_digest
    from dnadet_tf.selection import SELECTION_RULES

    zoo, _ = tiny_zoo
    out = str(tmp_path / "ablate")
    document = ablate(zoo, out, preset="tiny", steps=30, seeds=(0, 1), variants=["base", "base_pcl"],
                      compare_select=True, fit_overrides={"val_every": 10})
    assert [entry["variant"] for entry in document["variants"]] == ["Base", "Base+PCL"]
    for entry in document["variants"]:
        assert [result["seed"] for result in entry["seeds"]] == [0, 1]
        for split in ("closed-set", "cross-seed", "cross-loss", "cross-finetune", "cross-dataset"):
            stats = entry["summary"][split]["accuracy"]
            values = [result["splits"][split]["accuracy"] for result in entry["seeds"]]
            assert stats["values"] == values
            assert stats["mean"] == pytest.approx(np.mean(values)) and stats["std"] == pytest.approx(np.std(values))
        for result in entry["seeds"]:
            assert sorted(result["select"]) == sorted(SELECTION_RULES)
            assert result["select"]["final"]["step"] == 30
            assert {r["step"] for r in result["select"].values()} <= {10, 20, 30}
            assert result["select"]["average"]["steps"] == [10, 20, 30]  # fewer validations than 4: all of them
            # best.keras of a run follows the default rule, so its figures are that rule's.
            assert result["select"][TrainConfig().loop.select]["splits"] == result["splits"]
    with open(os.path.join(out, "ablation.json"), encoding="utf-8") as f:
        saved = json_module.load(f)
    assert saved["seeds"] == [0, 1] and saved["steps"] == 30
    assert saved["zoo_sha256"] == benchmark_digest(zoo)  # which zoo the figures come from, wherever it lies
    # which machine kind, and whether other work shared it: the CPU's speed features and the load
    assert saved["machine"]["cpus"] == os.cpu_count() and isinstance(saved["machine"]["cpu_features"], list)
    assert "load_average_1min" in saved["machine"]
    table = open(os.path.join(out, "ablation.md"), encoding="utf-8").read()
    assert "mean ± std (population) over 2 training seed(s)" in table and "| Base+PCL | nll |" in table
    # The JSON (keys sorted on disk) renders as the same tables: splits and rules in the paper's order.
    assert format_ablation(saved) == table.strip()
    assert table.index("| closed-set | cross-seed | cross-loss | cross-finetune | cross-dataset |") > 0
    # The rule that picked each best.keras is recorded and said under the table; the document says it is whole.
    assert all(result["best_keras_rule"] == "nll" for entry in saved["variants"] for result in entry["seeds"])
    assert "best.keras by rule nll (Base), nll (Base+PCL)" in table and saved["complete"] is True
    assert "partial" not in table
    capsys.readouterr()
    ablate(zoo, out, preset="tiny", steps=30, seeds=(0, 1), variants=["base", "base_pcl"],
           compare_select=True, fit_overrides={"val_every": 10})
    assert "training Base" not in capsys.readouterr().out  # every run reused
    # A partial document says so; runs trained on another zoo are not reported as this one's.
    partial = dict(saved, variants=saved["variants"][:1], complete=False)
    assert "partial: 1 of the 2 variants finished" in format_ablation(partial)
    other_zoo = str(tmp_path / "other-zoo")
    shutil.copytree(zoo, other_zoo)
    with pytest.raises(DnadetError, match=rf"base[/\\]seed0: trained on {re.escape(os.path.abspath(zoo))}, where "
                                          rf"this ablation trains on {re.escape(other_zoo)}"):
        ablate(other_zoo, out, preset="tiny", steps=30, seeds=(0, 1), variants=["base", "base_pcl"],
               compare_select=True, fit_overrides={"val_every": 10})
    # Settings every run takes are checked before any work (a step 1 would have come first).
    with pytest.raises(DnadetError, match=r"^steps: expected"):
        ablate(zoo, str(tmp_path / "never"), preset="tiny", steps=-1, seeds=(0,), variants=["dnadet"])
    assert not os.path.exists(tmp_path / "never")


def test_ablate_takes_the_shipped_step1_and_keeps_base_pcl_from_scratch(tiny_zoo, tiny_run, tmp_path, monkeypatch):
    from dnadet_tf import pretrained
    from dnadet_tf.ablation import ablate
    from dnadet_tf.runs import RunDir

    pretrained.ship(tiny_run, "a step-2 run stands in for step 1 here", "0123abc", str(tmp_path / "pretrained"))
    monkeypatch.setattr(pretrained, "FOLDER", str(tmp_path / "pretrained"))
    zoo, _ = tiny_zoo
    out = str(tmp_path / "ablate")
    document = ablate(zoo, out, preset="tiny", steps=4, seeds=(0,), variants=["base_pcl", "dnadet"],
                      fit_overrides={"frozen_stages": 1})
    assert document["pretrained"] == "packaged" and not os.path.exists(os.path.join(out, "pretrain"))
    assert [entry["variant"] for entry in document["variants"]] == ["Base+PCL", "DNA-Det"]
    base_pcl, dnadet = (RunDir(os.path.join(out, v, "seed0")).config for v in ("base_pcl", "dnadet"))
    assert base_pcl.init == "" and base_pcl.optimizer.frozen_stages == 0  # nothing loaded, nothing to keep
    assert dnadet.init == "packaged" and dnadet.optimizer.frozen_stages == 1


def test_ablate_pretrains_at_another_width_instead_of_taking_the_shipped_step1(tiny_zoo, tiny_run, tmp_path,
                                                                                monkeypatch):
    from dnadet_tf import ablation, pretrained
    from dnadet_tf.config import make_config

    pretrained.ship(tiny_run, "a step-2 run stands in for step 1 here", "0123abc", str(tmp_path / "pretrained"))
    monkeypatch.setattr(pretrained, "FOLDER", str(tmp_path / "pretrained"))
    step1_calls, fit_calls = [], []
    monkeypatch.setattr(ablation, "pretrain",
                        lambda photos, out, **kwargs: step1_calls.append(kwargs) or os.makedirs(out, exist_ok=True))
    monkeypatch.setattr(ablation, "run_one", lambda zoo, run_dir, mode, init, *args: fit_calls.append(init) or {})
    monkeypatch.setattr(ablation, "aggregate", lambda *args: {})
    monkeypatch.setattr(ablation, "format_ablation", lambda document: "")
    zoo, _ = tiny_zoo
    tiny_width = make_config("tiny").model.width  # the shipped (tiny) run's, as its provenance.json records
    for width, expected in ((tiny_width, "packaged"), (tiny_width * 2, str(tmp_path / "w" / "pretrain"))):
        step1_calls.clear(), fit_calls.clear()
        document = ablation.ablate(zoo, str(tmp_path / "w"), preset="tiny", seeds=(0,), variants=["dnadet"],
                                   fit_overrides={"width": width})
        assert document["pretrained"] == expected and fit_calls == [expected]
        # the shipped step 1 serves the preset's width; another width pre-trains a step 1 of its own width
        assert step1_calls == ([] if expected == "packaged" else [dict(preset="tiny", overwrite=True, resume=False,
                                                                       steps=None, seed=0,
                                                                       output=step1_calls[0]["output"],
                                                                       width=tiny_width * 2)])
    # a finished step 1 (its pretrained.json) is reused; one stopped part-way (a run dir with a checkpoint and no
    # pretrained.json, whatever its best.keras) continues from its checkpoint
    step1_calls.clear()
    ablation.ablate(zoo, str(tmp_path / "w"), preset="tiny", seeds=(0,), variants=["dnadet"],
                    fit_overrides={"width": tiny_width * 2})
    assert step1_calls == []
    os.remove(tmp_path / "w" / "pretrain" / ablation.PRETRAINED_FILE)
    monkeypatch.setattr(ablation.runs.RunDir, "holds_run", property(lambda self: True))
    monkeypatch.setattr(ablation.runs.RunDir, "has_checkpoint", property(lambda self: True))
    ablation.ablate(zoo, str(tmp_path / "w"), preset="tiny", seeds=(0,), variants=["dnadet"],
                    fit_overrides={"width": tiny_width * 2})
    assert [(call["resume"], call["overwrite"]) for call in step1_calls] == [(True, False)]


def test_ablate_continues_a_stopped_run_and_refuses_one_trained_otherwise(tiny_zoo, tmp_path, capsys):
    import shutil

    from dnadet_tf.ablation import ablate
    from dnadet_tf.errors import DnadetError
    from dnadet_tf.runs import CHECKPOINTS

    zoo, _ = tiny_zoo
    out = str(tmp_path / "ablate")
    settings = dict(preset="tiny", steps=4, seeds=(0,), variants=["base_pcl"],
                    fit_overrides={"val_every": 2, "checkpoint_every": 2})
    straight = ablate(zoo, out, **settings)
    run_dir = os.path.join(out, "base_pcl", "seed0")
    shutil.rmtree(os.path.join(run_dir, "evaluation"))  # as if stopped after its step-2 checkpoint
    checkpoints = os.path.join(run_dir, CHECKPOINTS)
    for name in os.listdir(checkpoints):
        if name.startswith("ckpt-4"):
            os.remove(os.path.join(checkpoints, name))
    with open(os.path.join(checkpoints, "checkpoint"), "w", encoding="utf-8") as f:
        f.write('model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-2"\n')
    capsys.readouterr()
    again = ablate(zoo, out, **settings)
    assert f"resumed from {os.path.join(checkpoints, 'ckpt-2')} at step 2" in capsys.readouterr().out
    assert again["variants"][0]["summary"] == straight["variants"][0]["summary"]  # the same figures
    with pytest.raises(DnadetError, match=r"trained with learning_rate 0\.002, where this ablation trains 0\.5; "):
        ablate(zoo, out, **dict(settings, fit_overrides=dict(settings["fit_overrides"], learning_rate=0.5)))


def test_ablate_refuses_a_folder_that_is_no_benchmark_before_any_step_1(tmp_path, monkeypatch, capsys):
    from dnadet_tf import ablation
    from dnadet_tf.cli.main import main

    monkeypatch.setattr(ablation, "pretrain", lambda *args, **kwargs: (_ for _ in ()).throw(AssertionError("step 1")))
    tree = tmp_path / "tree"
    (tree / "real").mkdir(parents=True)  # a folder of class folders: no split lists
    half_built = tmp_path / "half-built"
    (half_built / "models").mkdir(parents=True)  # a build stopped before it wrote its split lists
    (half_built / "build.json").write_text("{}")
    out = tmp_path / "ablation"
    for zoo, received in ((tree, "a folder of subfolders, neither a run dir nor a benchmark folder (a folder tree of "
                                 "classes?)"),
                          (tmp_path / "nope", "no such file or folder"),
                          (half_built, "a zoo whose build has not finished (no split lists yet; 'dnadet-tf zoo build "
                                       f"--out {half_built}' with its first settings finishes it)")):
        assert main(["ablate", "--zoo", str(zoo), "--out", str(out), "--preset", "tiny", "--photos", str(tree)]) == 2
        assert capsys.readouterr().err.strip() == (
            f"dnadet-tf ablate: error: --zoo {zoo}: expected a benchmark folder (classes.txt, train.txt and the "
            f"cross-test lists, as 'dnadet-tf zoo build' writes), received {received}.")
    assert not out.exists()


def test_ablate_passes_the_learning_rate_and_augmentation_to_every_run(monkeypatch, tmp_path):
    from dnadet_tf import ablation
    from dnadet_tf.attacks import ATTACK_NAMES
    from dnadet_tf.cli.common import AUGMENT_NAMES_HELP
    from dnadet_tf.cli.main import main

    assert all(name in AUGMENT_NAMES_HELP for name in ATTACK_NAMES)  # the help of fit and ablate lists every name

    received = {}
    monkeypatch.setattr(ablation, "ablate", lambda zoo, out, **kwargs: received.update(kwargs))
    assert main(["ablate", "--zoo", str(tmp_path), "--out", str(tmp_path / "a"), "--variants", "dnadet",
                 "--lr", "3e-4", "--augment", "jpeg,noise", "--frozen-stages", "2", "--crop-grid", "32",
                 "--width", "0.5", "--patch-size", "32", "--patches-per-image", "32", "--images-per-class", "16"]) == 0
    assert received["fit_overrides"] == {"learning_rate": 3e-4, "augment": ("jpeg", "noise"), "frozen_stages": 2,
                                         "crop_grid": 32, "width": 0.5, "patch_size": 32, "patches_per_image": 32,
                                         "images_per_class": 16}
    assert main(["ablate", "--zoo", str(tmp_path), "--out", str(tmp_path / "a"), "--variants", "dnadet"]) == 0
    assert received["fit_overrides"] == {}


def test_ablate_without_validation_trains_on_train_txt_alone_and_averages_without_it(tiny_zoo, tmp_path, capsys):
    from dnadet_tf.ablation import ablate
    from dnadet_tf.cli.main import main
    from dnadet_tf.runs import RunDir

    zoo, _ = tiny_zoo
    out = str(tmp_path / "blind")
    document = ablate(zoo, out, preset="tiny", steps=20, seeds=(0,), variants=["base_pcl"], validation=False,
                      fit_overrides={"val_every": 10, "select": "average"})
    assert document["validation"] is False
    run_dir = os.path.join(out, "base_pcl", "seed0")
    config = RunDir(run_dir).config
    assert config.val == "" and config.data == os.path.abspath(os.path.join(zoo, "train.txt"))
    assert not os.path.isfile(os.path.join(run_dir, "calibration.json"))
    with open(os.path.join(run_dir, "evaluation", "training.json"), encoding="utf-8") as f:
        assert json.load(f)["averaged_steps"] == [10, 20]
    assert "no validation data, best.keras by rule 'average' (mean of the models of steps 10, 20)" in capsys.readouterr().out
    assert document["variants"][0]["seeds"][0]["best_keras_rule"] == "average"
    # a rule that needs validation figures kept the last step's model: recorded as `final`, as fit said (it said nll)
    last = ablate(zoo, str(tmp_path / "blind-nll"), preset="tiny", steps=10, seeds=(0,), variants=["base_pcl"],
                  validation=False)
    assert last["variants"][0]["seeds"][0]["best_keras_rule"] == "final"
    assert "no validation data, best.keras is the last step's model" in capsys.readouterr().out
    assert main(["ablate", "--zoo", zoo, "--out", str(tmp_path / "x"), "--no-validation", "--compare-select"]) == 2
    assert capsys.readouterr().err.strip() == (
        "dnadet-tf ablate: error: --no-validation: expected without --compare-select, which compares the selection "
        "rules on the validation images, received both.")
    assert main(["ablate", "--zoo", zoo, "--out", str(tmp_path / "x"), "--no-validation", "--val-split", "0.2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "dnadet-tf ablate: error: --val-split: expected without --no-validation (it holds out validation images), "
        "received --val-split 0.2 and --no-validation.")
    # --val-split holds out a share of train.txt as the validation images, in place of val.txt.
    held = ablate(zoo, str(tmp_path / "held"), preset="tiny", steps=20, seeds=(0,), variants=["base_pcl"],
                  fit_overrides={"val_every": 10, "val_split": 0.25})
    config = RunDir(os.path.join(str(tmp_path / "held"), "base_pcl", "seed0")).config
    assert held["fit_overrides"]["val_split"] == 0.25 and config.val_split == 0.25 and config.val == ""
    assert os.path.isfile(os.path.join(str(tmp_path / "held"), "base_pcl", "seed0", "calibration.json"))
    assert "training images held out as validation images" in capsys.readouterr().out


def test_a_weights_file_the_build_did_not_write_is_refused(tiny_zoo, tmp_path):
    # The zoo's records hold each model's weights_sha256: a swapped weights file (another model's) is named, where
    # it made other images under the recorded digests.
    from dnadet_tf.zoo.swap_content import write_swapped_splits

    zoo = str(tmp_path / "zoo")
    shutil.copytree(tiny_zoo[0], zoo)
    target = os.path.join(zoo, "models", "sngan-B-seed0-hinge-l1.weights.h5")
    shutil.copy(os.path.join(zoo, "models", "sngan-A-seed0-hinge-l1.weights.h5"), target)
    with pytest.raises(DataError, match=rf"^{re.escape(target)}: other weights than the zoo's build wrote"):
        write_swapped_splits(zoo, str(tmp_path / "swap"))
    shutil.rmtree(os.path.join(zoo, "images", "cross_dataset"))  # a resumed build makes them again from the file
    with pytest.raises(DataError, match=r"other weights than the zoo's build wrote"):
        build_zoo(zoo, size="tiny")


def test_photos_edited_in_place_are_other_photos_to_a_resumed_build(tmp_path):
    # A photo re-saved with the same byte count kept the recorded fingerprint (paths and sizes): the photos' bytes
    # are recorded too, and a build.json written before that is read as before.
    photos = packaged_photo_dirs(str(tmp_path / "photos"), {"a": 5, "b": 3, "c": 3})
    first = find_photos(photos)
    recorded = first.content_digest  # read now, before the edit
    path = first.domains["A"][0]
    data = bytearray(open(path, "rb").read())
    data[-3] ^= 0xFF  # same size, other bytes
    open(path, "wb").write(bytes(data))
    second = find_photos(photos)
    assert second.fingerprint == first.fingerprint and second.content_digest != recorded
    from dnadet_tf.zoo.build import _build_settings, _check_settings

    out = tmp_path / "zoo"
    out.mkdir()
    _check_settings(str(out), _build_settings("tiny", 0, False, first))
    with pytest.raises(DataError, match=r"other settings \(photo_content: "):
        _check_settings(str(out), _build_settings("tiny", 0, False, second))
    older = {k: v for k, v in _build_settings("tiny", 0, False, second).items() if k != "photo_content"}
    (out / "build.json").write_text(json.dumps(older))
    _check_settings(str(out), _build_settings("tiny", 0, False, second))  # as before: nothing to compare
    assert json.loads((out / "build.json").read_text())["photo_content"] == second.content_digest
