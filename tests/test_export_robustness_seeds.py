"""benchmarks/export_seeds.py and benchmarks/robustness_seeds.py: each run its own export and cache, reused only for
the same run, data and settings; bad or repeated arguments refused in one line; the provenance of every result."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from clirun import BENCHMARKS, benchmark_module

CLASSES = ["real", "nearest", "transposed"]


_module = benchmark_module


def _zoo(test_root, zoo, only=None):
    """A benchmark folder `zoo`: test.txt lists `test_root`'s images (of the class `only` when given), open_set.txt
    4 noise images named as an architecture that is not a class."""
    from dnadet_tf.data import find_images

    os.makedirs(os.path.join(zoo, "unknown"))
    lines = [f"{path}\t{CLASSES.index(os.path.basename(os.path.dirname(path)))}" for path in find_images(test_root)
             if only is None or os.path.basename(os.path.dirname(path)) == only]
    with open(os.path.join(zoo, "test.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(zoo, "classes.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    rng = np.random.default_rng(8)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(os.path.join(zoo, "unknown",
                                                                                             f"{i}.png"))
    with open(os.path.join(zoo, "open_set.txt"), "w") as f:
        f.write("".join(f"unknown/{i}.png\tnoisegan\n" for i in range(4)))
    return zoo


def _copy_run(tiny_run, path):
    shutil.copytree(tiny_run, path, ignore=shutil.ignore_patterns("robustness-seeds.json"))
    return str(path)


def _export_spy(monkeypatch):
    """The runs `export_run` is called for (a list), the export itself done."""
    from dnadet_tf.exports import export

    calls, real = [], export.export_run

    def spy(run, out, **kwargs):
        calls.append((os.path.realpath(run), kwargs["formats"]))
        return real(run, out, **kwargs)

    monkeypatch.setattr(export, "export_run", spy)
    return calls


def _refused(main, argv, capsys, phrase):
    """main(argv) exits with status 2 and one error line holding `phrase`, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and phrase in errors[0], err
    assert "Traceback" not in err


def test_export_seeds_gives_runs_of_one_folder_name_their_own_exports_and_reuses_them(
        tiny_run, upsampling_data, tmp_path, monkeypatch, capsys):
    module = _module("export_seeds")
    zoo = _zoo(upsampling_data["test"], str(tmp_path / "zoo"))
    for parent in ("a", "b"):
        _copy_run(tiny_run, tmp_path / parent / "seed0")
    monkeypatch.chdir(tmp_path)  # relative paths: the document records absolute ones
    calls = _export_spy(monkeypatch)
    argv = ["--zoo", "zoo", "--runs", "a/seed0", "b/seed0", "--out", "ex", "--formats", "float16", "--json",
            "export-seeds-t.json"]
    module.main(argv)
    document = json.loads((tmp_path / "export-seeds-t.json").read_text())
    exports = [run["export"] for run in document["runs"]]
    assert exports[0] != exports[1] and all(os.path.isabs(path) for path in exports)
    assert exports[0] == str(tmp_path / "ex" / "seed0" / "dnadet")  # the first keeps the run's folder name
    for run, export in zip(document["runs"], exports):
        assert os.path.isabs(run["run"])
        with open(os.path.join(export, "report.json"), encoding="utf-8") as f:
            assert os.path.realpath(json.load(f)["source_run"]) == os.path.realpath(run["run"])
    assert len(calls) == 2
    # Provenance, the zoo absolute.
    assert document["script"] == "export_seeds" and document["zoo"] == zoo
    assert document["command"].startswith("python benchmarks/export_seeds.py --zoo zoo --runs a/seed0 b/seed0")
    assert {"commit", "machine"} <= set(document)
    # A rerun, the runs in the other order, finds each run's own export again.
    module.main(["--zoo", "zoo", "--runs", "b/seed0", "a/seed0", "--out", "ex", "--formats", "float16",
                 "--json", "export-seeds-t.json"])
    assert len(calls) == 2
    again = json.loads((tmp_path / "export-seeds-t.json").read_text())
    assert [run["export"] for run in again["runs"]] == exports[::-1]
    assert "mean ± std over 2 runs" in _module("render_results").render_file(str(tmp_path / "export-seeds-t.json"))
    capsys.readouterr()


