"""The benchmark scripts' argument checks: a path given twice (by real path) refused through one helper
(benchmarks/arguments.py) with each script's own line; validation_trajectory.py refuses a run given twice and an
--average count above a run's validated models; robustness_seeds.py refuses a run in two configurations. Every
refusal is one line, exit status 2, before any work (stub run dirs: nothing is trained or scored)."""
import argparse
import json
import os

import pytest

from clirun import benchmark_module


def _stub_run(path, validated_steps=()):
    """A folder that passes for a run dir before any work: config.json, an (empty) best.keras and, with
    `validated_steps`, RUN/validated/ and their "val" lines in metrics.jsonl."""
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({}, f)
    open(os.path.join(path, "best.keras"), "wb").close()
    if validated_steps:
        os.makedirs(os.path.join(path, "validated"))
        with open(os.path.join(path, "metrics.jsonl"), "w") as f:
            f.write("".join(json.dumps({"kind": "val", "step": step, "accuracy": 0.5}) + "\n"
                            for step in validated_steps))
    return str(path)


def _zoo(path):
    """A benchmark folder with classes.txt and every list the scripts ask for, each listing one 8 px image."""
    from PIL import Image

    os.makedirs(path)
    Image.new("RGB", (8, 8)).save(os.path.join(path, "x.png"))
    for name in ("classes", "train", "val", "test", "cross_seed", "cross_loss", "cross_finetune", "cross_dataset",
                 "open_set"):
        with open(os.path.join(path, f"{name}.txt"), "w") as f:
            f.write("a\nb\n" if name == "classes" else "x.png\t0\n")
    return str(path)


def _refused(main, argv, capsys):
    """main(argv) exits with status 2 and exactly one error line, no traceback: that line, after 'error: '."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0].split("error: ", 1)[1]


def _never(*args, **kwargs):
    pytest.fail("work began before the arguments were checked")


# ----------------------------------------------------------------------------------------------- the helper
def test_refuse_given_twice_refuses_any_spelling_of_one_real_path(tmp_path, capsys):
    arguments = benchmark_module("arguments")
    first = _stub_run(tmp_path / "run")
    os.symlink(first, str(tmp_path / "link"))
    other = _stub_run(tmp_path / "other")
    parser = argparse.ArgumentParser(prog="x")
    said = lambda path, earlier, real: f"--runs: {path} is {earlier} again (real path {real})"  # noqa: E731
    assert arguments.refuse_given_twice(parser, [first, other], said) == {
        os.path.realpath(first): first, os.path.realpath(other): other}
    for again in (first, first + "/.", first + "/", str(tmp_path / "other" / ".." / "run"), str(tmp_path / "link")):
        with pytest.raises(SystemExit) as raised:
            arguments.refuse_given_twice(parser, [first, other, again], said)
        assert raised.value.code == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line == f"x: error: --runs: {again} is {first} again (real path {os.path.realpath(first)})"


def test_each_script_keeps_its_own_given_twice_line(tmp_path, capsys, monkeypatch):
    """The scripts' lines as they were before the helper (their tests check them)."""
    run = _stub_run(tmp_path / "run")
    link = str(tmp_path / "link")
    os.symlink(run, link)
    real = os.path.realpath(run)
    zoo = _zoo(tmp_path / "zoo")
    data = os.path.join(zoo, "test.txt")
    for name, patched, extra in (("content_adaptation", "KerasPredictor", []),
                                 ("seed_ensemble", "KerasPredictor", ["--size", "2"]),
                                 ("open_set_points", "run_features", ["--points", "2"])):
        module = benchmark_module(name)
        monkeypatch.setattr(module, patched, _never)
        assert _refused(module.main, ["--zoo", zoo, "--runs", run, link, *extra], capsys) == (
            f"--runs {link}: the same run as {run}, given twice; each run counts once.")
    module = benchmark_module("export_seeds")
    assert _refused(module.main, ["--zoo", zoo, "--out", str(tmp_path / "ex"), "--runs", run, link], capsys) == (
        f"--runs: {link} is {run} again (real path {real}); give each run once.")
    module = benchmark_module("robustness_seeds")
    monkeypatch.setattr(module, "robustness", _never)
    dotted = os.path.join(zoo, ".", "test.txt")
    assert _refused(module.main, ["--data", data, dotted, "--runs", "cfg", run], capsys) == (
        f"--data: {dotted} is {data} again (real path {os.path.realpath(data)}); give each data path once.")
    assert _refused(module.main, ["--data", data, "--runs", "cfg", run, link], capsys) == (
        f"--runs cfg: {link} is {run} again (real path {real}); give each run once.")
    module = benchmark_module("step1_seeds")
    ablation = str(tmp_path / "ablation.json")
    with open(ablation, "w") as f:
        json.dump({"variants": [], "seeds": []}, f)
    os.symlink(ablation, str(tmp_path / "again.json"))
    again = str(tmp_path / "again.json")
    assert _refused(module.main, [ablation, again], capsys) == (
        f"{again}: given twice (as {ablation} and {again}); expected each step-1 run's file once.")


