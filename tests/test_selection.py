"""Model-selection rules: which validated model becomes best.keras."""
import json
import math

import numpy as np
import pytest

from dnadet_tf.selection import SELECTION_RULES, average_weights, averaged_steps, is_better, pick

# A closed-set validation that saturates at step 200; cross-entropy keeps falling until 400.
RECORDS = [
    {"step": 100, "accuracy": 0.95, "macro_f1": 0.94, "nll": 0.30},
    {"step": 200, "accuracy": 1.00, "macro_f1": 1.00, "nll": 0.10},
    {"step": 300, "accuracy": 1.00, "macro_f1": 1.00, "nll": 0.05},
    {"step": 400, "accuracy": 1.00, "macro_f1": 1.00, "nll": 0.02},
    {"step": 500, "accuracy": 1.00, "macro_f1": 1.00, "nll": 0.04},
    {"step": 600, "accuracy": 0.99, "macro_f1": 0.99, "nll": 0.03},
]


@pytest.mark.parametrize("rule, step", [("first", 200), ("last", 500), ("nll", 400), ("final", 600)])
def test_each_rule_picks_its_step(rule, step):
    assert pick(RECORDS, rule) == step
    assert pick(list(reversed(RECORDS)), rule) == step  # order of the log lines does not matter


def test_last_rule_rounds_like_the_release():
    records = [{"step": 1, "accuracy": 0.91234, "nll": 1.0}, {"step": 2, "accuracy": 0.91226, "nll": 1.0}]
    assert pick(records, "last") == 2  # both round to 0.9123
    assert pick(records, "first") == 1


def test_first_validation_is_always_kept_and_bad_rule_is_named():
    for rule in SELECTION_RULES:
        assert is_better(rule, 0.0, math.inf, -math.inf, math.inf)
    with pytest.raises(ValueError, match="select"):
        is_better("best", 1.0, 0.0, 0.0, 1.0)
    assert pick([], "nll") is None


def test_averaged_steps_are_the_last_validations_in_step_order():
    assert averaged_steps(list(reversed(RECORDS)), 4) == [300, 400, 500, 600]
    assert averaged_steps(RECORDS[:2], 4) == [100, 200]  # fewer validations than asked: all of them
    with pytest.raises(ValueError, match="average_last"):
        averaged_steps(RECORDS, 0)


def test_average_weights_by_hand():
    members = [[np.array([1.0, 2.0], np.float32), np.array(7, np.int64)],
               [np.array([2.0, 4.0], np.float32), np.array(8, np.int64)],
               [np.array([6.0, 0.5], np.float32), np.array(9, np.int64)]]
    mean, counter = average_weights(members)
    assert mean.dtype == np.float32 and counter.dtype == np.int64
    np.testing.assert_array_equal(mean, np.array([3.0, 6.5 / 3], np.float32))
    assert counter == 9  # not a weight: the newest member's value
    with pytest.raises(ValueError, match="average"):
        average_weights([])


def _weights(run, path):
    """{weight path: array} of a run's .keras model."""
    return {w.path: w.numpy() for w in run.load_model(path).weights}


