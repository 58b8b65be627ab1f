"""The public API of `dnadet_tf`: every function's docstring example runs (as a doctest), and the
package imports without TensorFlow."""
import doctest
import os
import subprocess
import sys

import dnadet_tf
from dnadet_tf import api

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
