"""`fit --content-align`: the real images' activation statistics drawn to those of the extra real crops."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from dnadet_tf.cli.main import main
from dnadet_tf.config import make_config
from dnadet_tf.data import read_dataset
from dnadet_tf.errors import DnadetError
from dnadet_tf.extra_real import add_extra_real
from dnadet_tf.losses import content_alignment_loss
from dnadet_tf.pipeline import training_dataset
from dnadet_tf.runs import RunDir


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DNADET_TF_CACHE", str(tmp_path / "cache"))


def _alignment_by_hand(layers, first, second, epsilon=1e-5):
    """The loss as loops over numpy, float64: per channel, each group's mean and standard deviation over its
    images' positions, the squared gaps over the batch's variance, averaged over channels, then layers."""
    gaps = []
    for layer in layers:
        layer = np.asarray(layer, np.float64)
        per_channel = []
        for c in range(layer.shape[-1]):
            a, b = layer[first, ..., c].ravel(), layer[second, ..., c].ravel()
            scale = layer[..., c].var() + epsilon
            gap = (a.mean() - b.mean()) ** 2 + (np.sqrt(a.var() + epsilon) - np.sqrt(b.var() + epsilon)) ** 2
            per_channel.append(gap / scale)
        gaps.append(np.mean(per_channel))
    return np.mean(gaps)


def test_the_loss_matches_a_hand_computation_and_ignores_images_of_neither_group():
    rng = np.random.default_rng(0)
    layers = [rng.normal(0.5, 2.0, (7, 4, 4, 3)).astype(np.float32), rng.normal(size=(7, 2, 2, 5)).astype(np.float32)]
    layers[0][4:6] += 3.0  # the second group shifted in the first layer
    first = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    second = np.array([0, 0, 0, 0, 1, 1, 0], bool)
    loss = float(content_alignment_loss([tf.constant(x) for x in layers], first, second))
    assert loss == pytest.approx(_alignment_by_hand(layers, first, second), rel=1e-4)
    # images of neither group change only the batch's variance, the scale: with it fixed, nothing else
    changed = [x.copy() for x in layers]
    changed[0][3] = -changed[0][3]
    changed[0][6] = -changed[0][6]
    assert float(content_alignment_loss([tf.constant(x) for x in changed], first, second)) == pytest.approx(
        _alignment_by_hand(changed, first, second), rel=1e-4)


def test_the_loss_is_zero_for_equal_groups_or_a_missing_one_and_does_not_move_with_the_scale():
    rng = np.random.default_rng(1)
    layer = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
    same = np.concatenate([layer[:2], layer[:2]])
    groups = np.array([1, 1, 0, 0], bool), np.array([0, 0, 1, 1], bool)
    assert float(content_alignment_loss([tf.constant(same)], *groups)) == pytest.approx(0.0, abs=1e-7)
    assert float(content_alignment_loss([tf.constant(layer)], groups[0], np.zeros(4, bool))) == 0.0
    loss = float(content_alignment_loss([tf.constant(layer)], *groups))
    assert loss > 0
    # in units of the batch's own variance (the epsilon aside): scaling every activation changes nothing
    assert float(content_alignment_loss([tf.constant(100 * layer)], *groups)) == pytest.approx(loss, rel=1e-3)


def test_the_gradient_draws_the_groups_together():
    rng = np.random.default_rng(2)
    x = tf.Variable(rng.normal(size=(4, 2, 2, 1)).astype(np.float32) + np.array([0, 0, 2, 2], np.float32)[:, None,
                                                                                                          None, None])
    groups = tf.constant([True, True, False, False]), tf.constant([False, False, True, True])
    before = float(content_alignment_loss([x], *groups))
    for _ in range(20):
        with tf.GradientTape() as tape:
            loss = content_alignment_loss([x], *groups)
        x.assign_sub(0.1 * tape.gradient(loss, x))
    assert float(content_alignment_loss([x], *groups)) < 0.5 * before


def test_batches_carry_which_images_are_of_other_content(upsampling_data):
    user = read_dataset(upsampling_data["train"], "train")
    files = add_extra_real(user, "packaged")
    assert files.other_content_mask().sum() == np.sum(user.labels == 0) and not files.other_content_mask()[:len(user)].any()
    plain = next(iter(training_dataset(files, make_config("tiny", extra_real="packaged"))))
    assert len(plain) == 2  # without the loss the batches are what they were
    config = make_config("tiny", extra_real="packaged", content_align=1.0)
    images, labels, other = (np.asarray(t) for t in next(iter(training_dataset(files, config))))
    np.testing.assert_array_equal(images, np.asarray(plain[0]))
    np.testing.assert_array_equal(labels, np.asarray(plain[1]))
    assert other.dtype == bool and other.shape == labels.shape
    assert not other[labels != 0].any()  # only real images can be crops of other content
    # the crops are what the packaged photos gave: which images they are follows from the schedule, as the paths do
    from dnadet_tf.pipeline import BalancedSchedule
    k = config.batch_images_per_class(len(files.class_names))
    indices = BalancedSchedule(files.labels, len(files.class_names), k, config.runtime.seed).batch(0)
    np.testing.assert_array_equal(other, files.other_content_mask()[indices])


def test_content_align_needs_extra_real_crops_and_a_weight_of_zero_or_more(upsampling_data, tmp_path, capsys):
    with pytest.raises(DnadetError, match=r"content_align: expected extra real crops .* received content_align=1.0 "
                                          r"with extra_real 'none'"):
        make_config("tiny", content_align=1.0)
    with pytest.raises(DnadetError, match=r"content_align: expected a finite loss weight of 0 or more, received -1"):
        make_config("tiny", extra_real="packaged", content_align=-1.0)
    out = str(tmp_path / "none")
    assert main(["fit", "--data", upsampling_data["train"], "--out", out, "--preset", "tiny", "--steps", "2",
                 "--content-align", "1"]) != 0
    assert "error: --content-align: expected extra real crops to align" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(out, "config.json"))


def test_fit_trains_with_the_loss_logs_it_and_keeps_it_in_the_config(upsampling_data, tmp_path, capsys, monkeypatch):
    from dnadet_tf.config import PRESETS

    monkeypatch.setitem(PRESETS["tiny"], "log_every", 1)  # a record per step: each step's own losses
    out = str(tmp_path / "run")
    assert main(["fit", "--data", upsampling_data["train"], "--out", out, "--preset", "tiny", "--steps", "4",
                 "--extra-real", "packaged", "--content-align", "2.5"]) == 0
    text = capsys.readouterr().out
    assert "content alignment x 2.5 (stages 3-4)" in text and "  align " in text
    assert RunDir(out).config.optimizer.content_align == 2.5
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
        records = [record for record in map(json.loads, f) if record.get("kind") == "train"]
    assert records and all(np.isfinite(r["content_alignment"]) and r["content_alignment"] >= 0 for r in records)
    assert any(r["content_alignment"] > 0 for r in records)
    # The loss each step minimised holds the alignment, times 2.5: the learned weighting of cross-entropy and
    # contrastive loss (losses.AutomaticWeightedLoss, with the weights the step before left, 1 at first) plus it.
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    params = np.ones(2)
    for r in records:
        weighted = np.sum(0.5 / params**2 * np.array([r["cross_entropy"], r["contrastive"]]) + np.log1p(params**2))
        assert r["loss"] == pytest.approx(weighted + 2.5 * r["content_alignment"], rel=1e-5, abs=1e-6), r["step"]
        params = np.asarray(r["loss_weight_params"])


def test_a_training_set_without_a_real_class_is_one_line_naming_the_flag(tmp_path, capsys):
    from synthetic import make_upsampling_tree

    root = str(tmp_path / "data")
    make_upsampling_tree(root, 6, seed=3)
    os.rename(os.path.join(root, "real"), os.path.join(root, "camera"))
    out = str(tmp_path / "run")
    assert main(["fit", "--data", root, "--out", out, "--preset", "tiny", "--steps", "2", "--extra-real", "auto",
                 "--content-align", "1"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: --content-align 1: expected real photos of other content" in err[0]
    assert "received none (--extra-real 'auto'" in err[0]
