"""The scripts that turn result JSON into the README's tables (benchmarks/)."""
import glob
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from dnadet_tf.pretraining import FAMILY_NAMES, MIN_PHOTOS
from dnadet_tf.transforms import TRANSFORM_NAMES
from synthetic import make_photos
from clirun import BENCHMARKS, benchmark_module

SPLITS = ("closed-set", "cross-seed", "cross-loss", "cross-finetune", "cross-dataset")


_module = benchmark_module


def _ablation(pretrained, cross_loss):
    """An ablation.json with DNA-Det's cross-loss accuracies `cross_loss` (one per step-2 seed), 1.0 elsewhere."""
    summary = {split: {"accuracy": {"values": list(cross_loss) if split == "cross-loss" else [1.0] * len(cross_loss)}}
               for split in SPLITS}
    return {"pretrained": pretrained, "seeds": list(range(len(cross_loss))),
            "variants": [{"variant": "Base", "summary": summary}, {"variant": "DNA-Det", "summary": summary}]}


def test_step1_seeds_pools_and_separates_the_step1_spread(tmp_path, capsys):
    step1_seeds = _module("step1_seeds")
    combined = step1_seeds.combine([_ablation("a", [0.8, 1.0, 0.9]), _ablation("b", [0.5, 0.5, 0.5])],
                                   ["a", "b"], "DNA-Det")
    assert combined["runs"][0]["splits"]["cross-loss"]["mean"] == pytest.approx(0.9)
    assert combined["runs"][0]["splits"]["cross-loss"]["std"] == pytest.approx((0.02 / 3) ** 0.5)
    pooled = combined["pooled"]["cross-loss"]
    assert pooled["count"] == 6 and pooled["mean"] == pytest.approx(0.7)
    # population std of 0.8, 1.0, 0.9, 0.5, 0.5, 0.5 around 0.7: squares 0.01, 0.09, 0.04, 0.04 x 3 -> 0.26 / 6
    assert pooled["std"] == pytest.approx((0.26 / 6) ** 0.5)
    between = combined["between_step1"]["cross-loss"]
    assert between["mean"] == pytest.approx(0.7) and between["std"] == pytest.approx(0.2)
    table = step1_seeds.format_table(combined)
    assert "| a (3 step-2 seeds) | 100.0 ± 0.0 | 100.0 ± 0.0 | 90.0 ± 8.2 |" in table
    assert "| between step-1 runs (2 means) | 100.0 ± 0.0 | 100.0 ± 0.0 | 70.0 ± 20.0 |" in table

    files = []
    for name, cross_loss in (("a", [0.8, 1.0, 0.9]), ("b", [0.5, 0.5, 0.5])):
        files.append(str(tmp_path / f"{name}.json"))
        with open(files[-1], "w", encoding="utf-8") as f:
            json.dump(_ablation(name, cross_loss), f)
    out = str(tmp_path / "step1-seeds-test.json")
    assert step1_seeds.main(files + ["--json", out]) == 0
    with open(out, encoding="utf-8") as f:
        assert json.load(f)["pooled"]["cross-loss"]["mean"] == pytest.approx(0.7)
    rendered = _module("render_results").render_step1_seeds(out)
    assert rendered.startswith("### step1-seeds-test.json") and "| pooled (6 runs) |" in rendered
    with pytest.raises(SystemExit, match="expected one of Base, DNA-Det, received 'Base\\+PT'"):
        step1_seeds.main(files + ["--variant", "Base+PT"])
    with pytest.raises(SystemExit, match="--select: expected a rule the runs compared .*received 'average'"):
        step1_seeds.main(files + ["--select", "average"])


def test_step1_seeds_takes_the_model_a_selection_rule_keeps():
    step1_seeds = _module("step1_seeds")
    documents = [_ablation("a", [0.8, 1.0, 0.9]), _ablation("b", [0.5, 0.5, 0.5])]
    for document in documents:
        for entry in document["variants"]:
            entry["select"] = {"average": {split: {"accuracy": {"values": [0.25] * 3}} for split in SPLITS}}
    combined = step1_seeds.combine(documents, ["a", "b"], "DNA-Det", select="average")
    assert combined["select"] == "average"
    assert combined["pooled"]["cross-loss"]["mean"] == pytest.approx(0.25)
    assert "| DNA-Det (rule `average`), step 1 |" in step1_seeds.format_table(combined)


def test_cross_family_errors_list_only_errors_across_families_most_frequent_first():
    module = _module("pretrain_families")
    jpeg_30, jpeg_33, double_first, noise_first = 0, 1, 24, 156
    truth = np.array([double_first] * 3 + [jpeg_30] * 2 + [jpeg_33] * 2 + [noise_first])
    # double -> jpeg_30 twice, double -> itself once; jpeg_30 -> jpeg_33 (same family: not listed);
    # jpeg_33 -> double once; noise right.
    predicted = np.array([jpeg_30, jpeg_30, double_first, jpeg_33, jpeg_30, double_first, jpeg_33, noise_first])
    errors = module.cross_family_errors(truth, predicted, top=5)
    assert errors == [
        {"true": TRANSFORM_NAMES[double_first], "predicted": "jpeg_q30", "count": 2, "of": 3},
        {"true": "jpeg_q33", "predicted": TRANSFORM_NAMES[double_first], "count": 1, "of": 2},
    ]
    assert module.cross_family_errors(truth, predicted, top=1) == errors[:1]


def test_most_probable_family_sums_each_familys_probabilities():
    module = _module("pretrain_families")
    probabilities = np.zeros((2, 170))
    # sample 0: jpeg_q30 is the single most probable transformation (0.3), but the three double JPEGs
    # together (0.6) outweigh the JPEG family (0.4)
    probabilities[0, [0, 1]] = [0.3, 0.1]
    probabilities[0, [24, 25, 26]] = 0.2
    probabilities[1, 156] = 1.0  # noise, the sixth family
    assert module.most_probable_family(probabilities).tolist() == [1, 5]
    assert probabilities[0].argmax() == 0


def _family_figures(run, accuracy, family_summed, jpeg_recall):
    recall = {name: 1.0 for name in FAMILY_NAMES}
    recall["jpeg"] = jpeg_recall
    return {"run": run, "samples": 1700, "held_out_photos": 518, "accuracy": accuracy, "family_accuracy": 0.8,
            "family_accuracy_summed": family_summed, "family_recall": recall, "confusion": [[0] * 6] * 6}


def test_step1_families_over_several_runs_give_each_run_and_the_mean_and_std(tmp_path):
    module = _module("pretrain_families")
    runs = [_family_figures("runs/s0", 0.6, 0.9, 0.4), _family_figures("runs/s1/", 0.7, 0.92, 0.6)]
    summary = module.across_runs(runs)
    assert summary["accuracy"] == {"values": [0.6, 0.7], "mean": pytest.approx(0.65), "std": pytest.approx(0.05)}
    assert summary["family_accuracy_summed"]["mean"] == pytest.approx(0.91)
    assert summary["recall_jpeg"]["std"] == pytest.approx(0.1) and summary["recall_resample"]["std"] == 0.0
    path = tmp_path / "pretrain-families-two.json"
    path.write_text(json.dumps({"runs": runs, "summary": summary}))
    lines = _module("render_results").render_pretrain_families(str(path)).splitlines()
    assert "| s0 | 60.0 | 80.0 | 90.0 | 40.0 |" in "\n".join(lines)
    assert any(line.startswith("| s1 | 70.0 | 80.0 | 92.0 | 60.0 |") for line in lines)
    assert any(line.startswith("| mean ± std of 2 | 65.0 ± 5.0 | 80.0 ± 0.0 | 91.0 ± 1.0 | 50.0 ± 10.0 |")
               for line in lines)
    # a run measured before the most probable family was: its cell is "-"
    older = dict(runs[0])
    del older["family_accuracy_summed"]
    path.write_text(json.dumps(older))
    assert "| s0 | 60.0 | 80.0 | - | 40.0 |" in _module("render_results").render_pretrain_families(str(path))


def _trajectory(label, cross_seed_by_model):
    """A run of validation_trajectory.py: model name -> its cross-seed accuracy, 1.0 on the other splits."""
    return {"label": label, "models": {name: {"steps": [], "accuracy": {s: (v if s == "cross-seed" else 1.0)
                                                                        for s in SPLITS}}
                                       for name, v in cross_seed_by_model.items()}}


def test_validation_trajectory_summarizes_each_model_over_the_runs(tmp_path):
    module = _module("validation_trajectory")
    runs = [_trajectory("a", {"step 100": 0.0, "step 200": 1.0, "average of last 2": 0.75}),
            _trajectory("b", {"step 100": 1.0, "step 200": 0.5, "average of last 2": 0.85})]
    summary = module.summarize(runs)
    assert list(summary) == ["step 100", "step 200", "average of last 2"]
    assert summary["step 100"]["cross-seed"]["mean"] == pytest.approx(0.5)
    assert summary["step 100"]["cross-seed"]["std"] == pytest.approx(0.5)
    assert summary["average of last 2"]["cross-seed"]["std"] == pytest.approx(0.05)
    # mean of the four cross-tests: (0.8 + 1 + 1 + 1) / 4
    assert summary["average of last 2"]["cross_mean"] == pytest.approx(0.95)
    tables = module.format_tables({"runs": runs, "summary": summary})
    assert "| a | 0/100/100/100 | 100/100/100/100 | 75/100/100/100 |" in tables
    assert "| average of last 2 | 100.0 ± 0.0 | 80.0 ± 5.0 | 100.0 ± 0.0 |" in tables
    out = tmp_path / "validation-trajectory-test.json"
    out.write_text(json.dumps({"runs": runs, "summary": summary}))
    assert "| step 200 |" in _module("render_results").render_file(str(out))
    with pytest.raises(SystemExit):
        module.main([str(tmp_path), "--zoo", str(tmp_path)])  # no RUN/validated/: a usage error


