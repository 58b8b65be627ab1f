"""`ablate` run again into an existing --out: a finished run or the ablation's own step 1 made with other settings
than the rerun asks (other validation, no validated models kept for --compare-select, another step 1, step 1 on
other photos, steps or width) is refused with one line that names the difference, before any training and with
every file kept; the matching ones are reused."""
import os

import pytest

from clirun import run_cli
from dnadet_tf.ablation import ablate
from dnadet_tf.errors import DnadetError
from synthetic import CLASSES, make_photos

TINY = dict(preset="tiny", steps=4, seeds=(0,))  # the tiny runs every test trains, a few seconds each


def _listing(root, split):
    """An annotation list of every image of `root`/`split` (a folder per class), labels in CLASSES order."""
    lines = []
    for label, name in enumerate(CLASSES):
        folder = os.path.join(root, split, name)
        lines += [f"{os.path.join(folder, file)}\t{label}\n" for file in sorted(os.listdir(folder))]
    return "".join(lines)


@pytest.fixture(scope="module")
def zoo(upsampling_data, tmp_path_factory):
    """A benchmark folder over `upsampling_data`: its train and val images, its test images in every test list."""
    root = os.path.dirname(upsampling_data["train"])
    folder = tmp_path_factory.mktemp("zoo")
    (folder / "classes.txt").write_text("".join(f"{name}\n" for name in CLASSES))
    for split, source in (("train", "train"), ("val", "val"), ("test", "test"), ("cross_seed", "test"),
                          ("cross_loss", "test"), ("cross_finetune", "test"), ("cross_dataset", "test")):
        (folder / f"{split}.txt").write_text(_listing(root, source))
    return str(folder)


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


def _files(folder):
    """{path relative to `folder`: bytes} of every file under it."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def _refused(out, message, **settings):
    """Runs `ablate` into `out` with `settings` over TINY, which must raise DnadetError whose message is
    `message` and leave every file in `out` as it was."""
    before = _files(out)
    with pytest.raises(DnadetError) as raised:
        ablate(**{**TINY, **settings, "out": out})
    assert str(raised.value) == message
    assert _files(out) == before


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
    before = _files(held_out)
    code, _, err = run_cli(["ablate", "--zoo", zoo, "--out", held_out, "--preset", "tiny", "--steps", "4",
                            "--seeds", "1", "--variants", "base", "--no-validation"])
    assert code == 2 and err.count("\n") == 1
    assert err.strip() == (f"dnadet-tf ablate: error: {run_dir}: trained with --val-split 0.25, where this ablation "
                           f"trains with {NO_VALIDATION}; pass another --out, or remove {run_dir} to train it again.")
    assert _files(held_out) == before


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
