"""Pins of `adapt`'s thresholds and report figures, of the mix `adapt --photos` makes, and of `robustness` given the
"none" column, each at its boundary or against a hand computation:

- adaptation: the one-class warning above 60 % of the images (none at exactly 60 %), the few-images warning below 20
  (19 warn, 20 do not), the labeled calibration refitted from exactly 2 images of every class (MIN_CALIBRATION_IMAGES),
  each layer's `mean_shift_in_std` and `std_ratio` computed by hand, and a refitted calibration keeping the run's own
  distance score (`cosine`), a non-distance one (`energy`) becoming `mahalanobis`;
- photo_mix: the made fakes laid over further crops, never the real crops of the mix (else every made fake would be
  a real image of the mix plus a residual), the training fakes chosen by one seed-0 generator class after class, the
  residual scale capped at 1, the few-photos warning below 20 usable photos;
- robustness: "none" among `attacks` is the no-attack column, once, not an unknown attack.

The shared runs are reused (tiny_run, untrained_run): `adapt_model` is called directly on the run's model, with
`blend` 0 where the statistics play no part (nothing is estimated then)."""
import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import dnadet_tf.adaptation as adaptation
import dnadet_tf.transplant as transplant
from clirun import run_cli
from dnadet_tf.adaptation import MIN_CALIBRATION_IMAGES, adapt_model, refit_settings, run_report
from dnadet_tf.api import load as load_predictor
from dnadet_tf.config import LABELED_FIRST_STAGE
from dnadet_tf.extra_real import extra_real_crops
from dnadet_tf.labeled_head import labeled_files
from dnadet_tf.model import batchnorm_layers, layer_stage
from dnadet_tf.photo_mix import FEW_PHOTOS, PHOTO_FAKES_PER_CLASS, PHOTO_REAL, few_photos_line, photo_mix, photo_scale
from dnadet_tf.robustness import robustness
from dnadet_tf.runs import RunDir
from synthetic import CLASSES, copy_tree_head, make_photos


def _images(data, count):
    """The first `count` images of the tree `data`, class after class (real, nearest, transposed)."""
    paths = [os.path.join(data, name, image) for name in CLASSES
             for image in sorted(os.listdir(os.path.join(data, name)))]
    assert len(paths) >= count
    return paths[:count]


def _adapted_lines(model, paths, **settings):
    """The lines `adapt_model(model, paths, **settings)` prints, and its report."""
    output = io.StringIO()
    _, report = adapt_model(model, paths, output=output, **settings)
    return output.getvalue().splitlines(), report


# ------------------------------------------------------------------------------------------------ adaptation


@pytest.mark.parametrize("answers, warned", [([0, 6, 4], False), ([0, 7, 3], True), ([4, 0, 6], False)])
def test_the_one_class_warning_is_for_more_than_60_percent_of_the_images(tiny_run, upsampling_data, monkeypatch,
                                                                        answers, warned):
    # 10 images: 0.6 * 10 = 6, so 6 answers of one class are not above the share and 7 are
    assert adaptation.ONE_CLASS_SHARE == 0.6
    monkeypatch.setattr(adaptation, "answer_counts", lambda model, batches: np.array(answers))
    lines, _ = _adapted_lines(RunDir(tiny_run).load_model(), _images(upsampling_data["test"], 10), blend=0)
    one_class = [line for line in lines if "statistics of one class are not the content's" in line]
    if warned:
        assert len(one_class) == 1 and "attributes 7 of the 10 images to 'nearest'" in one_class[0]
    else:
        assert one_class == []


@pytest.mark.parametrize("count, warned", [(19, True), (20, False)])
def test_the_few_images_warning_is_for_fewer_than_20_images(tiny_run, upsampling_data, count, warned):
    lines, report = _adapted_lines(RunDir(tiny_run).load_model(), _images(upsampling_data["test"], count), blend=0)
    assert report["images"] == count
    few = [line for line in lines if "images to adapt on" in line]
    assert few == ([f"warning: {count} images to adapt on; below 20 which images they are decides (5: up to 35 points "
                    f"short of 200 images; 1-2: below the run as trained where it was right; docs/results.md, 'How "
                    f"many images adapt needs')."] if warned else [])


def _labeled(spec, run):
    """(LabeledFiles, groups) of `labeled_files` over the labeled folder `spec`, in the classes of the run `run`, as
    `adapt --labeled` reads them."""
    source = RunDir(run)
    return labeled_files([str(spec)], source.class_names, source.config.preprocess)