def test_speed_table_gives_realized_against_the_median_step_and_fed_over_alone(tmp_path):
    """`train_throughput.py --json` rows -> the speed table of docs/results.md; a run made before those two
    figures existed shows '-' in their columns instead of failing."""
    row = {"preset": "cpu", "precision": "mixed_bfloat16", "width": 0.25, "patches_per_step": 320,
           "step_patches_per_s": 2000.0, "step_gflops": 200.0, "ceiling_fraction": 0.5,
           "step_median_patches_per_s": 1600.0, "fed_over_alone": 0.875,
           "pipeline_patches_per_s": 9000.0, "realized_patches_per_s": 1800.0, "realized_over_step": 0.9,
           "realized_over_median_step": 1.125, "realized_over_median_step_around": 0.95}
    older = {key: value for key, value in row.items()
             if key not in ("step_median_patches_per_s", "fed_over_alone", "realized_over_median_step",
                            "realized_over_median_step_around")}
    document = {"machine": {"cpu_count": 2, "cpu_model": "test", "tensorflow": "2"},
                "ceiling": {"float32_gflops": 400.0, "bfloat16_gflops": 800.0, "batch": 320},
                "presets": {"cpu": {"mixed_bfloat16": row}, "paper": {"mixed_bfloat16": dict(older, preset="paper")}},
                "peak_resident_gib": 1.0, "seconds": 60.0}
    path = tmp_path / "train-throughput-test.json"
    path.write_text(json.dumps(document))
    lines = _module("render_results").render_speed(str(path)).splitlines()
    header = next(line for line in lines if line.startswith("| preset"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    cells = {name: [cell.strip() for cell in line.strip("|").split("|")]
             for name in ("cpu", "paper") for line in lines if line.startswith(f"| {name} |")}
    assert cells["cpu"][columns.index("realized / step")] == "90 %"
    assert cells["cpu"][columns.index("realized / median step")] == "112 %"
    assert cells["cpu"][columns.index("fed / alone")] == "88 %"
    assert cells["cpu"][columns.index("realized / median step before and after")] == "95 %"
    assert cells["paper"][columns.index("realized / median step before and after")] == "-"
    assert cells["paper"][columns.index("realized / median step")] == "-"
    assert cells["paper"][columns.index("fed / alone")] == "-"


def _robustness_rows(none, combo):
    return [{"name": "test", "data": "ZOO/test.txt", "num_images": 4, "skipped_files": 0,
             "accuracy": {"combo": combo, "none": none}, "macro_f1": {"combo": combo, "none": none}}]


def test_robustness_seeds_averages_runs_and_reuses_each_run_s_rows(tmp_path, capsys):
    module = _module("robustness_seeds")
    data = tmp_path / "ZOO" / "test.txt"
    data.parent.mkdir()
    data.write_text("a.png\t0\n")
    runs = []
    for seed, (none, combo) in enumerate([(1.0, 0.5), (0.5, 0.25)]):
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        (run / "config.json").write_text("{}")  # a run dir without best.keras: no model to score
        # Cached rows for exactly these data (real path and contents), attacks, seed and model: no model is loaded.
        key = {"data": [os.path.realpath(data)], "data_sha256": [module.data_digest(str(data))], "attacks": ["combo"],
               "seed": 0, "model": module.model_identity(str(run))}
        (run / module.CACHE_NAME).write_text(json.dumps({"key": key, "rows": _robustness_rows(none, combo)}))
        runs.append(str(run))
    out = tmp_path / "table.json"
    assert module.main(["--data", str(data), "--attacks", "combo", "--runs", "plain", *runs,
                        "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| training | data | no attack | combination |" in printed  # no attack first, whatever the cache's order
    assert "| plain | test | 75.0 ± 25.0 | 37.5 ± 12.5 |" in printed
    document = json.loads(out.read_text())
    assert document["table"][0]["columns"]["combo"]["values"] == [0.5, 0.25]
    # Another attack seed does not reuse the cache: the run dir has no model to score (one line, exit status 2).
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--data", str(data), "--attacks", "combo", "--seed", "1", "--runs", "plain", runs[0]])
    assert exit_info.value.code == 2 and "best.keras" in capsys.readouterr().err


def test_step1_learning_curve_averages_the_validations_of_each_1000_steps(tmp_path):
    validations = [{"step": step, "accuracy": step / 10000, "family_accuracy": 0.5} for step in range(100, 2100, 100)]
    validations[-1] = {"step": 2000, "accuracy": 0.2}  # a run of an older version, without family accuracy
    path = tmp_path / "pretrain-demo-photos-x.json"
    path.write_text(json.dumps({"command": "dnadet-tf pretrain ...", "validation": validations}))
    render = _module("render_results")
    lines = render.render_pretrain_validations(str(path)).splitlines()
    assert "| mean of the validations in steps | 1-1000 | 1001-2000 |" in lines
    assert "| 170-way accuracy % | 5.5 | 15.5 |" in lines  # steps 100..1000 and 1100..2000, divided by 100
    assert "| family accuracy % | 50.0 | - |" in lines
    assert render.main([str(tmp_path / "unknown.json")]) == 2


def _events(path, stamps):
    """A TensorBoard event file with one scalar per (step, wall time)."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for step, wall in stamps:
            summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag="train/loss", simple_value=1.0)])
            writer.write(tf.compat.v1.Event(wall_time=wall, step=step, summary=summary).SerializeToString())


def test_step1_validations_writes_each_validation_with_training_seconds_across_sessions(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "tensorboard").mkdir(parents=True)
    config = {"data": "photos", "loop": {"select": "nll", "metric": "macro_f1", "average_last": 4},
              "runtime": {"precision": "mixed_bfloat16", "seed": 0}}
    (run / "config.json").write_text(json.dumps(config))
    lines = [{"kind": "train", "step": 10, "loss": 5.0},
             {"kind": "val", "step": 100, "accuracy": 0.1, "family_accuracy": 0.3, "macro_f1": 0.05, "nll": 4.0,
              "num_images": 340},
             {"kind": "val", "step": 200, "accuracy": 0.2, "family_accuracy": 0.4, "macro_f1": 0.1, "nll": 3.0},
             {"kind": "val", "step": 300, "accuracy": 0.3, "family_accuracy": 0.5, "macro_f1": 0.2, "nll": 2.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    # session 1 from wall time 1000 to 1100 (steps 10-200), resumed at 5000: its 40 s follow the first 100
    _events(run / "tensorboard" / "events.out.tfevents.1000.a.v2", [(10, 1000.0), (100, 1050.0), (200, 1100.0)])
    _events(run / "tensorboard" / "events.out.tfevents.5000.a.v2", [(210, 5000.0), (300, 5040.0)])
    out = tmp_path / "curve.json"
    step1_validations = _module("step1_validations")
    step1_validations.main([str(run), "--command", "dnadet-tf pretrain --photos P --out R", "--json", str(out)])
    document = json.loads(out.read_text())
    assert [(v["step"], v["seconds"]) for v in document["validation"]] == [(100, 50), (200, 100), (300, 140)]
    assert document["validation"][0] == {"step": 100, "seconds": 50, "accuracy": 0.1, "family_accuracy": 0.3,
                                         "macro_f1": 0.05, "nll": 4.0}
    assert document["command"] == "dnadet-tf pretrain --photos P --out R" and document["config"] == config
    assert document["selected_by"] == "rule nll: best validation macro_f1, ties by the lower validation cross-entropy"
    assert "3 validations up to step 300 (140 s)" in capsys.readouterr().out
    # the file renders as the learning curve in docs/results.md
    named = tmp_path / "pretrain-demo-photos-curve.json"
    named.write_text(out.read_text())
    rendered = _module("render_results").render_pretrain_validations(str(named)).splitlines()
    assert "| mean of the validations in steps | 1-300 |" in rendered and "| 170-way accuracy % | 20.0 |" in rendered
    (run / "metrics.jsonl").write_text(json.dumps(lines[0]) + "\n")
    with pytest.raises(SystemExit, match="expected a run dir whose metrics.jsonl has validation lines"):
        step1_validations.main([str(run), "--command", "c", "--json", str(out)])


def test_double_jpeg_alike_gives_the_distance_of_each_error_pair_and_of_neighbouring_qualities(tmp_path, capsys):
    photos = make_photos(str(tmp_path / "photos"), MIN_PHOTOS)
    families = tmp_path / "families.json"
    families.write_text(json.dumps({"cross_family_errors": [
        {"true": "jpeg_q36", "predicted": "double_jpeg_q36_q36", "count": 3, "of": 10},
        {"true": "jpeg_q36", "predicted": "gaussian_blur_k3", "count": 1, "of": 10}]}))  # not JPEG: left out
    out = tmp_path / "alike.json"
    script = _module("double_jpeg_alike")
    assert script.main(["--photos", str(photos), "--crops", "2", "--resize2", "128", "--errors", str(families),
                        "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["resize"] == "128 -> 128" and len(figures["rows"]) == 24 and len(figures["nearest_qualities"]) == 24
    same_quality = next(row for row in figures["rows"] if row["transformation"] == "double_jpeg_q36_q36")
    # compressing again at one quality: the same distance to "both" single JPEGs, and well below the
    # distance between any two qualities
    assert same_quality["rms_to_jpeg_first"] == same_quality["rms_to_jpeg_second"]
    assert same_quality["rms_to_jpeg_first"] < min(row["rms"] for row in figures["nearest_qualities"])
    q30 = next(row for row in figures["nearest_qualities"] if row["transformation"] == "jpeg_q30")
    assert q30["nearest_other_quality"] != "jpeg_q30" and q30["rms"] > 0
    pairs = [(e["true"], e["predicted"], e["count"]) for e in figures["errors"]]
    assert pairs == [("jpeg_q36", "double_jpeg_q36_q36", 3)]
    assert figures["errors"][0]["rms"] == pytest.approx(same_quality["rms_to_jpeg_first"])
    assert "error jpeg_q36 -> double_jpeg_q36_q36 (3 of 10): RMS" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script.main(["--photos", str(photos), "--crops", "0"])
    assert "--crops: expected a positive number of crops, received 0." in capsys.readouterr().err


def test_jpeg_ghost_curve_dips_at_the_last_quality_and_the_family_figure_is_recomputed_by_hand():
    script = _module("jpeg_ghost")
    rng = np.random.default_rng(3)
    photo = np.asarray(Image.fromarray(rng.uniform(0, 255, (16, 16, 3)).astype(np.uint8)).resize((128, 128)))
    once = script.recompressed(photo, 60)
    curve = script.ghost_curve(once)
    # compressing a JPEG again at its own quality changes it least (the ghost of the last compression)
    assert curve.shape == (24,) and int(np.argmin(curve)) == list(script.JPEG_QUALITIES).index(60)
    # families: jpeg, double_jpeg, gaussian_blur, median_blur, resample, gaussian_noise (rows true, columns predicted)
    confusion = np.diag([4, 6, 10, 10, 10, 10]).tolist()
    confusion[0][1], confusion[1][0], confusion[0][4] = 5, 3, 1  # 18 JPEG-family answers inside the two families
    families = {"confusion": confusion, "family_accuracy": 50 / 59}
    # 40 right outside the JPEG families, plus 0.75 of the 18 inside them
    assert script.family_accuracy_with(families, 0.75) == pytest.approx((40 + 13.5) / 59)


def test_jpeg_ghost_scores_held_out_crops_of_every_jpeg_class(tmp_path, capsys):
    photos = make_photos(str(tmp_path / "photos"), MIN_PHOTOS)
    out = tmp_path / "ghost.json"
    script = _module("jpeg_ghost")
    assert script.main(["--photos", photos, "--train-per-class", "2", "--test-per-class", "1",
                        "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["train_samples"] == 96 and figures["test_samples"] == 48
    assert list(figures["double_recall"]) == [name for name in TRANSFORM_NAMES if name.startswith("double_jpeg")]
    assert 0.0 <= figures["single_double_accuracy"] <= 1.0 and 0.0 <= figures["accuracy_48"] <= 1.0
    assert "48-way accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script.main(["--photos", photos, "--test-per-class", "0"])
    assert "--test-per-class: expected a positive number of crops, received 0." in capsys.readouterr().err


class _TileMeanPredictor:
    """Answers class 1 for a tile whose mean pixel is positive, class 0 otherwise (probabilities 0.9 / 0.1)."""

    def predict_pixels(self, pixels):
        positive = np.asarray(pixels).mean(axis=(1, 2, 3)) > 0
        return np.where(positive[:, None], [[0.1, 0.9]], [[0.9, 0.1]]).astype(np.float32)


def test_content_shift_probes_tile_an_image_in_row_order_and_aggregate_the_tiles():
    module = _module("content_shift_probes")
    pixels = -np.ones((2, 128, 192, 3), np.float32)
    pixels[0, :64, 64:128] = 1.0  # image 0: the second tile of the first row is class 1
    pixels[1, 64:] = 1.0  # image 1: the whole second row
    tiles = module.tile_probabilities(_TileMeanPredictor(), pixels, 64)
    assert tiles.shape == (2, 6, 2)
    assert tiles[0].argmax(-1).tolist() == [0, 1, 0, 0, 0, 0]
    assert tiles[1].argmax(-1).tolist() == [0, 0, 0, 1, 1, 1]
    # sample 0 (truth 1): tiles 0.6 / 0.4 twice, 0.0 / 1.0 once: mean 0.4 / 0.6 says 1 (right), the vote 0
    # (wrong); sample 1 (truth 0): mean 0.57 / 0.43 and the vote (0, a tie taken as 0, 1) say 0 (right)
    truth = np.array([1, 0])
    per_tile = np.array([[[0.6, 0.4], [0.6, 0.4], [0.0, 1.0]], [[1.0, 0.0], [0.5, 0.5], [0.2, 0.8]]])
    whole = np.array([[0.2, 0.8], [0.3, 0.7]])
    figures = module.answer_figures(truth, whole, per_tile)
    assert figures == {"whole": 0.5, "tile_mean": 1.0, "tile_vote": 0.5, "tile": pytest.approx(3 / 6)}


def _probe_run(run, whole_cross_dataset, lossless_real):
    splits = {split: {"whole": 1.0, "tile_mean": 1.0, "tile_vote": 1.0, "tile": 0.9, "partner": 0.5, "ensemble": 0.75}
              for split in ("test", "cross_seed", "cross_dataset")}
    splits["cross_dataset"]["whole"] = whole_cross_dataset
    return {"run": run, "partner_run": None, "splits": splits,
            "real_sources": {"lossless": {"folder": "x/lossless", "images": 168, "real_share": lossless_real,
                                          "real_share_jpeg95": 0.9}},
            "fakes_called_real": {"images": 320, "real_share": 0.5, "real_share_jpeg95": 1.0}}


def test_content_shift_probes_summarize_the_runs_and_render_both_tables(tmp_path):
    module = _module("content_shift_probes")
    runs = [_probe_run("s0", 0.4, 0.9), _probe_run("s1", 0.6, 1.0)]
    summary = module.across_runs(runs)
    assert summary["cross_dataset/whole"] == {"values": [0.4, 0.6], "mean": pytest.approx(0.5), "std": pytest.approx(0.1)}
    assert summary["real/lossless/real_share"]["mean"] == pytest.approx(0.95)
    assert summary["fakes_called_real/real_share_jpeg95"] == {"values": [1.0, 1.0], "mean": 1.0, "std": 0.0}
    path = tmp_path / "content-shift-probes-two.json"
    path.write_text(json.dumps({"zoo": "Z", "tile": 64, "runs": runs, "summary": summary}))
    text = _module("render_results").render_file(str(path))
    assert ("| split | whole image | tiles, mean | tiles, vote | single tile | partner run | both runs' mean |"
            in text)
    assert "| cross-dataset | 50.0 ± 10.0 | 100.0 ± 0.0 | 100.0 ± 0.0 | 90.0 ± 0.0 | 50.0 ± 0.0 | 75.0 ± 0.0 |" in text
    assert "| real photos, lossless (168) | 95.0 ± 5.0 | 90.0 ± 0.0 |" in text
    assert "| fakes of cross-dataset (320) | 50.0 ± 0.0 | 100.0 ± 0.0 |" in text
    assert text.index("| closed-set |") < text.index("| cross-seed |") < text.index("| cross-dataset |")


def test_content_adaptation_cuts_balanced_halves_and_draws_a_fixed_subset():
    module = _module("content_adaptation")
    assert module.halves(5) == ([0, 2, 4], [1, 3])
    draw = module.drawn([0, 2, 4, 6, 8], 3)
    assert draw == module.drawn([0, 2, 4, 6, 8], 3)  # a fixed seed: the same draw
    assert len(draw) == len(set(draw)) == 3 and set(draw) <= {0, 2, 4, 6, 8}  # 3 of the indices, none twice
    assert module.drawn([0, 2, 4, 6, 8], 3, seed=1) != draw  # another seed, another draw
    assert sorted(module.drawn([0, 2, 4], 20)) == [0, 2, 4]


def test_content_adaptation_puts_the_runs_statistics_back(tiny_run, upsampling_data):
    from dnadet_tf.data import find_images
    from dnadet_tf.predictor import KerasPredictor, predict_files

    module = _module("content_adaptation")
    predictor = KerasPredictor(tiny_run)
    paths = find_images(upsampling_data["test"])
    before = predict_files(predictor, paths)
    with module.AdaptedStatistics(predictor, paths[::2]) as adapted:
        inside = predict_files(adapted, paths)
    assert np.abs(inside - before).max() > 1e-3
    np.testing.assert_array_equal(predict_files(predictor, paths), before)


def test_labeled_adaptation_draws_the_same_shots_of_every_class_and_puts_the_model_back(tiny_run, upsampling_data):
    from dnadet_tf.data import read_dataset, remap_to
    from dnadet_tf.model import probabilities
    from dnadet_tf.runs import RunDir

    module = _module("labeled_adaptation")
    labels = np.array([0, 1, 0, 1, 2, 0, 1, 2])
    shots = module.drawn_shots(labels, [0, 1, 2, 3, 4, 5, 6], 2, draw=0, classes=[0, 1, 2])
    assert shots == module.drawn_shots(labels, [0, 1, 2, 3, 4, 5, 6], 2, draw=0, classes=[0, 1, 2])
    assert [int(labels[i]) for i in shots] == [0, 0, 1, 1, 2]  # class 2 has one image among the indices
    run = RunDir(tiny_run)
    model = run.load_model()
    files = remap_to(read_dataset(upsampling_data["val"]), run.class_names)
    pixels = module.pixels_of(files.paths, model.preprocessing)
    before = probabilities(model, pixels).numpy()
    with module.Restored(model):
        head = module.adapted(model, files, first_stage=1)
        assert np.abs(probabilities(head, pixels).numpy() - before).max() > 1e-3
    np.testing.assert_array_equal(probabilities(model, pixels).numpy(), before)
    with module.Restored(model):  # two groups (contents): a classifier with two means per class
        head = module.adapted(model, files, first_stage=1, groups=np.arange(len(files.paths)) % 2)
        assert head.prototypes_per_class == 2 and head.num_classes == model.num_classes
    np.testing.assert_array_equal(probabilities(model, pixels).numpy(), before)
    with module.Restored(model):  # two k-means clusters per class, as `adapt --labeled DATA --means-per-class 2`
        head = module.adapted(model, files, first_stage=1, means_per_class=2)
        assert head.prototypes_per_class == 2
    np.testing.assert_array_equal(probabilities(model, pixels).numpy(), before)


def test_labeled_adaptation_calibration_figures_match_a_hand_computation():
    module = _module("labeled_adaptation")
    rows = np.array([[0.8, 0.2], [0.4, 0.6]])
    figures = module.calibration_figures(rows, np.array([0, 0]))
    # One right answer at 0.8 and one wrong at 0.6, each in its own bin: (|1 - 0.8| + |0 - 0.6|) / 2.
    assert figures["ece"] == pytest.approx(0.4)
    assert figures["confidence"] == pytest.approx(0.7)
    assert figures["nll"] == pytest.approx(-(np.log(0.8) + np.log(0.4)) / 2)


def test_labeled_adaptation_and_feature_clusters_render_their_tables(tmp_path):
    labeled = _module("labeled_adaptation")
    runs = [{"run": "s0", "cross_dataset": {"labeled_1": 0.9}, "training_content": {},
             "calibration": {"nll_labeled_1": 0.25, "ece_labeled_1": 0.05}},
            {"run": "s1", "cross_dataset": {"labeled_1": 1.0}, "training_content": {},
             "calibration": {"nll_labeled_1": 0.35, "ece_labeled_1": 0.07}}]
    path = tmp_path / "labeled-adaptation-two.json"
    path.write_text(json.dumps(labeled.document_of("Z", "ab", runs, (1,), 3)))
    text = _module("render_results").render_file(str(path))
    assert "| cross_dataset/labeled_1 | 95.0 ± 5.0 |" in text
    assert "| calibration/nll_labeled_1 | 0.300 ± 0.050 |" in text  # nats, not %
    assert "| calibration/ece_labeled_1 | 6.0 ± 1.0 |" in text
    clusters = _module("feature_clusters")
    figures = {"accuracy": 0.5, "purity": 0.9}
    document = clusters.document_of("Z", "ab", [{"run": "s0", **{state: figures for state in clusters.STATES}}])
    path = tmp_path / "feature-clusters-one.json"
    path.write_text(json.dumps(document))
    text = _module("render_results").render_file(str(path))
    assert "| purity | " + " | ".join(["90.0 ± 0.0"] * len(clusters.STATES)) + " |" in text


def test_feature_clusters_find_pure_clusters_that_a_swapped_head_names_wrongly():
    module = _module("feature_clusters")
    assert module.purity(np.array([0, 0, 1, 1, 1]), np.array([0, 0, 0, 1, 1])) == pytest.approx(4 / 5)
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1, 2], 20)
    centres = np.eye(3) * 10
    features = centres[truth] + rng.normal(scale=0.1, size=(60, 3))
    logits = np.eye(3)[(truth + 1) % 3] * 5  # the head names every class as the next one
    figures = module.cluster_figures(features, logits, truth, [0, 1, 2])
    assert figures["purity"] == 1.0 and figures["nmi"] == pytest.approx(1.0)
    assert figures["accuracy"] == 0.0 and figures["cluster_vote"] == 0.0 and figures["cluster_assigned"] == 0.0
    assert figures["nmi_of_answers"] == pytest.approx(1.0)  # a relabelling: as informative, all wrong


def _adaptation_run(run, cross_dataset, test_after):
    splits = {"test": {"as_trained": 1.0, "adapted": 1.0, "adapted_stage3": 1.0},
              "cross_dataset": {"as_trained": 0.5, "adapted": cross_dataset, "adapted_stage3": 0.8, "adapted_20": 0.9,
                                "real_only": 0.7, "blend_0.5": 0.6}}
    return {"run": run, "splits": splits,
            "training_content": {"test_after_adapted": test_after, "test_after_adapted_stage3": 0.9,
                                 "test_after_blend_0.5": 1.0}}


def test_content_adaptation_summarizes_the_runs_and_renders_its_table(tmp_path):
    module = _module("content_adaptation")
    runs = [_adaptation_run("s0", 0.9, 0.5), _adaptation_run("s1", 1.0, 0.6)]
    summary = module.across_runs(runs)
    assert summary["cross_dataset/adapted"] == {"values": [0.9, 1.0], "mean": pytest.approx(0.95),
                                                "std": pytest.approx(0.05)}
    assert summary["training_content/test_after_adapted"]["mean"] == pytest.approx(0.55)
    path = tmp_path / "content-adaptation-two.json"
    path.write_text(json.dumps({"zoo": "Z", "zoo_sha256": "ab", "runs": runs, "summary": summary}))
    text = _module("render_results").render_file(str(path))
    # Columns: as trained, then stages 3-4 (adapt's default: half, 20, real only, blend), then all stages.
    assert "| closed-set | 100.0 ± 0.0 | 100.0 ± 0.0 | - | - | - | 100.0 ± 0.0 | - | - | - |" in text
    assert ("| cross-dataset | 50.0 ± 0.0 | 80.0 ± 0.0 | - | - | - | 95.0 ± 5.0 | 90.0 ± 0.0 | 70.0 ± 0.0 | "
            "60.0 ± 0.0 |") in text
    assert "stages 3-4 90.0 ± 0.0, all stages 55.0 ± 5.0, all stages `--blend 0.5` 100.0 ± 0.0" in text


def test_content_adaptation_measures_every_variant_and_resumes_from_its_json(tiny_run, upsampling_data, tmp_path,
                                                                            capsys, monkeypatch):
    module = _module("content_adaptation")
    zoo = str(tmp_path / "zoo")
    _benchmark_of(upsampling_data["test"], zoo, cross_dataset=True)
    path = str(tmp_path / "content-adaptation-tiny.json")
    module.main(["--zoo", zoo, "--runs", tiny_run, "--json", path])
    first = json.loads(open(path).read())["runs"][0]
    assert set(first["splits"]["test"]) == {"as_trained", "adapted", "adapted_stage3"}
    assert set(first["splits"]["cross_dataset"]) == {"as_trained", *module.VARIANTS}
    assert set(first["training_content"]) == {f"test_after_{variant}" for variant in module.COSTED}
    # An interrupted measurement: one figure missing, one kept from before (a value no measurement gives).
    edited = json.loads(open(path).read())
    del edited["runs"][0]["splits"]["cross_dataset"]["blend_0.5_stage3"]
    del edited["runs"][0]["training_content"]["test_after_blend_0.5_stage3"]
    edited["runs"][0]["splits"]["cross_dataset"]["adapted_20_stage3"] = 0.123
    open(path, "w").write(json.dumps(edited))
    module.main(["--zoo", zoo, "--runs", tiny_run, "--json", path])
    assert "keeping its 11 figures of these runs" in capsys.readouterr().out
    resumed = json.loads(open(path).read())["runs"][0]
    assert resumed["splits"]["cross_dataset"]["adapted_20_stage3"] == 0.123
    assert resumed["splits"]["cross_dataset"]["blend_0.5_stage3"] == first["splits"]["cross_dataset"]["blend_0.5_stage3"]
    assert resumed["training_content"] == first["training_content"]
    # With every figure kept, the run's model is never loaded.
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although every figure was kept")

    monkeypatch.setattr(module, "KerasPredictor", no_model)
    module.main(["--zoo", zoo, "--runs", tiny_run, "--json", path])
    assert json.loads(open(path).read())["runs"][0] == resumed
    # Another zoo's file is refused in one line, and left as it was.
    other = str(tmp_path / "other")
    _benchmark_of(upsampling_data["train"], other)
    with pytest.raises(SystemExit):
        module.main(["--zoo", other, "--runs", tiny_run, "--json", path])
    assert "holds figures of zoo" in capsys.readouterr().err
    assert json.loads(open(path).read())["runs"][0] == resumed


def test_adaptation_images_summary_averages_each_runs_draws_and_keeps_the_extremes(tmp_path):
    module = _module("adaptation_images")
    runs = [{"run": "s0", "as_trained": 0.5, "whole_half": 0.9, "counts": {"1": [0.4, 0.6], "10": [0.8, 1.0]}},
            {"run": "s1", "as_trained": 0.7, "whole_half": 0.9, "counts": {"1": [0.7, 0.7], "10": [0.9, 0.9]}}]
    summary = module.across_runs(runs)
    # Per run the mean of its draws (0.5 and 0.7 for one image), then mean and population std over the runs.
    assert summary["1"]["values"] == [pytest.approx(0.5), pytest.approx(0.7)]
    assert summary["1"]["mean"] == pytest.approx(0.6) and summary["1"]["std"] == pytest.approx(0.1)
    assert (summary["1"]["lowest"], summary["1"]["highest"]) == (0.4, 0.7)
    assert summary["as_trained"]["mean"] == pytest.approx(0.6) and summary["whole_half"]["std"] == 0
    path = tmp_path / "adaptation-images-two.json"
    path.write_text(json.dumps({"zoo": "Z", "zoo_sha256": "ab", "draws": 2, "runs": runs, "summary": summary}))
    text = _module("render_results").render_file(str(path))
    assert "| none (as trained) | 60.0 ± 10.0 | | |" in text
    assert "| 1 | 60.0 ± 10.0 | 40.0 | 70.0 |" in text
    assert text.index("| 1 |") < text.index("| 10 | 90.0 ± 0.0 | 80.0 | 100.0 |") < text.index("whole first half")


def test_adaptation_images_measures_each_count_resumes_and_refuses_other_draws(tiny_run, upsampling_data,
                                                                               tmp_path, capsys, monkeypatch):
    module = _module("adaptation_images")
    adaptation = _module("content_adaptation")
    zoo = str(tmp_path / "zoo")
    _benchmark_of(upsampling_data["test"], zoo, cross_dataset=True)
    path = str(tmp_path / "adaptation-images-tiny.json")
    assert module.main(["--zoo", zoo, "--runs", tiny_run, "--counts", "2,1", "--draws", "2", "--json", path]) == 0
    first = json.loads(open(path).read())["runs"][0]
    assert sorted(first["counts"]) == ["1", "2"] and all(len(draws) == 2 for draws in first["counts"].values())
    # The bracketing figures are content_adaptation's: as trained, and stages 3-4 adapted to the whole first half.
    adaptation.main(["--zoo", zoo, "--runs", tiny_run, "--json", str(tmp_path / "content-adaptation-tiny.json")])
    row = json.loads((tmp_path / "content-adaptation-tiny.json").read_text())["runs"][0]["splits"]["cross_dataset"]
    assert first["as_trained"] == row["as_trained"] and first["whole_half"] == row["adapted_stage3"]
    # The same draw of the same count adapts to the same images: the figures repeat.
    edited = json.loads(open(path).read())
    del edited["runs"][0]["counts"]["2"]
    edited["runs"][0]["counts"]["1"] = [0.123, 0.456]  # kept, though no measurement gives it
    open(path, "w").write(json.dumps(edited))
    module.main(["--zoo", zoo, "--runs", tiny_run, "--counts", "1,2", "--draws", "2", "--json", path])
    resumed = json.loads(open(path).read())["runs"][0]
    assert resumed["counts"] == {"1": [0.123, 0.456], "2": first["counts"]["2"]}

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although every figure was kept")

    monkeypatch.setattr(module, "KerasPredictor", no_model)
    module.main(["--zoo", zoo, "--runs", tiny_run, "--counts", "1,2", "--draws", "2", "--json", path])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        module.main(["--zoo", zoo, "--runs", tiny_run, "--draws", "3", "--json", path])
    assert "with 2 draws and blend 1, not of --zoo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        module.main(["--zoo", zoo, "--runs", tiny_run, "--draws", "2", "--blend", "0.5", "--json", path])
    assert "and --blend 0.5; give another file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        module.main(["--zoo", zoo, "--runs", tiny_run, "--counts", "0,2"])
    assert "--counts: expected a comma list of image counts of 1 or more" in capsys.readouterr().err
    listed = len(open(os.path.join(zoo, "cross_dataset.txt")).read().splitlines())
    with pytest.raises(SystemExit):  # refused before any run is measured, not when the first run reaches it
        module.main(["--zoo", zoo, "--runs", tiny_run, "--counts", f"1,{listed}", "--draws", "2", "--json", path])
    assert (f"--counts: expected counts up to the {(listed + 1) // 2} images of the first half of cross_dataset in "
            f"{zoo}, received {listed}") in capsys.readouterr().err
    assert json.loads(open(path).read())["runs"][0] == resumed
    # --blend 0 keeps the run's own statistics whatever the images: every draw scores as the run as trained.
    monkeypatch.undo()
    kept = str(tmp_path / "adaptation-images-tiny-blend-0.json")
    module.main(["--zoo", zoo, "--runs", tiny_run, "--counts", "1,2", "--draws", "2", "--blend", "0", "--json", kept])
    unmoved = json.loads(open(kept).read())
    assert unmoved["blend"] == 0.0
    assert unmoved["runs"][0]["whole_half"] == unmoved["runs"][0]["as_trained"] == first["as_trained"]
    assert all(value == first["as_trained"] for draws in unmoved["runs"][0]["counts"].values() for value in draws)
    assert "(stages 3-4, --blend 0)" in capsys.readouterr().out


def _photo_zoo(upsampling_data, tmp_path, monkeypatch):
    """(zoo, photos) for the `adapt --photos` benchmarks: a benchmark of the test images with a cross-dataset split
    and a train.txt of the training images, 5 smooth photos, and the crop cache in tmp_path."""
    from dnadet_tf.data import find_images

    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))
    zoo = str(tmp_path / "zoo")
    _benchmark_of(upsampling_data["test"], zoo, cross_dataset=True)
    classes = ["real", "nearest", "transposed"]
    with open(os.path.join(zoo, "train.txt"), "w") as f:
        f.writelines(f"{path}\t{classes.index(os.path.basename(os.path.dirname(path)))}\n"
                     for path in find_images(upsampling_data["train"]))
    return zoo, make_photos(str(tmp_path / "photos"), 5, size=(200, 150))


def test_transplant_adaptation_measures_adapt_photos_and_the_tried_mixes_and_resumes(tiny_run, upsampling_data,
                                                                                      tmp_path, capsys, monkeypatch):
    module = _module("transplant_adaptation")
    zoo, photos = _photo_zoo(upsampling_data, tmp_path, monkeypatch)
    path = str(tmp_path / "transplant-adaptation-tiny.json")
    assert module.main(["--zoo", zoo, "--photos", photos, "--runs", tiny_run, "--json", path]) == 0
    first = json.loads(open(path).read())["runs"][0]
    assert set(first["cross_dataset"]) == set(module.VARIANTS)
    assert set(first["training_content"]) == {f"test_after_{variant}" for variant in module.COSTED}
    # Photos of the training content: the closed set before and after adapting to them, added to the same file.
    same = make_photos(str(tmp_path / "same"), 4, size=(200, 150), seed=1)
    module.main(["--zoo", zoo, "--photos", photos, "--runs", tiny_run, "--json", path, "--training-photos", same])
    document = json.loads(open(path).read())
    assert document["training_photos"] == same and document["runs"][0]["cross_dataset"] == first["cross_dataset"]
    assert set(document["runs"][0]["training_content"]) == set(first["training_content"]) | set(module.SAME_CONTENT)
    first = document["runs"][0]
    # Smooth photos: the RMS ratio is below 1, where `adapt --photos` and the uncapped ratio lay the same fakes.
    assert first["cross_dataset"]["made_stage3"] == first["cross_dataset"]["scaled_stage3"]
    edited = json.loads(open(path).read())
    del edited["runs"][0]["cross_dataset"]["fingerprint_stage3"]
    edited["runs"][0]["cross_dataset"]["photos_stage3"] = 0.123  # kept, though no measurement gives it
    open(path, "w").write(json.dumps(edited))
    module.main(["--zoo", zoo, "--photos", photos, "--runs", tiny_run, "--json", path])
    resumed = json.loads(open(path).read())["runs"][0]["cross_dataset"]
    assert resumed == {**first["cross_dataset"], "photos_stage3": 0.123}
    assert json.loads(open(path).read())["training_photos"] == same

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although every figure was kept")

    monkeypatch.setattr(module, "KerasPredictor", no_model)
    module.main(["--zoo", zoo, "--photos", photos, "--runs", tiny_run, "--json", path])
    text = _module("render_results").render_file(path)
    assert "| `adapt --photos --blend 1 --first-stage 3` | " in text
    assert "| `adapt --photos --blend 0.25 --first-stage 1` | " in text
    assert "| closed set after `adapt --photos --blend 0.5 --first-stage 1` | " in text
    assert "| the photos' crops alone | 12.3 ± 0.0 |" in text
    # --variants: only those figures (and the run as trained) are measured.
    few = str(tmp_path / "transplant-adaptation-tiny-few.json")
    monkeypatch.undo()
    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))
    module.main(["--zoo", zoo, "--photos", photos, "--runs", tiny_run, "--json", few, "--variants", "made_stage3"])
    only = json.loads(open(few).read())["runs"][0]
    assert only["cross_dataset"] == {key: first["cross_dataset"][key] for key in ("as_trained", "made_stage3")}
    assert only["training_content"] == {"test_after_made_stage3": first["training_content"]["test_after_made_stage3"]}
    capsys.readouterr()
    with pytest.raises(SystemExit):
        module.main(["--zoo", zoo, "--photos", photos, "--runs", tiny_run, "--variants", "made,photos_stage3"])
    assert "--variants: expected a comma list of as_trained, adapted_stage3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        module.main(["--zoo", zoo, "--photos", str(tmp_path / "none"), "--runs", tiny_run])
    assert "--photos " + str(tmp_path / "none") + ": expected a folder of photos" in capsys.readouterr().err


def test_faces_scenes_photos_links_a_fixed_selection_and_swaps_the_contents(tmp_path, capsys):
    module = _module("faces_scenes_photos")
    for content in ("faces", "scenes"):
        folder = tmp_path / "shared" / "photos" / content
        folder.mkdir(parents=True)
        for i in range(6):
            (folder / f"{content}{i}.jpg").write_bytes(b"x")
    common = ["--shared", str(tmp_path / "shared"), "--faces", "2", "--scenes", "3", "--finetune", "1"]
    module.main(["--out", str(tmp_path / "fs")] + common)
    module.main(["--out", str(tmp_path / "sf"), "--swap"] + common)
    listing = {name: {part: sorted(os.listdir(tmp_path / name / part)) for part in "abc"} for name in ("fs", "sf")}
    assert [len(listing["fs"][part]) for part in "abc"] == [2, 3, 1]
    assert all(n.startswith("faces") for n in listing["fs"]["a"] + listing["fs"]["c"])
    assert all(n.startswith("scenes") for n in listing["sf"]["a"] + listing["sf"]["c"])
    assert all(n.startswith("faces") for n in listing["sf"]["b"]) and len(listing["sf"]["b"]) == 3
    assert not set(listing["sf"]["a"]) & set(listing["sf"]["c"])
    assert '"swap": true' in capsys.readouterr().out
    # --cross-content lossless reads the lossless folder's subfolders and names each link after both.
    for sub in ("CBSD68", "CUrban100"):
        folder = tmp_path / "shared" / "photos" / "lossless" / sub
        folder.mkdir(parents=True)
        for i in range(2):
            (folder / f"{i}.png").write_bytes(sub.encode())
    module.main(["--out", str(tmp_path / "fl"), "--cross-content", "lossless", "--other", "1"] + common)
    crossing = sorted(os.listdir(tmp_path / "fl" / "b")) + os.listdir(tmp_path / "fl" / "other")
    assert sorted(crossing) == ["CBSD68_0.png", "CBSD68_1.png", "CUrban100_0.png", "CUrban100_1.png"]
    assert all((tmp_path / "fl" / "b" / name).read_bytes() == name.split("_")[0].encode()
               for name in os.listdir(tmp_path / "fl" / "b"))
    assert sorted(os.listdir(tmp_path / "fl" / "a")) == listing["fs"]["a"]
    assert '"cross_content": "lossless"' in capsys.readouterr().out
    # --training-content scenes: scenes where faces were (the same ranking as scenes in the scenes -> faces zoo).
    module.main(["--out", str(tmp_path / "sl"), "--training-content", "scenes", "--cross-content", "lossless"] + common)
    assert sorted(os.listdir(tmp_path / "sl" / "a")) == listing["sf"]["a"]
    assert sorted(os.listdir(tmp_path / "sl" / "b")) == sorted(os.listdir(tmp_path / "fl" / "b"))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        module.main(["--out", str(tmp_path / "ss"), "--training-content", "scenes"] + common)
    assert "--training-content scenes: expected a content other than --cross-content scenes" in capsys.readouterr().err
    assert not (tmp_path / "ss").exists()


def _benchmark_of(test_root, zoo, cross_dataset=False):
    """A benchmark folder `zoo` whose test.txt (and with `cross_dataset` its cross_dataset.txt too) lists
    `test_root`'s images and whose open_set.txt lists unknown images (other pictures named as an architecture that
    is not a class)."""
    from dnadet_tf.data import find_images

    os.makedirs(zoo)
    classes = ["real", "nearest", "transposed"]
    lines = [f"{path}\t{classes.index(os.path.basename(os.path.dirname(path)))}" for path in find_images(test_root)]
    for split in ("test", "cross_dataset") if cross_dataset else ("test",):
        with open(os.path.join(zoo, f"{split}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    with open(os.path.join(zoo, "classes.txt"), "w") as f:
        f.write("\n".join(classes) + "\n")
    unknown = os.path.join(zoo, "unknown")
    os.makedirs(unknown)
    rng = np.random.default_rng(8)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(os.path.join(unknown, f"{i}.png"))
    with open(os.path.join(zoo, "open_set.txt"), "w") as f:
        f.write("".join(f"unknown/{i}.png\tnoisegan\n" for i in range(6)))


def test_export_seeds_measures_each_exported_file_against_its_run_and_reuses_the_exports(
        tiny_run, upsampling_data, tmp_path, capsys):
    from dnadet_tf.api import load
    from dnadet_tf.evaluation import OPEN_SET_ROW, evaluate

    module = _module("export_seeds")
    zoo = str(tmp_path / "zoo")
    _benchmark_of(upsampling_data["test"], zoo)
    out, path = str(tmp_path / "exports"), str(tmp_path / "export-seeds-tiny.json")
    copy = str(tmp_path / "copy" / "tiny")  # the same model in another run dir of the same folder name
    shutil.copytree(tiny_run, copy)
    module.main(["--zoo", zoo, "--runs", tiny_run, copy, "--out", out, "--formats", "float16", "int8",
                 "--json", path])
    document = json.loads(open(path).read())
    run = document["runs"][0]
    assert set(run["parity"]) == {"keras", "float16", "int8"} and set(run["open_set"]) == {"keras", "float16", "int8"}
    assert run["eval_images"] == 36
    assert run["parity"]["float16"]["top1_agreement"] >= 0.97
    # The run's figures are what `evaluate` gives with open_set.txt as the unknown images.
    rows = evaluate(load(tiny_run, precision="float32"), [os.path.join(zoo, "test.txt")], progress=lambda m: None,
                    unknown_specs=[os.path.join(zoo, "open_set.txt")])
    metrics = next(row["metrics"] for row in rows if row.get("kind") == OPEN_SET_ROW)
    assert run["open_set"]["keras"]["auroc"] == pytest.approx(metrics["auroc"])
    assert run["open_set"]["keras"]["unknown_flagged"] == pytest.approx(metrics["unknown_flagged"])
    # The int8 file is judged at its own (refitted) threshold, read from its sidecar.
    sidecar = json.loads(open(os.path.join(out, "tiny", "dnadet", "tflite", "dnadet-int8.json")).read())
    assert run["open_set"]["int8"]["threshold"] == pytest.approx(sidecar["open_set"]["threshold"])
    # Two runs of the same model: std 0; the copy, of the same folder name, has its own export.
    summary = document["summary"]["open_set/int8/known_flagged"]
    assert summary["std"] == 0.0 and summary["values"][0] == summary["values"][1]
    assert document["runs"][1]["export"] != document["runs"][0]["export"]
    text = _module("render_results").render_file(path)
    assert "| float16 | 0.79" not in text  # tiny sizes, not those of docs/results.md
    assert "| int8 |" in text and "| the run (float32) |" in text and "| int8 TFLite |" in text
    assert "mean ± std over 2 runs" in text


def test_open_set_table_reports_the_share_flagged_on_every_split_at_the_known_rate():
    table = _module("open_set_table")
    scores = {score: {"auroc": 0.9, "fpr_at_95_tpr": 0.2} for score in table.SCORES}

    def seed(unknown, cross_seed):
        return {"calibration": {"temperature": 1.0, "known_rate": 0.8},
                "ece": {"closed-set": {"before": 0.0, "after": 0.0}, "cross-seed": {"before": 0.1, "after": 0.1}},
                "flagged_unknown": {"closed-set": 0.1, "cross-seed": cross_seed},
                "open_set": {"score": "mahalanobis", "open_set_accuracy": 0.5, "unknown_flagged": unknown,
                             "known_flagged": 0.1, "by_score": scores, "auroc_by_group": {"dcgan": 0.9}}}

    summary = table.aggregate([seed(0.6, 0.2), seed(1.0, 0.4)])
    assert summary["known_rate"] == 0.8
    assert summary["flagged_unknown"]["cross-seed"]["mean"] == pytest.approx(0.3)
    assert summary["flagged_unknown"]["cross-seed"]["std"] == pytest.approx(0.1)  # population std
    text = table.markdown({"method": "DNA-Det", "preset": "cpu", "seeds": [0, 1], "summary": summary})
    assert "Share flagged unknown at the stored threshold (known rate 0.8), %:" in text
    assert "| unknown architectures | closed-set | cross-seed |" in text
    assert "| 80.0 ± 20.0 | 10.0 ± 0.0 | 30.0 ± 10.0 |" in text
    assert summary["radii"] == "shared"  # calibration reports written before radii existed
    per_class = table.aggregate([{**s, "calibration": {**s["calibration"], "radii": "per-class"}}
                                 for s in (seed(0.6, 0.2), seed(1.0, 0.4))])
    assert "(known rate 0.8, per-class radii), %:" in table.markdown(
        {"method": "DNA-Det", "preset": "cpu", "seeds": [0, 1], "summary": per_class})
    assert summary["means"] == "class"  # calibration reports written before means existed
    each = table.aggregate([{**s, "calibration": {**s["calibration"], "means": "image"}}
                            for s in (seed(0.6, 0.2), seed(1.0, 0.4))])
    assert "(known rate 0.8, distances to the nearest training image), %:" in table.markdown(
        {"method": "DNA-Det", "preset": "cpu", "seeds": [0, 1], "summary": each})
    # a document written before the per-split shares existed still renders, without that table
    del summary["flagged_unknown"]
    assert "Share flagged" not in table.markdown({"method": "DNA-Det", "preset": "cpu", "seeds": [0, 1],
                                                  "summary": summary})


def test_swap_content_figures_summary_table_and_resume(tmp_path, monkeypatch):
    module = _module("swap_content")
    classes = ["real", "a", "b"]
    metrics = {"accuracy": 0.6, "per_class_recall": {"real": 1.0, "a": 0.5, "b": 0.3},
               "confusion_matrix": [[10, 0, 0], [4, 5, 1], [2, 5, 3]], "flagged_unknown": 0.25}
    figures = module.figures_of(metrics, classes)
    assert figures["fakes_called_real"] == pytest.approx(6 / 20)  # fakes in the real column over all fakes
    assert (figures["real_recall"], figures["flagged_unknown"]) == (1.0, 0.25)
    assert module.figures_of({**metrics, "flagged_unknown": None}, classes)["flagged_unknown"] is None

    zoo, split = tmp_path / "zoo", tmp_path / "split"
    for folder in (zoo, split):
        folder.mkdir()
        (folder / "classes.txt").write_text("real\na\nb\n")
    Image.new("RGB", (16, 16)).save(zoo / "r.png")
    (zoo / "cross_dataset.txt").write_text("r.png\t0\n")
    (split / "cross_content.txt").write_text("")
    (split / "cross_weights.txt").write_text("")
    (split / "swap_content.json").write_text("{}")
    measured = []

    def fake_run_figures(run, lists):
        measured.append(run)
        assert lists == {"cross_content": str(split / "cross_content.txt"),
                         "cross_weights": str(split / "cross_weights.txt"),
                         "cross_dataset": os.path.join(str(zoo), "cross_dataset.txt")}
        accuracy = {"r0": 1.0, "r1": 0.8, "r2": 0.5}[os.path.basename(run)]
        row = {**figures, "accuracy": accuracy}
        return {"run": os.path.abspath(run), "splits": {"cross_content": row, "cross_weights": {**row, "accuracy": 0.3},
                                                        "cross_dataset": {**row, "accuracy": 0.2}}}

    monkeypatch.setattr(module, "run_figures", fake_run_figures)
    runs = {"DNA-Det": [str(tmp_path / "r0"), str(tmp_path / "r1")], "Base": [str(tmp_path / "r2")]}
    document = module.measure(str(zoo), runs, str(split), progress=lambda line: None)
    stats = document["variants"]["DNA-Det"]["summary"]["cross_content"]["accuracy"]
    assert (stats["mean"], stats["std"], stats["values"]) == (pytest.approx(0.9), pytest.approx(0.1), [1.0, 0.8])
    table = module.format_table(document)
    assert ("| DNA-Det | cross_content (training generators, other photos) | 2 | 90.0 ± 10.0 | 100.0 ± 0.0 | "
            "30.0 ± 0.0 | 25.0 ± 0.0 |") in table
    assert "| DNA-Det | cross_weights (retrained generators, training photos) | 2 | 30.0 ± 0.0 |" in table
    assert "| Base | cross_dataset (retrained generators, other photos) | 1 | 20.0 ± 0.0 |" in table
    # A run already in the document is kept; only a new one is measured.
    measured.clear()
    runs["Base"].append(str(tmp_path / "r0"))
    again = module.measure(str(zoo), runs, str(split), previous=document, progress=lambda line: None)
    assert measured == []
    assert again["variants"]["Base"]["summary"]["cross_content"]["accuracy"]["values"] == [0.5, 1.0]
    path = tmp_path / "swap-content-test.json"
    path.write_text(json.dumps(again))
    assert "| Base | cross_content" in _module("render_results").render_file(str(path))


def test_released_samples_groups_a_manifest_by_source_and_rejects_a_bad_row_or_crop(tmp_path):
    module = _module("released_samples")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,generator,real_or_fake\nb/2.png,x,fake\na/1.png,x,real\nb/1.png,x,fake\n")
    groups = module.read_manifest(str(manifest))
    assert list(groups) == ["a", "b"]
    assert groups["b"] == {"real": [], "fake": [str(tmp_path / "b" / "1.png"), str(tmp_path / "b" / "2.png")]}
    manifest.write_text("path,real_or_fake\na/1.png,unknown\n")
    with pytest.raises(SystemExit, match=r"manifest.csv:2: expected a path and real_or_fake 'real' or 'fake'"):
        module.read_manifest(str(manifest))
    assert module.parse_crop("cnn_=50,50,306,306") == ("cnn_", (50, 50, 306, 306))
    for bad in ("cnn_=50,50,306", "=1,1,2,2", "x=5,5,5,9"):
        with pytest.raises(module.argparse.ArgumentTypeError, match="expected"):
            module.parse_crop(bad)
    crops = [("cnn_", (1, 2, 3, 4))]
    assert module.crop_for(str(tmp_path / "cnn_a" / "1.png"), str(tmp_path), crops) == (1, 2, 3, 4)
    assert module.crop_for(str(tmp_path / "a" / "cnn_1.png"), str(tmp_path), crops) is None


def test_released_samples_answers_equal_the_runs_predictions_on_the_cropped_images(tiny_run, upsampling_data,
                                                                                  tmp_path):
    from dnadet_tf.predictor import KerasPredictor, predict_files

    module = _module("released_samples")
    test = upsampling_data["test"]
    rows, unframed = ["path,real_or_fake"], []
    for name in sorted(os.listdir(test)):
        for index, file in enumerate(sorted(os.listdir(os.path.join(test, name)))[:4]):
            source = os.path.join(test, name, file)
            framed = Image.new("RGB", (52, 52), (200, 30, 30))
            framed.paste(Image.open(source).convert("RGB"), (10, 10))
            os.makedirs(tmp_path / f"framed_{name}", exist_ok=True)
            framed.save(tmp_path / f"framed_{name}" / f"{index}.png")
            rows.append(f"framed_{name}/{index}.png,{'real' if name == 'real' else 'fake'}")
            unframed.append(source)
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    groups = module.read_manifest(str(tmp_path / "manifest.csv"))
    figures = module.run_figures(tiny_run, groups, str(tmp_path), [("framed_", (10, 10, 42, 42))])

    predictor = KerasPredictor(tiny_run)
    real = predictor.class_names.index("real")
    answers = predict_files(predictor, unframed).argmax(-1).reshape(-1, 4)  # the classes in sorted order, 4 each
    for name, row in zip(sorted(os.listdir(test)), answers):
        kind = "real" if name == "real" else "fake"
        assert figures["groups"][f"framed_{name}/{kind}"]["answered_real"] == pytest.approx(np.mean(row == real))
    fakes = answers[[i for i, name in enumerate(sorted(os.listdir(test))) if name != "real"]]
    assert figures["all"]["fake"]["answered_real"] == pytest.approx(np.mean(fakes == real))
    assert figures["all"]["fake"]["images"] == fakes.size


def test_released_samples_summary_table_and_resume(tmp_path, monkeypatch):
    module = _module("released_samples")
    answers, unknown = np.array([0, 0, 1, 2]), np.array([True, False, False, False])
    assert module.group_figures(answers, unknown, 0) == {"images": 4, "answered_real": 0.5, "flagged_unknown": 0.25,
                                                         "real_and_known": 0.25}
    assert module.group_figures(answers, None, 0)["real_and_known"] is None

    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,real_or_fake\ns/1.png,fake\ns/2.png,real\n")
    measured = []

    def fake_run_figures(run, groups, manifest_dir, crops):
        measured.append(run)
        assert (list(groups), manifest_dir) == (["s"], str(tmp_path)) and crops[0][0] == "s"
        share = {"r0": 1.0, "r1": 0.5}[os.path.basename(run)]
        row = {"images": 1, "answered_real": share, "flagged_unknown": 0.0, "real_and_known": share}
        return {"run": os.path.abspath(run), "groups": {"s/fake": row, "s/real": row}, "all": {"fake": row, "real": row}}

    monkeypatch.setattr(module, "run_figures", fake_run_figures)
    runs = {"DNA-Det": [str(tmp_path / "r0"), str(tmp_path / "r1")]}
    document = module.measure(str(manifest), runs, [("s", (0, 0, 4, 4))], progress=lambda line: None)
    stats = document["variants"]["DNA-Det"]["summary"]["all/fake"]["answered_real"]
    assert (stats["mean"], stats["std"], stats["values"]) == (pytest.approx(0.75), pytest.approx(0.25), [1.0, 0.5])
    table = module.format_table(document)
    assert "| DNA-Det | all fakes (1) | 2 | 75.0 ± 25.0 | 0.0 ± 0.0 | 75.0 ± 25.0 |" in table
    assert "| DNA-Det | s reals (1) | 2 |" in table

    path = tmp_path / "released-samples-test.json"
    path.write_text(json.dumps(document))
    measured.clear()
    again = module.measure(str(manifest), runs, [("s", (0, 0, 4, 4))], previous=document, progress=lambda line: None)
    assert measured == [] and again == document
    module.measure(str(manifest), runs, [("s", (0, 0, 5, 5))], previous=document, progress=lambda line: None)
    assert len(measured) == 2  # other crops: measured again
    assert "| DNA-Det | all fakes (1) |" in _module("render_results").render_file(str(path))


def _tiny_zoo(root):
    rng = np.random.default_rng(0)
    (root / "classes.txt").write_text("real\nprogan\n")
    lists = {"train": [], "cross_dataset": []}
    for split in lists:
        for label, name in enumerate(("real", "progan")):
            folder = root / "images" / split / name
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(folder / f"{name}_{i}.png")
                lists[split].append(f"images/{split}/{name}/{name}_{i}.png\t{label}")
        (root / f"{split}.txt").write_text("\n".join(lists[split]) + "\n")
    (root / "images" / "open_set").mkdir()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(root / "images" / "open_set" / "u.png")
    (root / "open_set.txt").write_text("images/open_set/u.png\tcyclegan\n")


def test_processed_reals_processes_only_the_real_images_of_the_chosen_content(tmp_path):
    module = _module("processed_reals")
    zoo, out = tmp_path / "zoo", tmp_path / "out"
    zoo.mkdir()
    _tiny_zoo(zoo)
    module.main(["--zoo", str(zoo), "--out", str(out), "--process", "upsample:16", "--cross-process", "jpeg:75"])
    train = [line.split("\t") for line in (out / "train.txt").read_text().splitlines()]
    assert [label for _, label in train] == ["0", "0", "1", "1"]
    for path, label in train:
        if label == "1":  # fakes: the zoo's own file, by absolute path
            assert os.path.isabs(path) and path.startswith(str(zoo) + os.sep) and os.path.isfile(path)
            continue
        assert path.endswith("-up16.png") and not os.path.isabs(path)
        source = Image.open(zoo / "images" / "train" / "real" / os.path.basename(path).replace("-up16", ""))
        expected = source.resize((16, 16), Image.BICUBIC).resize((32, 32), Image.BICUBIC)
        np.testing.assert_array_equal(np.asarray(Image.open(out / path)), np.asarray(expected))
    cross = [line.split("\t") for line in (out / "cross_dataset.txt").read_text().splitlines()]
    reals = [path for path, label in cross if label == "0"]
    assert all(p.endswith("-q75.jpg") for p in reals)
    buffer = out / "expected.jpg"
    Image.open(zoo / "images" / "cross_dataset" / "real" / "real_0.png").convert("RGB").save(buffer, quality=75)
    assert (out / reals[0]).read_bytes() == buffer.read_bytes()
    assert (out / "open_set.txt").read_text() == f"{zoo / 'images' / 'open_set' / 'u.png'}\tcyclegan\n"
    assert (out / "classes.txt").read_text() == "real\nprogan\n"
    # the lists read back as a benchmark, and the zoo is untouched
    from dnadet_tf.data import read_annotation_list
    assert len(read_annotation_list(str(out / "cross_dataset.txt")).paths) == 4
    assert sorted(os.listdir(zoo)) == ["classes.txt", "cross_dataset.txt", "images", "open_set.txt", "train.txt"]


@pytest.mark.parametrize("flag, value, message", [
    ("--process", "gzip:3", "expected 'jpeg:QUALITY', 'upsample:SIDE' or 'none'; received 'gzip:3'"),
    ("--process", "jpeg:101", "JPEG quality must be in 1..100; received 101"),
    ("--process", "none", "--process: expected 'jpeg:QUALITY' or 'upsample:SIDE' when --cross-process is none; "
                          "received 'none'"),
    ("--cross-process", "upsample:4", "at least 8 px; received 4"),
])
def test_processed_reals_names_a_bad_processing_flag(tmp_path, flag, value, message):
    module = _module("processed_reals")
    (tmp_path / "zoo").mkdir()
    _tiny_zoo(tmp_path / "zoo")
    args = {"--process": "jpeg:75", "--cross-process": "none", flag: value}
    with pytest.raises(SystemExit) as raised:
        module.main(["--zoo", str(tmp_path / "zoo"), "--out", str(tmp_path / "out"),
                     "--process", args["--process"], "--cross-process", args["--cross-process"]])
    assert message in str(raised.value) and flag in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_resampling_detection_reads_each_known_processing_and_each_folder(tmp_path, capsys):
    detection = _module("resampling_detection")
    folder = tmp_path / "enlarged"
    folder.mkdir()
    for i, crop in enumerate(detection.packaged_crops(24)):
        detection.PROCESSINGS["bicubic through 100 px (x1.28)"](crop).save(folder / f"{i}.png")
    out = str(tmp_path / "detection.json")
    assert detection.main(["--json", out, "--count", "24", "--folder", f"mine={folder}"]) == 0
    sets = json.load(open(out))["sets"]
    assert list(sets) == [f"packaged crops, {name}" for name in detection.PROCESSINGS] + ["mine"]
    assert sets["packaged crops, none (the crops as cut)"]["factor"] is None
    assert 1.26 < sets["packaged crops, bicubic through 100 px (x1.28)"]["factor"] < 1.30
    assert sets["mine"]["factor"] == sets["packaged crops, bicubic through 100 px (x1.28)"]["factor"]
    subsets = sets["mine"]["subsets"]
    assert list(subsets) == ["20"] and len(subsets["20"]["factors"]) == detection.DRAWS  # 40 > 24 images: none
    table = capsys.readouterr().out
    assert "| mine (24) | x1.28 |" in table
    assert "| packaged crops, none (the crops as cut) (24) | no resampling found |" in table


def test_batchnorm_shift_reports_the_moved_statistics_in_units_of_the_runs_own(tmp_path, capsys):
    from dnadet_tf.model import Backbone, Classifier

    model = Classifier(Backbone(0.0625), 3)
    own, adapted = tmp_path / "own", tmp_path / "adapted"
    for folder in (own, adapted):
        folder.mkdir()
    model.save(str(own / "best.keras"))
    layer = model.backbone.get_layer("stage3_bn1")
    mean, variance = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    channels = mean.shape[0]
    moves = np.where(np.arange(channels) % 2 == 0, 0.5, -0.1).astype(np.float32)  # mean 0.2, std 0.3
    layer.moving_mean.assign(mean + moves * np.sqrt(variance + 1e-5))
    layer.moving_variance.assign((variance + 1e-5) * np.exp(2 * 0.25) - 1e-5)  # every std x exp(0.25)
    model.save(str(adapted / "best.keras"))
    assert _module("batchnorm_shift").main([str(own), str(adapted)]) == 0
    rows = {line.split()[0]: [float(v) for v in line.replace("|", "").split()[1:]]
            for line in capsys.readouterr().out.splitlines()[1:]}
    assert len(rows) == 8
    np.testing.assert_allclose(rows["stage3_bn1"], [0.2, 0.3, 0.25, 0.0], atol=2e-3)
    np.testing.assert_allclose(rows["stage2_bn2"], [0.0, 0.0, 0.0, 0.0], atol=1e-3)


def test_seed_ensemble_scores_the_mean_probabilities_of_each_combination():
    ensemble = _module("seed_ensemble")
    labels = [0, 1, 1]
    # Every run is right on image 0; run a also on image 1, run b also on image 2, run c on neither.
    a = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]
    b = [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]]
    c = [[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]]
    single, combinations, together = ensemble.ensemble_accuracies([a, b, c], labels, 2)
    assert single == pytest.approx([2 / 3, 2 / 3, 1 / 3])
    # a+b: image 1 (0.4, 0.6) and image 2 (0.45, 0.55) right; a+c: image 1 (0.4, 0.6) right, image 2 (0.7, 0.3)
    # wrong; b+c: image 1 (0.6, 0.4) and image 2 (0.55, 0.45) wrong. All three: image 1 (1.4 / 3, 1.6 / 3) right,
    # image 2 (1.7 / 3, 1.3 / 3) wrong.
    assert combinations == pytest.approx([1.0, 2 / 3, 1 / 3])
    assert together == pytest.approx(2 / 3)


def test_seed_ensemble_measures_runs_and_renders_its_table(tiny_run, upsampling_data, tmp_path, capsys):
    ensemble = _module("seed_ensemble")
    zoo = str(tmp_path / "zoo")
    _benchmark_of(upsampling_data["test"], zoo, cross_dataset=True)
    path = str(tmp_path / "seed-ensemble-tiny.json")
    copy = str(tmp_path / "tiny-copy")  # one run given twice is refused: a copy has the same weights
    shutil.copytree(tiny_run, copy)
    assert ensemble.main(["--zoo", zoo, "--runs", tiny_run, copy, "--size", "2", "--json", path]) == 0
    document = json.loads(open(path).read())
    assert list(document["splits"]) == ["test", "cross_dataset"] and document["size"] == 2
    for row in document["splits"].values():  # one run's weights twice: the ensemble is that run
        assert row["single"][0] == row["single"][1] == row["combinations"][0] == row["all"]
    capsys.readouterr()
    text = _module("render_results").render_file(path)
    accuracy = 100 * document["splits"]["cross_dataset"]["all"]
    assert f"| cross-dataset | {accuracy:.1f} ± 0.0 | {accuracy:.1f} ± 0.0 [{accuracy:.1f}, {accuracy:.1f}] | {accuracy:.1f} |" in text
    with pytest.raises(SystemExit):
        ensemble.main(["--zoo", zoo, "--runs", tiny_run, copy, "--size", "3"])
    assert "--size: expected 2 to the number of --runs (2), received 3" in capsys.readouterr().err


def test_labeled_open_set_fits_three_thresholds_on_an_adapted_run_and_resumes(tiny_run, upsampling_data, tmp_path,
                                                                               capsys, monkeypatch):
    from dnadet_tf import openset

    module = _module("labeled_open_set")
    zoo = str(tmp_path / "zoo")
    _benchmark_of(upsampling_data["test"], zoo, cross_dataset=True)
    path = str(tmp_path / "labeled-open-set-tiny.json")
    # Every labeled image scored left out: the threshold the library fits (`labeled_calibration`), by hand here.
    calls = []
    real_calibration = module.labeled_calibration

    def recorded(model, files, score, means="class", features=None):
        statistics, report = real_calibration(model, files, score, means=means, features=features)
        read = module.features_of(model, module.pixels_of(list(files.paths), model.preprocessing))[0]
        assert np.array_equal(features, read)  # the script hands over the labeled images' features it read once
        left_out = openset.leave_one_out_distances(score, features, files.labels, model.num_classes,
                                                   range(len(files.labels)), means).min(axis=1)
        calls.append((statistics.threshold, float(np.quantile(left_out, openset.KNOWN_RATE)), report["val_left_out"],
                      means, statistics.means_per_class))
        return statistics, report

    monkeypatch.setattr(module, "labeled_calibration", recorded)
    module.main(["--zoo", zoo, "--unknown", zoo, "--runs", tiny_run, "--shots", "2", "--draws", "2", "--json", path])
    # per draw, class means and every image its own (2 labeled images per class: 2 means each)
    assert [(means, per_class) for *_, means, per_class in calls] == [("class", 1), ("image", 2)] * 2
    assert all(fitted == pytest.approx(hand, rel=1e-5) and count == 6 for fitted, hand, count, *_ in calls)
    document = json.loads(open(path).read())
    figures = document["runs"][0]["figures"]
    assert document["runs"][0]["unknown_images"] == 6 and document["score"] == "mahalanobis"
    expected = {f"{name}_{part}_flagged_2" for name in ("in_sample", "left_out", "unlabeled", "image_left_out",
                                                         "image_unlabeled")
                for part in ("known", "unknown", "training")} | {"auroc_2", "image_auroc_2", "accuracy_2"}
    assert expected <= set(figures) and all(0.0 <= figures[key] <= 1.0 for key in expected)
    assert {f"as_trained_{key}" for key in ("auroc", "known_flagged", "unknown_flagged", "training_flagged")} \
        <= set(figures)
    # Scored in-sample, each image's own feature pulls its class mean to it: more known images flagged.
    assert figures["in_sample_known_flagged_2"] >= figures["left_out_known_flagged_2"]
    assert "| auroc_2 |" in capsys.readouterr().out
    # --mixed adds both contents' labeled images in one set, keeping the figures already there.
    module.main(["--zoo", zoo, "--unknown", zoo, "--runs", tiny_run, "--shots", "2", "--draws", "2", "--mixed",
                 "--json", path])
    both = json.loads(open(path).read())["runs"][0]["figures"]
    assert {key: both[key] for key in figures} == figures and len(calls) == 12
    # per draw: the default head's two calibrations, then the k-means head's (2 centres per class) with class means
    # and with its own centres
    assert [(means, per_class) for *_, means, per_class in calls[4:]] == [
        ("class", 1), ("image", 4), ("class", 1), (2, 2)] * 2
    prefixes = ("", "image_", "clustered_", "clustered_centres_")
    mixed = {f"mixed_{prefix}{name}_flagged_2" for name in ("known", "training", "unknown", "training_unknown")
             for prefix in prefixes} | {f"mixed_{head}{name}_accuracy_2" for head in ("", "clustered_")
                                        for name in ("known", "training")} | {
        f"mixed_{prefix}{name}auroc_2" for prefix in prefixes for name in ("", "training_")}
    assert set(both) - set(figures) == mixed and all(0.0 <= both[key] <= 1.0 for key in mixed)
    # A second call keeps the run (its model is never loaded), and a single shot is refused in one line.
    monkeypatch.setattr(module, "model_and_splits", lambda *args: (_ for _ in ()).throw(AssertionError("loaded")))
    module.main(["--zoo", zoo, "--unknown", zoo, "--runs", tiny_run, "--shots", "2", "--draws", "2", "--mixed",
                 "--json", path])
    assert json.loads(open(path).read())["runs"][0]["figures"] == both
    with pytest.raises(SystemExit):
        module.main(["--zoo", zoo, "--unknown", zoo, "--runs", tiny_run, "--shots", "1", "--json", path])
    assert "expected integers of 2 or more" in capsys.readouterr().err


def test_unlabeled_open_set_fits_the_threshold_on_the_answers_as_adapt_does_and_resumes(
        tiny_run, upsampling_data, tmp_path, capsys, monkeypatch):
    from dnadet_tf.runs import RunDir

    module = _module("unlabeled_open_set")
    zoo = str(tmp_path / "zoo")
    _benchmark_of(upsampling_data["test"], zoo, cross_dataset=True)
    path = str(tmp_path / "unlabeled-open-set-tiny.json")
    calls = []
    real_calibration = module.answered_calibration

    def recorded(model, paths, *args, **kwargs):
        statistics, report = real_calibration(model, paths, *args, **kwargs)
        calls.append((len(paths), report["val_left_out"], report["pseudo_labels"], kwargs["temperature"]))
        return statistics, report

    monkeypatch.setattr(module, "answered_calibration", recorded)
    module.main(["--zoo", zoo, "--unknown", zoo, "--runs", tiny_run, "--json", path])
    # the first half of cross-dataset (18 of 36), with 2 unknown images (a tenth of 18, rounded), with the 3
    # even-numbered ones of 6, then the closed set's first half; every image left out, the run's temperature kept
    temperature = float(RunDir(tiny_run).load_model().calibration.temperature.numpy())
    assert [(count, left) for count, left, *_ in calls] == [(18, 18), (20, 20), (21, 21), (18, 18)]
    assert all(pseudo is True and t == pytest.approx(temperature) for *_, pseudo, t in calls)
    document = json.loads(open(path).read())
    figures = document["runs"][0]["figures"]
    parts = ("known", "unknown", "training")
    expected = {"accuracy", "answer_accuracy", "answered_unknown_odd_flagged"} | {
        f"{name}_{part}_flagged" for name in ("as_trained", "answered", "labeled", "contaminated_10", "contaminated")
        for part in parts} | {f"{name}_auroc" for name in ("as_trained", "answered", "labeled", "contaminated_10",
                                                          "contaminated", "same_content", "same_content_as_trained")} | {
        f"same_content{name}_{part}_flagged" for name in ("", "_as_trained") for part in ("known", "unknown")}
    assert set(figures) == expected and all(0.0 <= value <= 1.0 for value in figures.values())
    assert document["runs"][0]["unknown_images"] == 6 and document["first_stage"] == 3
    assert "| answered_auroc |" in capsys.readouterr().out
    # A second call keeps the run (its model is never loaded).
    monkeypatch.setattr(module, "model_and_splits", lambda *args: (_ for _ in ()).throw(AssertionError("loaded")))
    module.main(["--zoo", zoo, "--unknown", zoo, "--runs", tiny_run, "--json", path])
    assert json.loads(open(path).read())["runs"][0]["figures"] == figures


def test_photo_open_set_fits_thresholds_on_the_mix_adapt_photos_makes_and_resumes(
        tiny_run, upsampling_data, tmp_path, capsys, monkeypatch):
    from dnadet_tf.photo_mix import PHOTO_FAKES_PER_CLASS, PHOTO_REAL
    from dnadet_tf.data import find_images

    module = _module("photo_open_set")
    zoo, photos = _photo_zoo(upsampling_data, tmp_path, monkeypatch)
    calls = []
    real_calibration = module.labeled_calibration

    def recorded(model, files, *args):
        calls.append((len(files), np.bincount(files.labels, minlength=3).tolist(), files.source))
        return real_calibration(model, files, *args)

    monkeypatch.setattr(module, "labeled_calibration", recorded)
    path = str(tmp_path / "photo-open-set-tiny.json")
    assert module.main(["--zoo", zoo, "--photos", photos, "--unknown", zoo, "--runs", tiny_run, "--json", path]) == 0
    # the mix labeled by how it was made (its crops real, each fake class's fakes theirs: as many as it has training
    # fakes, up to PHOTO_FAKES_PER_CLASS), then the first half of cross-dataset (18 of 36) with its true labels
    fakes = min(PHOTO_FAKES_PER_CLASS, len(find_images(os.path.join(upsampling_data["train"], "nearest"))))
    made = [PHOTO_REAL, fakes, fakes]
    assert calls[0] == (sum(made), made, "adapt --photos mix") and calls[1][0] == 18
    document = json.loads(open(path).read())
    figures = document["runs"][0]["figures"]
    names = ["as_trained", "made", "labeled"] + ([] if "made_answered_failed" in document["runs"][0]
                                                  else ["made_answered"])
    expected = {"accuracy", "made_answer_accuracy"} | {f"{name}_{part}_flagged" for name in names
                                                       for part in ("known", "unknown", "training")} | {
        f"{name}_auroc" for name in names}
    assert set(figures) == expected and all(0.0 <= value <= 1.0 for value in figures.values())
    assert document["blend"] == 0.25 and document["first_stage"] == 1 and document["photos"] == photos
    assert "| made_auroc |" in capsys.readouterr().out
    # A class the adapted run answers for fewer than 2 images of the mix: no answered threshold, the reason kept.
    def refused(*args, **kwargs):
        raise ValueError("expected 2 or more images answered as each class")

    monkeypatch.setattr(module, "answered_calibration", refused)
    other = str(tmp_path / "photo-open-set-refused.json")
    module.main(["--zoo", zoo, "--photos", photos, "--unknown", zoo, "--runs", tiny_run, "--json", other])
    run = json.loads(open(other).read())["runs"][0]
    assert run["made_answered_failed"] == "expected 2 or more images answered as each class"
    assert not any(key.startswith("made_answered_") for key in run["figures"])
    # A second call keeps the run (its model is never loaded).
    monkeypatch.setattr(module, "model_and_splits", lambda *args: (_ for _ in ()).throw(AssertionError("loaded")))
    module.main(["--zoo", zoo, "--photos", photos, "--unknown", zoo, "--runs", tiny_run, "--json", path])
    assert json.loads(open(path).read())["runs"][0]["figures"] == figures


def test_open_set_points_fits_each_setting_as_calibrate_does_and_resumes(tiny_run, upsampling_data, tmp_path,
                                                                          capsys, monkeypatch):

    from dnadet_tf.data import find_images
    from clirun import run_cli
    from dnadet_tf.predictor import KerasPredictor, attribute_files

    module = _module("open_set_points")
    zoo = str(tmp_path / "zoo")
    _benchmark_of(upsampling_data["test"], zoo)
    classes = ["real", "nearest", "transposed"]
    for split in ("train", "val"):
        with open(os.path.join(zoo, f"{split}.txt"), "w") as f:
            f.write("".join(f"{path}\t{classes.index(os.path.basename(os.path.dirname(path)))}\n"
                            for path in find_images(upsampling_data[split])))
    path = str(tmp_path / "points.json")
    module.main(["--zoo", zoo, "--runs", tiny_run, "--points", "2", "--json", path])
    document = json.loads(open(path).read())
    assert document["settings"] == ["class", "2", "image"]
    figures = document["runs"][0]["figures"]
    per_class = max(np.bincount([classes.index(os.path.basename(os.path.dirname(p)))
                                 for p in find_images(upsampling_data["train"])]))
    assert [figures[setting]["points"] for setting in document["settings"]] == [3, 6, 3 * per_class]
    # Each setting flags what the run calibrated so flags: `calibrate --means M` on the same images, then predict.
    for setting in document["settings"]:
        run = str(tmp_path / f"run-{setting}")
        shutil.copytree(tiny_run, run)
        code, _, stderr = run_cli(["calibrate", run, "--data", zoo, "--val", os.path.join(zoo, "val.txt"),
                                   "--means", setting])
        assert code == 0, stderr
        predictor = KerasPredictor(run)
        for split, listed in (("test", os.path.join(zoo, "test.txt")), ("open_set", os.path.join(zoo, "open_set.txt"))):
            paths = [os.path.join(zoo, line.split("\t")[0]) for line in open(listed).read().splitlines()]
            flagged = attribute_files(predictor, paths)["unknown"]
            assert figures[setting][split] == pytest.approx(np.mean(flagged), abs=1e-9), (setting, split)
        assert 0.0 <= figures[setting]["auroc"] <= 1.0
    assert "| image | " in capsys.readouterr().out
    # A second call keeps the run (no model loaded); other settings in the same file are refused in one line.
    monkeypatch.setattr(module, "run_features", lambda *args: (_ for _ in ()).throw(AssertionError("loaded")))
    module.main(["--zoo", zoo, "--runs", tiny_run, "--points", "2", "--json", path])
    assert json.loads(open(path).read())["runs"] == document["runs"]
    with pytest.raises(SystemExit):
        module.main(["--zoo", zoo, "--runs", tiny_run, "--points", "4", "--json", path])
    assert "expected figures of this zoo and these settings" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        module.main(["--zoo", zoo, "--runs", tiny_run, "--points", "image"])
    assert "--points: expected numbers of centres per class of 2 or more" in capsys.readouterr().err


def test_every_result_file_renders_or_says_it_has_no_table(capsys):
    # Three files crashed the renderer and it stopped at the first file it had no table for; the robustness tables
    # docs/results.md shows had none.
    render = _module("render_results")
    results = sorted(glob.glob(os.path.join(BENCHMARKS, "results", "*.json")))
    status = render.main(results)
    out, err = capsys.readouterr()
    untabled = [line for line in err.splitlines() if "no table for it" in line]
    assert status == (2 if untabled else 0) and len(untabled) == len(err.splitlines())
    assert out.count("### ") == len(results) - len(untabled) and len(untabled) <= 25
    # The robustness table in the script's column order, as docs/results.md shows it.
    assert ("| plain | closed-set | 100.0 ± 0.0 | 78.3 ± 0.8 | 39.3 ± 1.3 | 20.1 ± 0.1 | 34.5 ± 0.4 | 95.8 ± 0.9 | "
            "33.1 ± 0.4 |") in out


def test_render_results_help_is_help_and_an_unknown_file_is_refused(tmp_path, capsys):
    # --help was read as a result file: "no table for it", exit 2
    render = _module("render_results")
    with pytest.raises(SystemExit) as stopped:
        render.main(["--help"])
    assert stopped.value.code == 0 and "usage: render_results" in capsys.readouterr().out
    other = tmp_path / "notes.json"
    other.write_text("[]")
    assert render.main([str(other)]) == 2
    assert f"render_results: {other}: no table for it" in capsys.readouterr().err