def test_export_seeds_exports_again_for_other_formats_another_zoo_or_a_newer_model(
        tiny_run, upsampling_data, tmp_path, monkeypatch, capsys):
    module = _module("export_seeds")
    zoo_a = _zoo(upsampling_data["test"], str(tmp_path / "zooA"))
    zoo_b = _zoo(upsampling_data["test"], str(tmp_path / "zooB"), only="transposed")
    run = _copy_run(tiny_run, tmp_path / "run")
    out, path = str(tmp_path / "ex"), str(tmp_path / "e.json")
    calls = _export_spy(monkeypatch)

    def measured(zoo, formats):
        module.main(["--zoo", zoo, "--runs", run, "--out", out, "--formats", *formats, "--json", path])
        document = json.loads(open(path, encoding="utf-8").read())
        with open(os.path.join(document["runs"][0]["export"], "report.json"), encoding="utf-8") as f:
            return document, json.load(f)

    measured(zoo_a, ["float16"])
    assert len(calls) == 1
    # Other formats: exported again, and the document holds only the requested ones.
    document, report = measured(zoo_a, ["dynamic"])
    assert len(calls) == 2 and "dynamic" in report["formats"]
    assert set(document["runs"][0]["parity"]) == {"keras", "dynamic"}
    assert set(document["runs"][0]["open_set"]) == {"keras", "dynamic"}
    # The same request: reused.
    measured(zoo_a, ["dynamic"])
    assert len(calls) == 2
    # Another zoo: its parity images are that zoo's test.txt.
    document, report = measured(zoo_b, ["dynamic"])
    assert len(calls) == 3
    assert os.path.realpath(report["eval"]["data"]) == os.path.realpath(os.path.join(zoo_b, "test.txt"))
    assert document["runs"][0]["eval_images"] == 12
    # A run retrained (its best.keras newer than the export): exported again.
    best = os.path.join(run, "best.keras")
    later = os.path.getmtime(best) + 3600
    os.utime(best, (later, later))
    measured(zoo_b, ["dynamic"])
    assert len(calls) == 4
    capsys.readouterr()


@pytest.mark.parametrize("case", ["run given twice", "no run dir", "zoo without open_set.txt",
                                  "json of another kind"])
def test_export_seeds_refuses_a_repeated_or_bad_argument_in_one_line_before_any_work(
        case, tiny_run, upsampling_data, tmp_path, monkeypatch, capsys):
    module = _module("export_seeds")
    zoo = _zoo(upsampling_data["test"], str(tmp_path / "zoo"))
    run = _copy_run(tiny_run, tmp_path / "run")
    calls = _export_spy(monkeypatch)
    common = ["--zoo", zoo, "--out", str(tmp_path / "ex"), "--formats", "float16"]
    config = os.path.join(run, "config.json")
    before = open(config, encoding="utf-8").read()
    if case == "run given twice":  # the same real path, however written
        _refused(module.main, common + ["--runs", run, os.path.join(run, ".")], capsys, "give each run once")
    elif case == "no run dir":
        _refused(module.main, common + ["--runs", run, str(tmp_path / "nonexistent")], capsys,
                 f"--runs: {tmp_path / 'nonexistent'}: expected a run dir")
    elif case == "zoo without open_set.txt":
        os.remove(os.path.join(zoo, "open_set.txt"))
        _refused(module.main, common + ["--runs", run], capsys, "--zoo: ")
    else:  # a --json that is not an earlier result of the script (here a run's config.json) is kept untouched
        _refused(module.main, common + ["--runs", run, "--json", config], capsys, "--json: ")
    assert open(config, encoding="utf-8").read() == before
    assert calls == []


def test_export_seeds_replaces_a_committed_style_result_file(tmp_path):
    """A result written before "script" was recorded counts as an earlier result (it may be replaced)."""
    module = _module("export_seeds")
    committed = sorted(f for f in os.listdir(os.path.join(BENCHMARKS, "results")) if f.startswith("export-seeds-"))
    assert committed and all(module.is_earlier_result(os.path.join(BENCHMARKS, "results", f)) for f in committed)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"script": "seed_ensemble", "zoo": "z", "zoo_sha256": "", "formats": [],
                                 "runs": [], "summary": {}}))
    assert not module.is_earlier_result(str(other))


