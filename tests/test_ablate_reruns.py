"""`ablate` run again into an existing --out: a finished run or the ablation's own step 1 made with other settings
than the rerun asks (other validation, no validated models kept for --compare-select, another step 1, step 1 on
other photos, steps or width, any training setting given on one of the two runs only) is refused with one line that
names the difference, before any training and with every file kept; the matching ones are reused."""
import os

import pytest

from clirun import files_under, run_cli
from dnadet_tf.ablation import VARIANTS, ablate
from dnadet_tf.errors import DnadetError
from synthetic import make_photos, write_benchmark

TINY = dict(preset="tiny", steps=4, seeds=(0,))  # the tiny runs every test trains, a few seconds each


@pytest.fixture(scope="module")
def zoo(upsampling_data, tmp_path_factory):
    """A benchmark folder over `upsampling_data`: its train and val images, its test images in every test list."""
    return write_benchmark(upsampling_data, tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def held_out(zoo, tmp_path_factory):
    """--out of an ablation of Base validated on the share 0.25 of train.txt held out."""
    out = str(tmp_path_factory.mktemp("held-out") / "ablation")
    ablate(zoo, out, variants=["base"], fit_overrides={"val_split": 0.25}, **TINY)
    return out


@pytest.fixture(scope="module")
def on_val_txt(zoo, tmp_path_factory):
    """--out of an ablation of Base validated on the zoo's val.txt, without --compare-select."""
    out = str(tmp_path_factory.mktemp("val-txt") / "ablation")
    ablate(zoo, out, variants=["base"], **TINY)
    return out


@pytest.fixture(scope="module")
def own_step1(zoo, tmp_path_factory):
    """(--out of an ablation of Base+PT from its own step 1, pre-trained 2 steps on 10 photos; the photos)."""
    root = tmp_path_factory.mktemp("own-step1")
    photos = make_photos(str(root / "photos"), 10)
    out = str(root / "ablation")
    ablate(zoo, out, variants=["base_pt"], photos=photos, pretrain_steps=2, **TINY)
    return out, photos


def _refused(out, message, **settings):
    """Runs `ablate` into `out` with `settings` over TINY, which must raise DnadetError whose message is
    `message` and leave every file in `out` as it was."""
    before = files_under(out)
    with pytest.raises(DnadetError) as raised:
        ablate(**{**TINY, **settings, "out": out})
    assert str(raised.value) == message
    assert files_under(out) == before


def _again(folder, to="train it again"):
    return f"; pass another `out`, or remove {folder} to {to}."


VAL_TXT = "the zoo's val.txt as validation images (no `val_split`)"
NO_VALIDATION = "no validation images (validation=False, --no-validation)"


def test_a_run_validated_on_a_held_out_share_is_not_reused_for_other_validation(zoo, held_out):
    run_dir = os.path.join(held_out, "base", "seed0")
    for settings, asked in (({}, VAL_TXT), ({"validation": False}, NO_VALIDATION),
                            ({"fit_overrides": {"val_split": 0.5}}, "`val_split` 0.5")):
        _refused(held_out, f"{run_dir}: trained with `val_split` 0.25, where this ablation trains with {asked}"
                 + _again(run_dir), zoo=zoo, variants=["base"], **settings)
    # the same share again: reused, nothing trained
    document = ablate(zoo, held_out, variants=["base"], fit_overrides={"val_split": 0.25}, **TINY)
    assert document["variants"][0]["seeds"][0]["run_dir"] == run_dir


def test_a_run_validated_on_val_txt_is_not_reused_for_a_held_out_share_or_none(zoo, on_val_txt):
    run_dir = os.path.join(on_val_txt, "base", "seed0")
    for settings, asked in (({"fit_overrides": {"val_split": 0.25}}, "`val_split` 0.25"),
                            ({"validation": False}, NO_VALIDATION)):
        _refused(on_val_txt, f"{run_dir}: trained with {VAL_TXT}, where this ablation trains with {asked}"
                 + _again(run_dir), zoo=zoo, variants=["base"], **settings)


def test_the_command_names_the_validation_flags_in_one_line(zoo, held_out):
    run_dir = os.path.join(held_out, "base", "seed0")
    before = files_under(held_out)
    code, _, err = run_cli(["ablate", "--zoo", zoo, "--out", held_out, "--preset", "tiny", "--steps", "4",
                            "--seeds", "1", "--variants", "base", "--no-validation"])
    assert code == 2 and err.count("\n") == 1
    assert err.strip() == (f"dnadet-tf ablate: error: {run_dir}: trained with --val-split 0.25, where this ablation "
                           f"trains with {NO_VALIDATION}; pass another --out, or remove {run_dir} to train it again.")
    assert files_under(held_out) == before


def test_compare_select_on_runs_trained_without_it_names_the_flag(zoo, on_val_txt):
    run_dir = os.path.join(on_val_txt, "base", "seed0")
    _refused(on_val_txt, f"{run_dir}: trained without `compare_select` (no validated models kept to compare the "
             f"selection rules on), where this ablation asks for it" + _again(run_dir),
             zoo=zoo, variants=["base"], compare_select=True)


def test_an_own_step1_pre_trained_otherwise_is_refused_naming_the_flag(zoo, own_step1):
    out, photos = own_step1
    step1 = os.path.join(out, "pretrain")
    other_photos = make_photos(os.path.join(os.path.dirname(out), "other-photos"), 10, seed=1)
    for settings, flag, stored, asked in (
            (dict(photos=other_photos, pretrain_steps=2), "photos", photos, other_photos),
            (dict(photos=photos, pretrain_steps=3), "pretrain_steps", 2, 3),
            (dict(photos=photos), "pretrain_steps", 2, 40),  # the tiny preset's
            (dict(photos=photos, pretrain_steps=2, fit_overrides={"width": 0.125}), "width", 0.0625, 0.125)):
        _refused(out, f"{step1}: pre-trained with `{flag}` {stored!r}, where this ablation pre-trains with {asked!r}"
                 + _again(step1, "pre-train it again"), zoo=zoo, variants=["base_pt"], **settings)
    # the same flags again: the step 1 and the run reused, and named as the step 1 the run started from
    document = ablate(zoo, out, variants=["base_pt"], photos=photos, pretrain_steps=2, **TINY)
    assert document["pretrained"] == step1


def test_runs_from_another_step1_are_refused_before_any_pre_training(zoo, own_step1, tmp_path):
    import shutil

    out, photos = own_step1
    run_dir = os.path.join(out, "base_pt", "seed0")
    started_from = repr(os.path.join(out, "pretrain"))
    chosen = " (chosen by `pretrained`, else by `photos`, `pretrain_steps` and `width`)"
    _refused(out, f"{run_dir}: trained from step 1 {started_from}, where this ablation trains from 'packaged'"
             + chosen + _again(run_dir), zoo=zoo, variants=["base_pt"], pretrained="packaged")
    # the run in another --out: its own step 1 would be pre-trained there, but the run did not start from it
    copy = str(tmp_path / "ablation")
    shutil.copytree(run_dir, os.path.join(copy, "base_pt", "seed0"))
    copied = os.path.join(copy, "base_pt", "seed0")
    _refused(copy, f"{copied}: trained from step 1 {started_from}, where this ablation trains from "
             f"{os.path.join(copy, 'pretrain')!r}" + chosen + _again(copied),
             zoo=zoo, variants=["base_pt"], photos=photos, pretrain_steps=2)
    assert not os.path.exists(os.path.join(copy, "pretrain"))


def test_a_run_stopped_in_training_is_not_continued_with_other_validation(zoo, held_out, tmp_path):
    import shutil

    out = str(tmp_path / "ablation")
    stopped = os.path.join(out, "base", "seed0")
    shutil.copytree(os.path.join(held_out, "base", "seed0"), stopped)
    shutil.rmtree(os.path.join(stopped, "evaluation"))  # as if stopped after its last checkpoint
    _refused(out, f"{stopped}: trained with `val_split` 0.25, where this ablation trains with {VAL_TXT}"
             + _again(stopped), zoo=zoo, variants=["base"])


# Settings of the `given` fixture's run: other values than the tiny preset's, but `extra_real` "none" (its "", off).
GIVEN = {"learning_rate": 0.5, "statistics_shift": 0.1, "augment": ("jpeg",), "extra_real": "none"}


@pytest.fixture(scope="module")
def given(zoo, tmp_path_factory):
    """--out of an ablation of Base trained for the preset's steps (no `steps`) with the settings GIVEN."""
    out = str(tmp_path_factory.mktemp("given") / "ablation")
    ablate(zoo, out, preset="tiny", seeds=(0,), variants=["base"], fit_overrides=GIVEN)
    return out


@pytest.fixture(scope="module")
def every_variant(zoo, tmp_path_factory):
    """The settings of an ablation of the four variants with `compare_select` and `frozen_stages` 1 (which Base and
    Base+PCL, without a step 1, leave out) from its own step 1, which it ran into their `out`."""
    root = tmp_path_factory.mktemp("every-variant")
    settings = dict(TINY, zoo=zoo, out=str(root / "ablation"), photos=make_photos(str(root / "photos"), 10),
                    pretrain_steps=2, compare_select=True, fit_overrides={"frozen_stages": 1})
    ablate(**settings)
    return settings


def _state(folder):
    """{path relative to `folder`: (modification time, bytes)} of every file under it but the ablation's tables,
    which every rerun writes again."""
    return {path: (os.stat(os.path.join(folder, path)).st_mtime_ns, data) for path, data in files_under(folder).items()
            if path not in ("ablation.json", "ablation.md")}


def _reused(**settings):
    """Runs `ablate` with `settings`, which must reuse every run (and step 1) of their `out`: no file of it written."""
    before = _state(settings["out"])
    document = ablate(**settings)
    assert _state(settings["out"]) == before
    return document


def test_every_variant_is_reused_by_an_identical_rerun_and_refused_by_one_at_the_presets_steps(every_variant):
    _reused(**every_variant)
    # another selection rule, or no `compare_select`: the runs' kept models serve it
    _reused(**dict(every_variant, fit_overrides={"frozen_stages": 1, "select": "last"}))
    _reused(**dict(every_variant, compare_select=False))
    settings = dict(every_variant)
    out = settings.pop("out")
    for folder, _, _ in VARIANTS:  # trained for 4 steps: the tiny preset's 40 are other runs
        run_dir = os.path.join(out, folder, "seed0")
        _refused(out, f"{run_dir}: trained with steps 4, where this ablation trains 40" + _again(run_dir),
                 **dict(settings, variants=[folder], steps=None))


def test_steps_given_on_one_run_only_is_refused(zoo, on_val_txt, given):
    for out, settings, stored, asked in ((on_val_txt, {}, 4, 40), (given, {"fit_overrides": GIVEN, "steps": 4}, 40, 4)):
        run_dir = os.path.join(out, "base", "seed0")
        _refused(out, f"{run_dir}: trained with steps {stored}, where this ablation trains {asked}" + _again(run_dir),
                 **dict(dict(zoo=zoo, variants=["base"], steps=None), **settings))


def test_the_learning_rate_given_on_one_run_only_is_refused(zoo, on_val_txt, given):
    without = {key: value for key, value in GIVEN.items() if key != "learning_rate"}
    for out, settings, stored, asked in ((given, {"fit_overrides": without, "steps": None}, 0.5, 0.002),
                                         (on_val_txt, {"fit_overrides": {"learning_rate": 0.5}}, 0.002, 0.5)):
        run_dir = os.path.join(out, "base", "seed0")
        _refused(out, f"{run_dir}: trained with learning_rate {stored}, where this ablation trains {asked}"
                 + _again(run_dir), zoo=zoo, variants=["base"], **settings)


def test_a_fit_override_given_on_one_run_only_is_refused(zoo, on_val_txt, given):
    for key, stored, preset in (("statistics_shift", 0.1, 0.0), ("augment", ("jpeg",), ())):
        without = {name: value for name, value in GIVEN.items() if name != key}
        run_dir = os.path.join(given, "base", "seed0")
        _refused(given, f"{run_dir}: trained with {key} {stored!r}, where this ablation trains {preset!r}"
                 + _again(run_dir), zoo=zoo, variants=["base"], fit_overrides=without, steps=None)
        run_dir = os.path.join(on_val_txt, "base", "seed0")
        _refused(on_val_txt, f"{run_dir}: trained with {key} {preset!r}, where this ablation trains {stored!r}"
                 + _again(run_dir), zoo=zoo, variants=["base"], fit_overrides={key: stored})


def test_a_setting_spelled_otherwise_is_the_same_setting(zoo, on_val_txt, given):
    # a list for a tuple, a number without its decimal point, `extra_real` off as "none" or "" (the preset's)
    spelled = dict(GIVEN, augment=["jpeg"], extra_real="")
    _reused(zoo=zoo, out=given, preset="tiny", seeds=(0,), variants=["base"], fit_overrides=spelled)
    _reused(**dict(TINY, zoo=zoo, out=on_val_txt, variants=["base"],
                   fit_overrides={"statistics_shift": 0, "extra_real": "none"}))


def test_precision_auto_is_compared_as_this_machine_resolves_it(zoo, on_val_txt, tmp_path, monkeypatch):
    import json
    import shutil

    from dnadet_tf import config

    out = str(tmp_path / "ablation")
    shutil.copytree(on_val_txt, out)
    run_dir = os.path.join(out, "base", "seed0")
    path = os.path.join(run_dir, "config.json")
    with open(path, encoding="utf-8") as f:
        stored = json.load(f)
    stored["runtime"]["precision"] = "mixed_bfloat16"  # as `auto` resolved on the machine that trained it
    with open(path, "w", encoding="utf-8") as f:
        json.dump(stored, f)
    monkeypatch.setitem(config.PRESETS, "tiny", dict(config.PRESETS["tiny"], precision="auto"))
    monkeypatch.setattr(config, "auto_precision", lambda: "mixed_bfloat16")  # the same machine: reused
    _reused(**dict(TINY, zoo=zoo, out=out, variants=["base"]))
    monkeypatch.setattr(config, "auto_precision", lambda: "float32")  # a machine where `auto` trains otherwise
    _refused(out, f"{run_dir}: trained with precision 'mixed_bfloat16', where this ablation trains 'float32'"
             + _again(run_dir), zoo=zoo, variants=["base"])
