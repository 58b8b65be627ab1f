"""The public API of `dnadet_tf`: every function's docstring example runs (as a doctest), and the
package imports without TensorFlow."""
import doctest
import os
import subprocess
import sys

import numpy as np
import pytest

import dnadet_tf
from dnadet_tf import api
from dnadet_tf.errors import DnadetError

ORDER = ("fit", "load", "predict", "evaluate", "export")  # later examples use the run `fit` writes


def test_every_docstring_example_runs(upsampling_data, tmp_path):
    globs = {"DATA": os.path.dirname(upsampling_data["train"]), "TMP": str(tmp_path)}
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tested = []
    for name in ORDER:
        (test,) = finder.find(getattr(api, name), name, globs=dict(globs))
        assert test.examples, f"{name}: no example in its docstring"
        result = runner.run(test)
        assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
        tested.append(name)
    assert set(tested) | {"Backbone", "Classifier", "probabilities"} == set(dnadet_tf.__all__)


def test_model_class_examples_run():
    from dnadet_tf import model

    for cls in (model.Backbone, model.Classifier):
        (test,) = [t for t in doctest.DocTestFinder().find(cls, cls.__name__, globs={}) if t.name == cls.__name__]
        assert test.examples
        assert doctest.DocTestRunner().run(test).failed == 0


def test_the_package_imports_without_tensorflow_and_resolves_names_on_use():
    code = ("import sys, dnadet_tf; assert 'tensorflow' not in sys.modules; "
            "assert dnadet_tf.Classifier.__name__ == 'Classifier' and callable(dnadet_tf.fit); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_evaluate_scores_unknown_images_as_the_command_does_and_warns_when_it_cannot(
        tiny_run, upsampling_data, tmp_path, capsys):
    from synthetic import make_photos

    from dnadet_tf.data import find_images
    from dnadet_tf.openset import auroc, fpr_at_known_rate
    from dnadet_tf.predictor import attribute_files

    unknown = make_photos(str(tmp_path / "photos"), 5, size=(64, 48))
    rows = dnadet_tf.evaluate(tiny_run, upsampling_data["val"], unknown=unknown)
    assert [row.get("kind") for row in rows] == [None, "open_set"]
    m = rows[-1]["metrics"]
    assert m["unknown_images"] == 5 and 0.0 <= m["auroc"] <= 1.0
    # as `evaluate --unknown` scores them: the stored score of the known (val) images against the unknown ones,
    # the unknown images the positives
    uncalibrated = dnadet_tf.load(tiny_run)
    known_scores = attribute_files(uncalibrated, find_images(upsampling_data["val"]))["ood_score"]
    unknown_scores = attribute_files(uncalibrated, find_images(unknown))["ood_score"]
    assert m["known_images"] == len(known_scores)
    assert m["auroc"] == pytest.approx(auroc(known_scores, unknown_scores))
    assert m["fpr_at_95_tpr"] == pytest.approx(fpr_at_known_rate(known_scores, unknown_scores))
    assert m["unknown_flagged"] == pytest.approx(np.mean(unknown_scores > uncalibrated.open_set["threshold"]))

    uncalibrated.open_set = None  # as a run fitted without validation data
    capsys.readouterr()
    rows = dnadet_tf.evaluate(uncalibrated, upsampling_data["val"], unknown=[unknown])
    assert [row.get("kind") for row in rows] == [None]
    assert "warning: unknown: the model stores no open-set score" in capsys.readouterr().err
    with pytest.raises(DnadetError, match=r"^unknown: expected paths of images of unknown architectures .* "
                                          r"received int 3\.$"):
        dnadet_tf.evaluate(tiny_run, upsampling_data["val"], unknown=3)
