"""benchmarks/open_set_points.py, content_adaptation.py and seed_ensemble.py: what an earlier --json file keeps,
which files they refuse to write over, and their argument errors (one line, exit 2, before any work)."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from dnadet_tf.data import benchmark_digest, find_images
from dnadet_tf.errors import DataError
from clirun import BENCHMARKS, benchmark_module

CLASSES = ["real", "nearest", "transposed"]


_module = benchmark_module


def _list(root):
    return "".join(f"{path}\t{CLASSES.index(os.path.basename(os.path.dirname(path)))}\n" for path in find_images(root))


def _zoo(data, zoo, train_val=False):
    """A benchmark folder: test.txt and cross_dataset.txt of data["test"], open_set.txt of 6 noise images, and with
    `train_val` train.txt and val.txt of data["train"] and data["val"]."""
    os.makedirs(os.path.join(zoo, "unknown"))
    for split in ("test", "cross_dataset"):
        with open(os.path.join(zoo, f"{split}.txt"), "w") as f:
            f.write(_list(data["test"]))
    if train_val:
        for split in ("train", "val"):
            with open(os.path.join(zoo, f"{split}.txt"), "w") as f:
                f.write(_list(data[split]))
    with open(os.path.join(zoo, "classes.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    rng = np.random.default_rng(8)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(os.path.join(zoo, "unknown", f"{i}.png"))
    with open(os.path.join(zoo, "open_set.txt"), "w") as f:
        f.write("".join(f"unknown/{i}.png\tnoisegan\n" for i in range(6)))
    return zoo


def _never(*args, **kwargs):
    raise AssertionError("measured, although the arguments should have been refused before any work")


def _refused(main, argv, capsys):
    """main(argv) exits with status 2; its stderr's last line."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def _points_figures(value):
    figures = {"test": value, "cross_dataset": value, "open_set": 1 - value, "auroc": value, "points": 3}
    return {setting: dict(figures) for setting in ("class", "2", "image")}


def _legacy_points(zoo, runs):
    """An open_set_points.py --json file as the script wrote it before it recorded "script" (the committed files'
    keys): `runs` {path: figure value}."""
    module = _module("open_set_points")
    entries = [{"run": run, "figures": _points_figures(value)} for run, value in runs.items()]
    document = module._document(zoo, benchmark_digest(zoo), ["class", "2", "image"], entries)
    assert "script" not in document
    return document


def _content_figures(module, value):
    splits = {"test": {key: value for key in ("as_trained", "adapted", "adapted_stage3")},
              "cross_dataset": {key: value for key in ("as_trained", *module.VARIANTS)}}
    return {"splits": splits, "training_content": {f"test_after_{variant}": value for variant in module.COSTED}}


