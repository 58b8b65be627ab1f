"""benchmarks/validation_trajectory.py and benchmarks/step1_seeds.py: cached evaluations answer only their zoo,
inputs are checked before any work (one line, exit 2), files of other experiments are not pooled, and the result
JSONs record what made them."""
import json
import os
import shutil

import pytest

from clirun import benchmark_module

SPLITS = ("closed-set", "cross-seed", "cross-loss", "cross-finetune", "cross-dataset")
LISTS = ("test", "cross_seed", "cross_loss", "cross_finetune", "cross_dataset")
CLASSES = ["real", "nearest", "transposed"]


_module = benchmark_module


def _zoo(test_root, zoo, only=None, lists=LISTS):
    """A benchmark `zoo` whose every split in `lists` lists `test_root`'s images (with `only`, those of that class)."""
    from dnadet_tf.data import find_images

    os.makedirs(zoo)
    lines = [f"{path}\t{CLASSES.index(os.path.basename(os.path.dirname(path)))}" for path in find_images(test_root)
             if only is None or os.path.basename(os.path.dirname(path)) == only]
    for split in lists:
        with open(os.path.join(zoo, f"{split}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    with open(os.path.join(zoo, "classes.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    return zoo


@pytest.fixture(scope="module")
def validated_run(upsampling_data, tmp_path_factory):
    """A tiny run that kept its validated models (steps 20 and 40), never evaluated."""
    from dnadet_tf.training import fit

    run_dir = str(tmp_path_factory.mktemp("trajectory") / "vrun")
    fit(upsampling_data["train"], run_dir, val=upsampling_data["val"], preset="tiny", steps=40, keep_validated=True)
    return run_dir


def _error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def _accuracies(document):
    return {name: figures for run in document["runs"] for name, figures in
            ((name, model["accuracy"]) for name, model in run["models"].items())}


def test_validation_trajectory_measures_another_zoo_again_and_records_its_digest(validated_run, upsampling_data,
                                                                                 tmp_path):
    """Finding 3: the cached RUN/evaluation/step-*.json of one zoo answered a later --zoo (the JSON named the new
    zoo with the old zoo's figures); a cache written before it recorded its zoo is measured again too."""
    from dnadet_tf.data import benchmark_digest

    module = _module("validation_trajectory")
    zoo_a = _zoo(upsampling_data["test"], str(tmp_path / "fullA"))
    zoo_c = _zoo(upsampling_data["test"], str(tmp_path / "fullC"), only="transposed")
    fresh = str(tmp_path / "fresh")
    shutil.copytree(validated_run, fresh)
    run = str(tmp_path / "run")
    shutil.copytree(validated_run, run)
    assert module.main([run, "--zoo", zoo_a, "--average", "2", "--json", str(tmp_path / "a.json")]) == 0
    assert module.main([run, "--zoo", zoo_c, "--average", "2", "--json", str(tmp_path / "c.json")]) == 0
    assert module.main([fresh, "--zoo", zoo_c, "--average", "2", "--json", str(tmp_path / "fresh.json")]) == 0
    documents = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in ("a", "c", "fresh")}
    assert _accuracies(documents["c"]) == _accuracies(documents["fresh"])
    assert _accuracies(documents["c"]) != _accuracies(documents["a"])
    assert documents["c"]["zoo_sha256"] == benchmark_digest(zoo_c)
    assert documents["a"]["zoo_sha256"] == benchmark_digest(zoo_a)
    for key in ("command", "commit", "machine"):  # finding 12
        assert key in documents["c"]
    assert documents["c"]["command"].startswith("python benchmarks/validation_trajectory.py ")
    cache = json.loads(open(os.path.join(run, "evaluation", "step-000040.json")).read())
    assert cache["zoo_sha256"] == benchmark_digest(zoo_c) and cache["zoo"] == os.path.abspath(zoo_c)

    # a cache of rows alone (as written before the digest) is not trusted: measured again on the zoo asked for
    old_rows = [{"name": split, "class_names": CLASSES, "data": "x",
                 "metrics": {"accuracy": 0.125, "macro_f1": 0.0, "per_class_recall": {}}} for split in SPLITS]
    for name in os.listdir(os.path.join(run, "evaluation")):
        if name.endswith(".json"):
            with open(os.path.join(run, "evaluation", name), "w") as f:
                json.dump(old_rows, f)
    assert module.main([run, "--zoo", zoo_c, "--average", "2", "--json", str(tmp_path / "c2.json")]) == 0
    assert _accuracies(json.loads((tmp_path / "c2.json").read_text())) == _accuracies(documents["fresh"])


def test_validation_trajectory_refuses_a_zoo_without_every_split_before_any_work(validated_run, upsampling_data,
                                                                                  tmp_path, capsys):
    """Finding 10: a benchmark without the cross-tests crashed with KeyError: 'cross-seed' after scoring every
    model."""
    module = _module("validation_trajectory")
    zoo = _zoo(upsampling_data["test"], str(tmp_path / "partial"), lists=("test", "cross_dataset"))
    run = str(tmp_path / "run")
    shutil.copytree(validated_run, run)
    with pytest.raises(SystemExit) as raised:
        module.main([run, "--zoo", zoo, "--average", "2"])
    assert raised.value.code == 2
    assert "lacks cross_seed.txt, cross_loss.txt, cross_finetune.txt" in _error(capsys)
    assert not os.path.exists(os.path.join(run, "evaluation"))  # nothing evaluated


def test_validation_trajectory_bad_arguments_are_one_line_and_exit_2(validated_run, upsampling_data, tmp_path,
                                                                     capsys):
    """Finding 11: a missing zoo and --average 0 gave tracebacks (the latter after scoring every validated model)."""
    module = _module("validation_trajectory")
    zoo = _zoo(upsampling_data["test"], str(tmp_path / "zoo"))
    run = str(tmp_path / "run")
    shutil.copytree(validated_run, run)
    for argv, said in (([run, "--zoo", str(tmp_path / "nozoo")], "--zoo: expected a benchmark folder, found none"),
                       ([run, "--zoo", zoo, "--average", "0"], "--average: expected counts of 1 or more")):
        with pytest.raises(SystemExit) as raised:
            module.main(argv)
        assert raised.value.code == 2 and said in _error(capsys)
    assert not os.path.exists(os.path.join(run, "evaluation"))


def _ablation(path, cross_loss, **settings):
    """An ablation.json at `path` with DNA-Det's cross-loss accuracies `cross_loss`, 1.0 elsewhere, and `settings`."""
    summary = {split: {"accuracy": {"values": list(cross_loss) if split == "cross-loss" else [1.0] * len(cross_loss)}}
               for split in SPLITS}
    document = {"pretrained": os.path.basename(str(path)), "seeds": list(range(len(cross_loss))),
                "variants": [{"variant": "DNA-Det", "summary": summary}], **settings}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f)
    return str(path)