def test_the_labeled_calibration_is_refitted_from_exactly_2_images_of_every_class(tiny_run, upsampling_data,
                                                                                 tmp_path):
    assert MIN_CALIBRATION_IMAGES == 2
    model = RunDir(tiny_run).load_model()
    files, groups = _labeled(copy_tree_head(upsampling_data["val"], tmp_path / "two", 2), tiny_run)
    assert files.class_counts().tolist() == [2, 2, 2]
    adapted, report = adapt_model(model, files.paths, blend=0, first_stage=LABELED_FIRST_STAGE, labeled=files,
                                  groups=groups, refit=refit_settings(tiny_run))
    assert adapted.calibration is not None and "calibration" in report and not report["calibration_dropped"]
    written = run_report(report, tiny_run, [], [], [str(tmp_path / "two")])
    assert written["calibration"] == "refitted on the labeled images, each left out in turn"
    # one class with a single image: no image of it can be left out with another beside it, so none is fitted
    os.remove(files.paths[-1])  # the second of the 2 transposed images
    model = RunDir(tiny_run).load_model()
    files, groups = _labeled(tmp_path / "two", tiny_run)
    assert files.class_counts().tolist() == [2, 2, 1]
    adapted, report = adapt_model(model, files.paths, blend=0, first_stage=LABELED_FIRST_STAGE, labeled=files,
                                  groups=groups, refit=refit_settings(tiny_run))
    assert adapted.calibration is None and "calibration" not in report and report["calibration_dropped"]


def test_the_layers_report_the_mean_shift_in_old_standard_deviations_and_the_ratio_of_the_new_to_the_old(
        tiny_run, upsampling_data):
    model = RunDir(tiny_run).load_model()
    layers = batchnorm_layers(model)
    old = [(layer.moving_mean.numpy().astype(np.float64), layer.moving_variance.numpy().astype(np.float64))
           for layer in layers]
    _, report = adapt_model(model, _images(upsampling_data["test"], 36)[::6], blend=1.0, first_stage=3)
    assert [row["name"] for row in report["layers"]] == [layer.name for layer in layers]
    moved = 0
    for row, layer, (old_mean, old_var) in zip(report["layers"], layers, old):
        new_mean, new_var = (layer.moving_mean.numpy().astype(np.float64),
                             layer.moving_variance.numpy().astype(np.float64))
        old_std, new_std = np.sqrt(old_var + layer.epsilon), np.sqrt(new_var + layer.epsilon)
        # mean over the channels of |new mean - old mean| / old std, and of new std / old std
        assert row["mean_shift_in_std"] == pytest.approx(np.mean(np.abs(new_mean - old_mean) / old_std), rel=1e-5)
        assert row["std_ratio"] == pytest.approx(np.mean(new_std / old_std), rel=1e-5)
        if layer_stage(layer) < 3:  # kept: no shift, ratio 1
            assert row["mean_shift_in_std"] == 0.0 and row["std_ratio"] == 1.0
        else:
            moved += 1
            # the old and the new deviations differ, so dividing by the new one would give another figure
            assert row["mean_shift_in_std"] != pytest.approx(np.mean(np.abs(new_mean - old_mean) / new_std), rel=1e-3)
    assert moved == 4  # stages 3 and 4, two BatchNorms each


@pytest.mark.parametrize("score, refitted", [("cosine", "cosine"), ("energy", "mahalanobis")])
def test_a_refitted_calibration_keeps_the_runs_distance_score(tiny_run, upsampling_data, tmp_path, score, refitted):
    run = str(tmp_path / "run")
    shutil.copytree(tiny_run, run)
    code, _, stderr = run_cli(["calibrate", run, "--score", score])
    assert code == 0, stderr
    model = RunDir(run).load_model()
    assert model.calibration.score == score
    files, groups = _labeled(copy_tree_head(upsampling_data["val"], tmp_path / "labeled", 2), run)
    adapted, report = adapt_model(model, files.paths, blend=0, first_stage=LABELED_FIRST_STAGE, labeled=files,
                                  groups=groups, refit=refit_settings(run))
    # a left-out image is scored by a distance: the run's when it is one (cosine), else mahalanobis (the default)
    assert adapted.calibration.score == refitted and "calibration" in report


# ------------------------------------------------------------------------------------------------ photo mix