# Finding 5: a rerun with fewer --runs kept only the given runs' figures.
def test_open_set_points_keeps_the_earlier_runs_not_given_again(tiny_run, upsampling_data, tmp_path, capsys,
                                                                 monkeypatch):
    module = _module("open_set_points")
    zoo = _zoo(upsampling_data, str(tmp_path / "zoo"), train_val=True)
    other = str(tmp_path / "elsewhere" / "seed1")  # finished earlier, not given now (its folder may be gone)
    path = tmp_path / "open-set-points-x.json"
    path.write_text(json.dumps(_legacy_points(zoo, {os.path.abspath(tiny_run): 0.5, other: 1.0})))
    monkeypatch.setattr(module, "run_features", _never)  # both runs are in the file: nothing is measured
    assert module.main(["--zoo", zoo, "--runs", tiny_run, "--points", "2", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    document = json.loads(path.read_text())
    assert [run["run"] for run in document["runs"]] == [os.path.abspath(tiny_run), other]
    assert document["summary"]["class/auroc"]["values"] == [0.5, 1.0]
    assert f"its figures of 1 other run(s) ({other}) stay in it" in out and "over all 2 runs" in out
    # Provenance (finding 12): the script, command, commit and machine.
    assert document["script"] == "open_set_points"
    assert document["command"].startswith("python benchmarks/open_set_points.py --zoo ")
    assert {"commit", "machine"} <= set(document)
    # The file still renders, and to the same table as before the new fields.
    rendered = _module("render_results").render_file(str(path))
    assert module.format_table(document) in rendered


def test_content_adaptation_keeps_the_earlier_runs_not_given_again(tiny_run, upsampling_data, tmp_path, capsys,
                                                                   monkeypatch):
    module = _module("content_adaptation")
    zoo = _zoo(upsampling_data, str(tmp_path / "zoo"))
    other = str(tmp_path / "elsewhere" / "seed1")
    path = tmp_path / "content-adaptation-x.json"
    runs = [{"run": os.path.abspath(tiny_run), **_content_figures(module, 0.5)},
            {"run": other, **_content_figures(module, 1.0)}]
    path.write_text(json.dumps(module.document_of(zoo, benchmark_digest(zoo), runs)))  # as committed: no "script"
    monkeypatch.setattr(module, "KerasPredictor", _never)  # every figure of the given run is in the file
    assert module.main(["--zoo", zoo, "--runs", tiny_run, "--json", str(path)]) == 0
    out = capsys.readouterr().out
    document = json.loads(path.read_text())
    assert [run["run"] for run in document["runs"]] == [os.path.abspath(tiny_run), other]
    assert document["summary"]["test/as_trained"]["values"] == [0.5, 1.0]
    assert "over 2 runs" in out and f"its figures of 1 other run(s) ({other}) stay in it" in out
    assert document["script"] == "content_adaptation"
    assert document["command"].startswith("python benchmarks/content_adaptation.py --zoo ")
    assert {"commit", "machine"} <= set(document)
    assert module.format_table(document) in _module("render_results").render_file(str(path))


# Finding 6: a --json naming another file was written over.
def test_seed_ensemble_refuses_to_write_over_a_file_it_did_not_write(tiny_run, upsampling_data, tmp_path, capsys,
                                                                     monkeypatch):
    module = _module("seed_ensemble")
    zoo = _zoo(upsampling_data, str(tmp_path / "zoo"))
    runs = [str(tmp_path / "seed0"), str(tmp_path / "seed1")]
    for run in runs:
        shutil.copytree(tiny_run, run)
    config = os.path.join(runs[1], "config.json")
    before = open(config).read()
    monkeypatch.setattr(module, "KerasPredictor", _never)
    line = _refused(module.main, ["--zoo", zoo, "--runs", *runs, "--size", "2", "--json", config], capsys)
    assert f"--json {config}: expected a result file of seed_ensemble" in line
    assert open(config).read() == before


def test_content_adaptation_refuses_an_open_set_points_file_of_the_same_zoo(tiny_run, upsampling_data, tmp_path,
                                                                           capsys, monkeypatch):
    module = _module("content_adaptation")
    zoo = _zoo(upsampling_data, str(tmp_path / "zoo"), train_val=True)
    path = tmp_path / "points.json"
    path.write_text(json.dumps(_legacy_points(zoo, {os.path.abspath(tiny_run): 0.5})))
    before = path.read_text()
    monkeypatch.setattr(module, "KerasPredictor", _never)
    line = _refused(module.main, ["--zoo", zoo, "--runs", tiny_run, "--json", str(path)], capsys)
    assert "expected a result file of content_adaptation" in line
    assert path.read_text() == before


def test_open_set_points_refuses_a_content_adaptation_file_in_one_line(tiny_run, upsampling_data, tmp_path,
                                                                      capsys, monkeypatch):
    # Finding 11: KeyError: 'settings'.
    module = _module("open_set_points")
    content = _module("content_adaptation")
    zoo = _zoo(upsampling_data, str(tmp_path / "zoo"), train_val=True)
    path = tmp_path / "content.json"
    runs = [{"run": os.path.abspath(tiny_run), **_content_figures(content, 0.5)}]
    path.write_text(json.dumps(content.document_of(zoo, benchmark_digest(zoo), runs)))
    before = path.read_text()
    monkeypatch.setattr(module, "run_features", _never)
    line = _refused(module.main, ["--zoo", zoo, "--runs", tiny_run, "--points", "2", "--json", str(path)], capsys)
    assert "expected a result file of open_set_points" in line
    assert path.read_text() == before


# Finding 8: the same run given twice counted twice.
@pytest.mark.parametrize("name,patched,extra", [("open_set_points", "run_features", ["--points", "2"]),
                                                ("content_adaptation", "KerasPredictor", []),
                                                ("seed_ensemble", "KerasPredictor", ["--size", "2"])])
def test_a_run_given_twice_is_refused(name, patched, extra, tiny_run, upsampling_data, tmp_path, capsys,
                                      monkeypatch):
    module = _module(name)
    zoo = _zoo(upsampling_data, str(tmp_path / "zoo"), train_val=True)
    link = str(tmp_path / "same")
    os.symlink(tiny_run, link)
    monkeypatch.setattr(module, patched, _never)
    line = _refused(module.main, ["--zoo", zoo, "--runs", tiny_run, link, *extra], capsys)
    assert f"--runs {link}: the same run as {tiny_run}, given twice" in line


# Finding 9: the digest of a missing folder was that of nothing, and seed_ensemble printed an empty table.
def test_benchmark_digest_refuses_a_missing_or_empty_folder(tmp_path):
    with pytest.raises(DataError, match="expected a benchmark folder"):
        benchmark_digest(str(tmp_path / "nozoo"))
    with pytest.raises(DataError, match="expected a benchmark folder"):
        benchmark_digest(str(tmp_path))


def test_seed_ensemble_refuses_a_missing_zoo(tiny_run, tmp_path, capsys, monkeypatch):
    module = _module("seed_ensemble")
    copy = str(tmp_path / "seed1")
    shutil.copytree(tiny_run, copy)
    monkeypatch.setattr(module, "KerasPredictor", _never)
    out = tmp_path / "se.json"
    zoo = str(tmp_path / "nozoo")
    line = _refused(module.main, ["--zoo", zoo, "--runs", tiny_run, copy, "--size", "2", "--json", str(out)], capsys)
    assert f"--zoo {zoo}:" in line and "no such file or folder" in line
    assert not out.exists()


# Finding 11: tracebacks for a folder that is not a run dir or a zoo without the lists a script needs.
@pytest.mark.parametrize("name,patched,extra", [("open_set_points", "run_features", ["--points", "2"]),
                                                ("content_adaptation", "KerasPredictor", []),
                                                ("seed_ensemble", "KerasPredictor", ["--size", "2"])])
def test_a_folder_that_is_not_a_run_is_refused_in_one_line(name, patched, extra, tiny_run, upsampling_data,
                                                            tmp_path, capsys, monkeypatch):
    module = _module(name)
    zoo = _zoo(upsampling_data, str(tmp_path / "zoo"), train_val=True)
    missing = str(tmp_path / "nonexistent")
    monkeypatch.setattr(module, patched, _never)
    line = _refused(module.main, ["--zoo", zoo, "--runs", tiny_run, missing, *extra], capsys)
    assert f"--runs {missing}: expected a run dir" in line and "no such file or folder" in line


def test_open_set_points_refuses_a_zoo_without_train_list(tiny_run, upsampling_data, tmp_path, capsys, monkeypatch):
    module = _module("open_set_points")
    zoo = _zoo(upsampling_data, str(tmp_path / "zoo"))  # no train.txt, val.txt
    monkeypatch.setattr(module, "KerasPredictor", _never)
    line = _refused(module.main, ["--zoo", zoo, "--runs", tiny_run, "--points", "2"], capsys)
    assert f"--zoo {zoo}: expected a benchmark folder with train.txt, val.txt" in line


# Finding 12 (and 6's own earlier file): seed_ensemble records its provenance and absolute run paths, and
# replaces a file it wrote before it recorded "script".
def test_seed_ensemble_records_provenance_and_absolute_runs(tiny_run, upsampling_data, tmp_path, capsys,
                                                            monkeypatch):
    module = _module("seed_ensemble")
    zoo = _zoo(upsampling_data, str(tmp_path / "zoo"))
    for name in ("seed0", "seed1"):
        shutil.copytree(tiny_run, str(tmp_path / name))
    path = tmp_path / "seed-ensemble-x.json"
    path.write_text(json.dumps({"zoo": zoo, "zoo_sha256": "ab", "runs": ["/old/seed0", "/old/seed1"], "size": 2,
                                "splits": {}}))  # the committed files' keys
    monkeypatch.chdir(tmp_path)
    assert module.main(["--zoo", "zoo", "--runs", "seed0", "seed1", "--size", "2", "--json", str(path)]) == 0
    document = json.loads(path.read_text())
    assert document["runs"] == [str(tmp_path / "seed0"), str(tmp_path / "seed1")]
    assert document["zoo"] == zoo and list(document["splits"]) == ["test", "cross_dataset"]
    assert document["script"] == "seed_ensemble"
    assert document["command"] == f"python benchmarks/seed_ensemble.py --zoo zoo --runs seed0 seed1 --size 2 --json {path}"
    assert {"commit", "machine"} <= set(document)
    assert module.format_table(document) in _module("render_results").render_file(str(path))


def test_the_committed_result_files_count_as_earlier_results_of_their_own_script_only():
    """Files written before "script" was recorded are recognised by their keys; a "command" names its script."""
    content = _module("content_adaptation")
    scripts = {"content-adaptation-": ("content_adaptation", content._legacy_content_adaptation),
               "open-set-points-": ("open_set_points", _module("open_set_points")._legacy_open_set_points),
               "seed-ensemble-": ("seed_ensemble", _module("seed_ensemble")._legacy_seed_ensemble)}
    results = os.path.join(BENCHMARKS, "results")
    seen = dict.fromkeys(scripts, 0)
    for name in sorted(os.listdir(results)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(results, name), encoding="utf-8") as f:
            document = json.load(f)
        for prefix, (script, legacy) in scripts.items():
            assert content.written_by(document, script, legacy) == name.startswith(prefix), (name, script)
            seen[prefix] += name.startswith(prefix)
    assert all(seen.values())
    assert content.written_by({"command": "python benchmarks/seed_ensemble.py --zoo z"}, "seed_ensemble", None)
    assert not content.written_by({"command": "python benchmarks/open_set_table.py --zoo z"}, "seed_ensemble", None)