# ----------------------------------------------------------------------------------- validation_trajectory.py
@pytest.mark.parametrize("spelling", ["symlink", "dot", "trailing slash"])
def test_validation_trajectory_refuses_a_run_given_twice(spelling, tmp_path, capsys, monkeypatch):
    """Lead 1: the same run under two spellings was scored twice and counted as two runs in every mean ± std."""
    module = benchmark_module("validation_trajectory")
    monkeypatch.setattr(module, "evaluate_validated", _never)
    run = _stub_run(tmp_path / "run", validated_steps=(20, 40))
    again = {"dot": os.path.join(run, "."), "trailing slash": run + "/"}.get(spelling)
    if spelling == "symlink":
        again = str(tmp_path / "link")
        os.symlink(run, again)
    line = _refused(module.main, [run, again, "--zoo", _zoo(tmp_path / "zoo"), "--average", "2"], capsys)
    assert line == (f"{again}: the same run as {run} (real path {os.path.realpath(run)}), given twice; "
                    f"give each run once.")
    assert not os.path.exists(os.path.join(run, "evaluation"))


def test_validation_trajectory_refuses_an_average_of_more_models_than_a_run_validated(tmp_path, capsys,
                                                                                       monkeypatch):
    """Lead 2: `--average 3` of a run with 2 validated models averaged those 2 under the name 'average of last 3';
    the default counts (3 4 5) too."""
    module = benchmark_module("validation_trajectory")
    monkeypatch.setattr(module, "evaluate_validated", _never)
    zoo = _zoo(tmp_path / "zoo")
    many = _stub_run(tmp_path / "many", validated_steps=(20, 40, 60))
    few = _stub_run(tmp_path / "few", validated_steps=(20, 40))
    for argv in ([few, "--zoo", zoo, "--average", "3"], [many, few, "--zoo", zoo, "--average", "2", "3"],
                 [few, "--zoo", zoo]):
        line = _refused(module.main, argv, capsys)
        assert line == (f"--average 3: {few} has 2 validated models, fewer than 3 (its 'average of last 3' would "
                        f"average 2); give counts of at most 2 for it.")
    assert not os.path.exists(os.path.join(few, "evaluation"))


def test_validation_trajectory_run_trajectory_refuses_too_few_validated_models(tmp_path, monkeypatch):
    """The function, called directly, names no average of more models than the run has either."""
    module = benchmark_module("validation_trajectory")
    monkeypatch.setattr(module, "evaluate_validated", lambda *args, **kwargs: [])
    monkeypatch.setattr(module, "_accuracies", lambda rows: {})
    few = _stub_run(tmp_path / "few", validated_steps=(20, 40))
    assert list(module.run_trajectory(few, "zoo", [2], None, "digest")["models"]) == [
        "step 20", "step 40", "average of last 2"]
    with pytest.raises(ValueError, match="has 2 validated models, fewer than 3"):
        module.run_trajectory(few, "zoo", [2, 3], None, "digest")


# --------------------------------------------------------------------------------------- robustness_seeds.py
@pytest.mark.parametrize("spelling", ["same", "symlink"])
def test_robustness_seeds_refuses_a_run_in_two_configurations(spelling, tmp_path, capsys, monkeypatch):
    """Lead 4: one run under two configuration names made two rows that read as two trainings, sharing its
    figures (identical rows, or means that share a run)."""
    module = benchmark_module("robustness_seeds")
    monkeypatch.setattr(module, "robustness", _never)
    data = os.path.join(_zoo(tmp_path / "zoo"), "test.txt")
    shared = _stub_run(tmp_path / "shared")
    other = _stub_run(tmp_path / "other")
    again = shared
    if spelling == "symlink":
        again = str(tmp_path / "link")
        os.symlink(shared, again)
    line = _refused(module.main, ["--data", data, "--runs", "a", other, shared, "--runs", "b", again], capsys)
    assert line == (f"--runs b: {again} is {shared} of configuration 'a' again (real path "
                    f"{os.path.realpath(shared)}); a run belongs to one configuration.")