def _write(folder, images):
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(os.path.join(folder, f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    return paths


def test_the_residual_scale_is_the_ratio_of_the_textures_capped_at_1(tmp_path):
    textured = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3))
    halved = np.round(0.5 * textured + 64)  # the residual (x - blur(x)) is linear: half of the textured one's
    sharp = _write(str(tmp_path / "sharp"), textured.astype(np.uint8))
    smooth = _write(str(tmp_path / "smooth"), halved.astype(np.uint8))
    # crops with half the reals' texture: 0.5; with twice it: 2, capped at 1
    assert photo_scale(smooth, sharp) == pytest.approx(0.5, rel=0.02)
    assert photo_scale(sharp, smooth) == 1.0


@pytest.fixture
def transplanted_calls(monkeypatch):
    """[(fakes, photos, folder, scale)] of every `transplant.transplanted_fakes` call, which writes nothing then."""
    calls = []

    def record(fakes, photos, folder, scale=1.0):
        calls.append((list(fakes), list(photos), folder, scale))
        return [os.path.join(folder, f"fake_{i:05d}.png") for i in range(len(fakes))]

    monkeypatch.setattr(transplant, "transplanted_fakes", record)
    return calls


def test_the_made_fakes_lie_over_further_crops_not_the_real_crops_and_are_drawn_with_seed_0(
        tiny_run, upsampling_data, folder, transplanted_calls):
    crops, made, report = photo_mix(tiny_run, "photos", str(folder / "mix"), scale=0.5)
    # the run's two fake classes, 24 training fakes each: 40 real crops + 40 per fake class are cut
    everything = extra_real_crops("photos", PHOTO_REAL + 2 * PHOTO_FAKES_PER_CLASS, flag="--photos", packaged=False)
    assert crops == everything[:PHOTO_REAL]
    rng = np.random.default_rng(0)  # one generator, class after class in the run's order
    assert [call[2] for call in transplanted_calls] == [str(folder / "mix" / name) for name in CLASSES[1:]]
    for k, (fakes, photos, _, scale) in enumerate(transplanted_calls):
        training = _images(upsampling_data["train"], 72)[24 * (k + 1):24 * (k + 2)]  # class k + 1's, sorted
        assert [os.path.realpath(path) for path in fakes] == [
            os.path.realpath(training[i]) for i in rng.permutation(24)[:PHOTO_FAKES_PER_CLASS]]
        # class k's fakes lie over crops 40 + 40 k, ...: none of them a real crop of the mix, nor another class's
        start = PHOTO_REAL + k * PHOTO_FAKES_PER_CLASS
        assert photos == everything[start:start + 24] and not set(photos) & set(crops)
        assert scale == 0.5
    assert not set(transplanted_calls[0][1]) & set(transplanted_calls[1][1])
    assert report["fakes_per_class"] == {"nearest": 24, "transposed": 24} and list(made) == ["nearest", "transposed"]


def test_the_few_photos_warning_is_for_fewer_than_20_usable_photos(tmp_path):
    assert FEW_PHOTOS == 20
    photos = make_photos(str(tmp_path / "photos"), 20, size=(128, 128))
    assert few_photos_line(photos) is None
    os.remove(os.path.join(photos, "p19.jpg"))
    assert few_photos_line(photos).startswith(f"warning: --photos {photos}: 19 photo(s), fewer than 20: the crops")
    # a photo below 128 px is counted but not usable
    Image.fromarray(np.zeros((100, 160, 3), np.uint8)).save(os.path.join(photos, "small.png"))
    assert few_photos_line(photos).startswith(f"warning: --photos {photos}: 19 of its 20 photos usable (readable, "
                                              f"128 px or more on the shorter side), fewer than 20")


# ------------------------------------------------------------------------------------------------ robustness


def test_none_among_the_attacks_is_the_no_attack_column_once(untrained_run, upsampling_data, tmp_path):
    data = copy_tree_head(upsampling_data["test"], tmp_path / "test", 1)
    predictor = load_predictor(untrained_run)
    quiet = lambda line: None  # noqa: E731
    rows = robustness(predictor, [data], attacks=("none", "blur"), seed=1, progress=quiet)
    assert list(rows[0]["accuracy"]) == ["none", "blur"]
    alone = robustness(predictor, [data], attacks=("blur",), seed=1, progress=quiet)
    assert rows[0]["accuracy"] == alone[0]["accuracy"] and rows[0]["macro_f1"] == alone[0]["macro_f1"]
