"""The int8 TFLite file's open-set score: computed in float32 from the int8 backbone's pooled feature, so that
it resolves the region around the threshold (quantized, the Mahalanobis score came out on a grid of about 17 %
of the threshold: 72 images gave 10 distinct scores, a Keras score of 14.4 gave 0.0)."""
import os

import numpy as np
import pytest

from dnadet_tf.exports.equalize import equalized_copy
from dnadet_tf.exports.tflite import (OUTPUT_NAME, SCORE_NAME, convert, dequantize, make_interpreter,
                                      output_tensors, quantize, save_pixels_savedmodel, tensor_description)
from dnadet_tf.pipeline import inference_dataset
from dnadet_tf.predictor import KerasPredictor


def _paths(*roots):
    return sorted(os.path.join(folder, f) for root in roots for folder, _, files in os.walk(root)
                  for f in files if f.endswith(".png"))


@pytest.fixture(scope="module")
def int8_source(tiny_run, upsampling_data, tmp_path_factory):
    """(Keras predictor, SavedModel path, representative dataset) of the tiny run, as `export` converts it to
    int8: from an equalised copy, calibrated on its training images."""
    keras = KerasPredictor(tiny_run)
    preprocess, calibration = keras.preprocess, _paths(upsampling_data["train"])
    equalized, _ = equalized_copy(keras.model, inference_dataset(calibration, preprocess, 8))
    source = save_pixels_savedmodel(equalized, preprocess.resize2, str(tmp_path_factory.mktemp("int8") / "sm"))

    def representative():
        for batch in inference_dataset(calibration, preprocess, 1):
            yield [batch.numpy()]

    return keras, source, representative


@pytest.fixture(scope="module")
def int8_file(int8_source):
    """(Keras predictor, int8 .tflite bytes) of the tiny run, float input and outputs."""
    keras, source, representative = int8_source
    return keras, convert(source, "int8", representative)


def _pixels(keras, upsampling_data):
    paths = _paths(upsampling_data["val"], upsampling_data["test"])
    return np.concatenate(list(inference_dataset(paths, keras.preprocess, 16).as_numpy_iterator()))


def _scores(content, pixels):
    interpreter = make_interpreter(model_content=content, num_threads=1)
    runner = interpreter.get_signature_runner()
    outputs = [runner(**{"pixels": image[None]}) for image in pixels]
    return (np.array([out[OUTPUT_NAME][0] for out in outputs]),
            np.array([np.reshape(out[SCORE_NAME], -1)[0] for out in outputs]))


def test_int8_open_set_score_resolves_the_threshold_region(int8_file, upsampling_data):
    keras, content = int8_file
    pixels = _pixels(keras, upsampling_data)
    expected = keras.attribute_pixels(pixels)
    threshold = keras.open_set["threshold"]
    probabilities, scores = _scores(content, pixels)
    # Quantized, 72 images took 10 distinct scores, up to 52 % of the threshold from Keras's (mean 13 %);
    # computed in float32 from the int8 feature: 72 distinct, at most 13 % (mean 3 %; 24 % and 5 % unequalised).
    assert len(np.unique(scores)) > len(pixels) / 2
    difference = np.abs(scores - expected["ood_score"]) / threshold
    assert difference.max() < 0.3 and difference.mean() < 0.08, (difference.max(), difference.mean())
    # the classifier stays int8 and agrees with Keras
    assert np.mean(probabilities.argmax(-1) == expected["probabilities"].argmax(-1)) >= 0.9


def test_int8_file_keeps_an_int8_backbone_and_float_outputs(int8_file):
    _, content = int8_file
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # without XNNPACK, which would replace the ops by DELEGATE nodes
    interpreter = Interpreter(model_content=content,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()  # pylint: disable=protected-access
    tensors = {details["index"]: details for details in interpreter.get_tensor_details()}
    kinds = {(op["op_name"], np.dtype(tensors[op["outputs"][0]]["dtype"]).name) for op in ops}
    assert ("CONV_2D", "int8") in kinds and ("CONV_2D", "float32") not in kinds  # full integer backbone
    assert ("SQUARED_DIFFERENCE", "float32") in kinds and ("REDUCE_MIN", "float32") in kinds  # the float score
    outputs = output_tensors(interpreter)
    assert {name: np.dtype(details["dtype"]).name for name, details in outputs.items()} == {
        OUTPUT_NAME: "float32", SCORE_NAME: "float32"}
    assert np.dtype(interpreter.get_input_details()[0]["dtype"]).name == "float32"


def test_int8_io_file_has_int8_input_and_probabilities_and_a_float_score(int8_source, upsampling_data):
    # --int8-io: the input and the probabilities are int8 (for accelerators); the score, computed in float32 on
    # the CPU anyway, stays a float32 output (quantized at the output it took 10 distinct values for 72 images).
    keras, source, representative = int8_source
    interpreter = make_interpreter(model_content=convert(source, "int8", representative, int8_io=True),
                                   num_threads=1)
    input_description = tensor_description(interpreter.get_input_details()[0])
    outputs = {name: tensor_description(details) for name, details in output_tensors(interpreter).items()}
    assert input_description["dtype"] == "int8" and input_description["quantization"]["scale"] > 0
    assert outputs[OUTPUT_NAME]["dtype"] == "int8" and outputs[OUTPUT_NAME]["quantization"]["scale"] > 0
    assert outputs[SCORE_NAME]["dtype"] == "float32" and outputs[SCORE_NAME]["quantization"] is None
    pixels = _pixels(keras, upsampling_data)
    expected = keras.attribute_pixels(pixels)
    runner = interpreter.get_signature_runner()
    answers = [runner(pixels=quantize(image[None], input_description["quantization"])) for image in pixels]
    probabilities = dequantize(np.array([a[OUTPUT_NAME][0] for a in answers]), outputs[OUTPUT_NAME]["quantization"])
    scores = np.array([np.reshape(a[SCORE_NAME], -1)[0] for a in answers])
    assert len(np.unique(scores)) > len(pixels) / 2
    difference = np.abs(scores - expected["ood_score"]) / keras.open_set["threshold"]
    assert difference.max() < 0.3 and difference.mean() < 0.08, (difference.max(), difference.mean())
    assert np.mean(probabilities.argmax(-1) == expected["probabilities"].argmax(-1)) >= 0.9