def test_rule_average_writes_the_mean_of_the_last_validated_models_and_resumes_exactly(upsampling_data, tmp_path,
                                                                                      capsys):
    from dnadet_tf.runs import RunDir
    from dnadet_tf.training import fit

    data, val = upsampling_data["train"], upsampling_data["val"]
    options = dict(preset="tiny", val=val, seed=1, select="average", average_last=3, val_every=10)
    straight = str(tmp_path / "straight")
    summary = fit(data, straight, steps=40, keep_validated=True, **options)
    assert summary["averaged_steps"] == [20, 30, 40]
    printed = capsys.readouterr().out
    assert "validation at step 10: " in printed and "(best.keras = mean of the last 1 validated model(s)" in printed
    assert "(best.keras = mean of the last 3 validated model(s), rule 'average')" in printed
    assert "best.keras by rule 'average' (mean of the models of steps 20, 30, 40): validation accuracy" in printed
    run = RunDir(straight)
    members = [_weights(run, run.validated_model_path(step)) for step in (20, 30, 40)]
    best = _weights(run, run.best_model_path)  # also holds the calibration fitted after training
    assert set(members[0]) <= set(best)
    for name in members[0]:
        np.testing.assert_array_equal(best[name], average_weights([[m[name]] for m in members])[0])
    assert any(not np.array_equal(members[1][n], members[2][n]) for n in members[0])  # different models
    with open(run.file("metrics.jsonl"), encoding="utf-8") as f:
        validations = [json.loads(line) for line in f if '"val"' in line]
    assert [v["step"] for v in validations] == [10, 20, 30, 40]

    # Without validation data the rule reads nothing it lacks: the same steps' models, the same best.keras.
    capsys.readouterr()
    blind = str(tmp_path / "blind")
    assert fit(data, blind, steps=40, **{**options, "val": None})["averaged_steps"] == [20, 30, 40]
    assert ("no validation data, best.keras by rule 'average' (mean of the models of steps 20, 30, 40), which needs "
            "none") in capsys.readouterr().out
    blind_best = _weights(RunDir(blind), RunDir(blind).best_model_path)
    for name in members[0]:
        np.testing.assert_array_equal(blind_best[name], best[name], err_msg=name)

    split = str(tmp_path / "split")
    fit(data, split, steps=20, **options)  # the step-20 model is in the average only through the checkpoint
    resumed = fit(data, split, steps=40, resume=True, val=val)
    assert resumed["averaged_steps"] == [20, 30, 40]
    assert resumed["best_metric"] == pytest.approx(summary["best_metric"], abs=1e-6)
    resumed_best = _weights(RunDir(split), RunDir(split).best_model_path)
    for name in members[0]:
        np.testing.assert_allclose(resumed_best[name], best[name], atol=1e-5, err_msg=name)


def test_presets_rules_and_a_bad_average_count_names_the_flag(upsampling_data, tmp_path, capsys):
    from dnadet_tf.cli.main import main
    from dnadet_tf.config import make_config

    assert (make_config("cpu").loop.select, make_config("cpu").loop.average_last) == ("average", 4)
    # From random weights the patch method (Base+PCL) keeps rule nll: the mean of its last models can be a broken
    # one. Base from random weights, any run from a step 1, and an explicit --select keep theirs.
    assert make_config("cpu", init="none").loop.select == "nll"
    assert make_config("cpu", init="none", mode="base").loop.select == "average"
    assert make_config("cpu", init="runs/step1").loop.select == "average"
    assert make_config("cpu", init="none", select="average").loop.select == "average"
    assert make_config("cpu", init="none", select="final").loop.select == "final"
    assert make_config("paper").loop.select == make_config("tiny").loop.select == "nll"
    bad = tmp_path / "bad"
    code = main(["fit", "--data", upsampling_data["train"], "--out", str(bad), "--preset", "tiny",
                 "--select", "average", "--average-last", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "dnadet-tf fit: error: --average-last: expected a positive integer, received 0."
    assert not bad.exists()


def test_a_run_that_stopped_early_resumed_trains_no_further(upsampling_data, tmp_path, capsys):
    # Interrupted after its early stop (say in the calibration at its end), a run resumed trained on past the stop
    # and replaced best.keras: the restored early-stopping state says it had stopped.
    from dnadet_tf.runs import RunDir
    from dnadet_tf.training import fit

    data, val = upsampling_data["train"], upsampling_data["val"]
    options = dict(preset="tiny", val=val, seed=1, select="average", average_last=3, val_every=10, patience=1,
                   learning_rate=0.02)
    run_dir = str(tmp_path / "stopped")
    first = fit(data, run_dir, steps=200, **options)
    assert first["stopped_early"] and first["end_step"] < 200
    run = RunDir(run_dir)
    before = _weights(run, run.best_model_path)
    with open(run.file("metrics.jsonl"), encoding="utf-8") as f:
        records = f.read()
    with open(run.file("calibration.json"), encoding="utf-8") as f:
        calibration = json.load(f)
    capsys.readouterr()
    again = fit(data, run_dir, steps=200, resume=True, val=val)
    assert f"stopped early at step {first['end_step']} before this resume; nothing to train." in capsys.readouterr().out
    assert again["stopped_early"] and again["end_step"] == first["end_step"]
    assert again["averaged_steps"] == first["averaged_steps"]
    with open(run.file("metrics.jsonl"), encoding="utf-8") as f:
        assert f.read() == records
    after = _weights(run, run.best_model_path)
    model_weights = [name for name in before if not name.startswith("calibration/")]  # numbered per process
    assert model_weights and set(model_weights) <= set(after)
    for name in model_weights:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    with open(run.file("calibration.json"), encoding="utf-8") as f:
        assert json.load(f) == calibration
