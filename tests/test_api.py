"""The public API of `dnadet_tf`: every function's docstring example runs (as a doctest), and the
package imports without TensorFlow."""
import doctest
import os
import subprocess
import sys

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

    unknown = make_photos(str(tmp_path / "photos"), 5, size=(64, 48))
    rows = dnadet_tf.evaluate(tiny_run, upsampling_data["val"], unknown=unknown)
    assert [row.get("kind") for row in rows] == [None, "open_set"]
    assert rows[-1]["metrics"]["unknown_images"] == 5 and 0.0 <= rows[-1]["metrics"]["auroc"] <= 1.0

    uncalibrated = dnadet_tf.load(tiny_run)
    uncalibrated.open_set = None  # as a run fitted without validation data
    capsys.readouterr()
    rows = dnadet_tf.evaluate(uncalibrated, upsampling_data["val"], unknown=[unknown])
    assert [row.get("kind") for row in rows] == [None]
    assert "warning: unknown: the model stores no open-set score" in capsys.readouterr().err
    with pytest.raises(DnadetError, match=r"^unknown: expected paths of images of unknown architectures .* "
                                          r"received int 3\.$"):
        dnadet_tf.evaluate(tiny_run, upsampling_data["val"], unknown=3)