SAME = {"zoo": "/z", "zoo_sha256": "a" * 64, "preset": "cpu", "steps": None, "validation": True,
        "fit_overrides": {"select": "nll"}}


@pytest.mark.parametrize("key, other", [("zoo_sha256", "b" * 64), ("preset", "tiny"), ("steps", 40),
                                        ("fit_overrides", {}), ("validation", False)])
def test_step1_seeds_refuses_files_of_other_settings(tmp_path, capsys, key, other):
    """Finding 7: files of other zoos, presets and steps were pooled without a word."""
    module = _module("step1_seeds")
    a = _ablation(tmp_path / "a.json", [0.8, 1.0, 0.9], **SAME)
    b = _ablation(tmp_path / "b.json", [0.5, 0.5, 0.5], **dict(SAME, **{key: other}))
    with pytest.raises(SystemExit) as raised:
        module.main([a, b, "--json", str(tmp_path / "out.json")])
    line = _error(capsys)
    assert raised.value.code == 2 and f"{b}: expected the settings of {a}, its {key} differs" in line
    assert not (tmp_path / "out.json").exists()


def test_step1_seeds_refuses_other_step2_seeds_but_not_another_zoo_path_of_one_digest(tmp_path, capsys):
    module = _module("step1_seeds")
    a = _ablation(tmp_path / "a.json", [0.8, 1.0, 0.9], **SAME)
    b = _ablation(tmp_path / "b.json", [0.5, 0.5], **SAME)
    with pytest.raises(SystemExit) as raised:
        module.main([a, b])
    assert raised.value.code == 2 and "its seeds differs: [0, 1], not [0, 1, 2]" in _error(capsys)
    moved = _ablation(tmp_path / "moved.json", [0.5, 0.5, 0.5], **dict(SAME, zoo="/elsewhere"))
    assert module.main([a, moved]) == 0


def test_step1_seeds_records_its_sources_settings_and_provenance(tmp_path, monkeypatch):
    """Findings 7 and 12: the JSON named neither its files nor their zoo, preset, steps and overrides, nor the command,
    commit and machine; render_results.py still renders it as before."""
    module = _module("step1_seeds")
    monkeypatch.chdir(tmp_path)
    a = os.path.basename(_ablation(tmp_path / "a.json", [0.8, 1.0, 0.9], **SAME))
    b = os.path.basename(_ablation(tmp_path / "b.json", [0.5, 0.5, 0.5], **SAME))
    out = tmp_path / "step1-seeds-test.json"
    assert module.main([a, b, "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["sources"] == [str(tmp_path / "a.json"), str(tmp_path / "b.json")]
    assert [run["file"] for run in document["runs"]] == document["sources"]
    assert document["settings"] == dict(SAME, seeds=[0, 1, 2])
    assert document["command"] == f"python benchmarks/step1_seeds.py {a} {b} --json {out}"
    assert "commit" in document and document["machine"]
    assert document["pooled"]["cross-loss"]["mean"] == pytest.approx(0.7)
    rendered = _module("render_results").render_step1_seeds(str(out))
    assert "| pooled (6 runs) |" in rendered and "| between step-1 runs (2 means) |" in rendered


def test_step1_seeds_refuses_a_file_given_twice(tmp_path, capsys):
    """Finding 8: the same file given twice was counted twice ("pooled (9 runs)" of 3)."""
    module = _module("step1_seeds")
    a = _ablation(tmp_path / "a.json", [0.8, 1.0, 0.9], **SAME)
    os.symlink(a, tmp_path / "link.json")
    for twice in ([a, a], [a, str(tmp_path / "link.json")], [a, os.path.join(str(tmp_path), ".", "a.json")]):
        with pytest.raises(SystemExit) as raised:
            module.main(twice)
        assert raised.value.code == 2 and "given twice" in _error(capsys)


def test_step1_seeds_bad_files_are_one_line_and_exit_2(tmp_path, capsys):
    """Finding 11: a missing file gave a FileNotFoundError traceback; so did a document that is no ablation.json."""
    module = _module("step1_seeds")
    not_json = tmp_path / "not.json"
    not_json.write_text("{")
    other = tmp_path / "other.json"
    other.write_text(json.dumps([1, 2]))
    for path, said in ((str(tmp_path / "nope.json"), "FileNotFoundError"), (str(not_json), "JSONDecodeError"),
                       (str(other), "expected an ablation.json (with variants and seeds)")):
        with pytest.raises(SystemExit) as raised:
            module.main([path])
        assert raised.value.code == 2 and said in _error(capsys)