def test_robustness_seeds_keys_its_cache_by_the_data_s_real_path_and_contents_and_the_model(
        tiny_run, upsampling_data, tmp_path, monkeypatch, capsys):
    module = _module("robustness_seeds")
    _zoo(upsampling_data["test"], str(tmp_path / "zooA"))
    _zoo(upsampling_data["test"], str(tmp_path / "zooB"), only="transposed")
    for folder, zoo in (("X", "zooA"), ("Y", "zooB")):
        (tmp_path / folder).mkdir()
        os.symlink(str(tmp_path / zoo), str(tmp_path / folder / "zoo"))
    run = _copy_run(tiny_run, tmp_path / "rrun")
    scored, real = [], module.robustness

    def spy(predictor, specs, **kwargs):
        scored.append(list(specs))
        return real(predictor, specs, **kwargs)

    monkeypatch.setattr(module, "robustness", spy)
    argv = ["--data", "zoo/test.txt", "--attacks", "jpeg", "--runs", "cfg", run, "--json", "robustness-t.json"]
    monkeypatch.chdir(tmp_path / "X")
    assert module.main(argv) == 0
    first = json.loads((tmp_path / "X" / "robustness-t.json").read_text())
    assert first["table"][0]["num_images"] == 36 and len(scored) == 1
    # The same words in another folder name other data: scored again, not X's rows.
    monkeypatch.chdir(tmp_path / "Y")
    assert module.main(argv) == 0
    second = json.loads((tmp_path / "Y" / "robustness-t.json").read_text())
    assert second["table"][0]["num_images"] == 12 and len(scored) == 2
    assert second["data"] == [str(tmp_path / "Y" / "zoo" / "test.txt")]
    assert second["runs"] == {"cfg": [run]} and second["script"] == "robustness_seeds"
    assert second["data_sha256"] != first["data_sha256"]
    assert second["command"].startswith("python benchmarks/robustness_seeds.py --data zoo/test.txt")
    assert {"commit", "machine"} <= set(second)
    # The same data again: the cache answers.
    assert module.main(argv) == 0
    assert len(scored) == 2
    # The list's contents changed under the same path: scored again.
    listed = tmp_path / "zooB" / "test.txt"
    listed.write_text("\n".join(listed.read_text().splitlines()[:6]) + "\n")
    assert module.main(argv) == 0
    assert len(scored) == 3 and json.loads((tmp_path / "Y" / "robustness-t.json").read_text())["table"][0]["num_images"] == 6
    # A retrained run (another best.keras): scored again.
    best = os.path.join(run, "best.keras")
    later = os.path.getmtime(best) + 3600
    os.utime(best, (later, later))
    assert module.main(argv) == 0
    assert len(scored) == 4
    assert "| cfg | closed-set |" in _module("render_results").render_robustness(str(tmp_path / "Y" / "robustness-t.json"))
    capsys.readouterr()


@pytest.mark.parametrize("case", ["run given twice", "data given twice", "name given twice", "no run dir",
                                  "no data", "unknown attack", "json of another kind"])
def test_robustness_seeds_refuses_a_repeated_or_bad_argument_in_one_line(
        case, tiny_run, upsampling_data, tmp_path, monkeypatch, capsys):
    module = _module("robustness_seeds")
    zoo = _zoo(upsampling_data["test"], str(tmp_path / "zoo"))
    data = os.path.join(zoo, "test.txt")
    run = _copy_run(tiny_run, tmp_path / "run")
    config = os.path.join(run, "config.json")
    before = open(config, encoding="utf-8").read()
    monkeypatch.setattr(module, "robustness", lambda *args, **kwargs: pytest.fail("scored"))
    argv, phrase = {
        "run given twice": (["--data", data, "--runs", "cfg", run, run + "/."], "give each run once"),
        "data given twice": (["--data", data, os.path.join(zoo, ".", "test.txt"), "--runs", "cfg", run],
                             "give each data path once"),
        "name given twice": (["--data", data, "--runs", "cfg", run, "--runs", "cfg", run], "given twice"),
        "no run dir": (["--data", data, "--runs", "cfg", str(tmp_path / "nonexistent")], "--runs cfg: "),
        "no data": (["--data", str(tmp_path / "nope.txt"), "--runs", "cfg", run], "--data: "),
        "unknown attack": (["--data", data, "--runs", "cfg", run, "--attacks", "jpg"], "--attacks: "),
        "json of another kind": (["--data", data, "--runs", "cfg", run, "--json", config], "--json: "),
    }[case]
    _refused(module.main, ["--attacks", "jpeg", *argv], capsys, phrase)
    assert open(config, encoding="utf-8").read() == before


def test_robustness_seeds_records_absolute_paths_digests_and_provenance(
        tiny_run, upsampling_data, tmp_path, monkeypatch, capsys):
    module = _module("robustness_seeds")
    _zoo(upsampling_data["test"], str(tmp_path / "zoo"), only="real")
    run = _copy_run(tiny_run, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    assert module.main(["--data", "zoo/test.txt", "--attacks", "jpeg", "--runs", "cfg", "run", "--json",
                        "robustness-t.json"]) == 0
    document = json.loads((tmp_path / "robustness-t.json").read_text())
    assert document["data"] == [str(tmp_path / "zoo" / "test.txt")] and document["runs"] == {"cfg": [run]}
    assert len(document["data_sha256"]) == 1 and document["script"] == "robustness_seeds"
    assert document["command"] == ("python benchmarks/robustness_seeds.py --data zoo/test.txt --attacks jpeg --runs "
                                   "cfg run --json robustness-t.json")
    assert {"commit", "machine"} <= set(document)
    # A file of this script is an earlier result: a rerun replaces it.
    assert module.main(["--data", "zoo/test.txt", "--attacks", "jpeg", "--runs", "cfg", "run", "--json",
                        "robustness-t.json"]) == 0
    capsys.readouterr()


def test_robustness_seeds_takes_the_committed_results_for_earlier_ones():
    module = _module("robustness_seeds")
    committed = [f for f in os.listdir(os.path.join(BENCHMARKS, "results")) if f.startswith("robustness-")]
    assert committed and all(module.is_earlier_result(os.path.join(BENCHMARKS, "results", f)) for f in committed)
