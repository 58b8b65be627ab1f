"""TFLite attributors: float32, float16, dynamic-range and full-integer int8.

Each .tflite file maps preprocessed pixels to probabilities:
  input  `pixels`        [1, S, S, 3]  float32 in [-1, 1]   (int8 with --int8-io)
  output `probabilities` [1, C]        float32              (int8 with --int8-io)
  output `ood_score`     [1]           float32, only for a calibrated run: the open-set score;
                                       the image is "unknown" when it exceeds the sidecar's threshold
Outputs are found by name through the file's signature (`serving_default`), not by position.
Image decoding and the preprocessing chain stay outside the file (they would need
Flex ops that LiteRT on phones lacks); they are spelled out, with the labels and
the quantization parameters, in a sidecar JSON beside each file
(`NAME-int8.tflite` -> `NAME-int8.json`, see `sidecar_path`). tflite-support's
metadata writer cannot be installed beside TF 2.21 (it pins protobuf < 4), hence
the sidecar.

Conversion goes through a SavedModel of the pixels -> probabilities function with
a fixed input shape (`tf.lite.TFLiteConverter.from_saved_model`), so the
classifier's variables are frozen into constants.
"""
import contextlib
import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from dnadet_tf.exports.graph import ClassifierModule
from dnadet_tf.native_logs import stderr_fd_hidden
from dnadet_tf.runs import write_json_atomic

TFLITE_FORMATS = ("float32", "float16", "dynamic", "int8")
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
SCORE_NAME = "ood_score"


def tflite_filename(name, fmt):
    return f"{name}-{fmt}.tflite"


def sidecar_path(tflite_path):
    """`X/NAME-int8.tflite` -> `X/NAME-int8.json`."""
    return os.path.splitext(tflite_path)[0] + ".json"


def save_pixels_savedmodel(model, size, path):
    """Writes the fixed-shape pixels -> probabilities SavedModel the converter reads.

    Signature `serving_default`: pixels float32 [1, size, size, 3] -> probabilities float32 [1, C]
    (and ood_score float32 [1] when the classifier holds a `Calibration`).
    """
    module = ClassifierModule(model)

    def serve(pixels):
        if not module.open_set:
            return {OUTPUT_NAME: module.probabilities(pixels)}
        outputs = module.attribute(pixels)
        return {OUTPUT_NAME: outputs["probabilities"], SCORE_NAME: outputs["ood_score"]}

    module.serve = tf.function(serve, input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name=INPUT_NAME)])
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def convert(savedmodel_path, fmt, representative_dataset=None, int8_io=False):
    """Converts the SavedModel of `save_pixels_savedmodel` to TFLite bytes.

    fmt: float32 | float16 (float16 weights) | dynamic (int8 weights, float
    activations) | int8 (full integer, TFLITE_BUILTINS_INT8; needs
    `representative_dataset`, a callable returning an iterator of
    [float32 (1, S, S, 3)] lists; a calibrated run's open-set score is computed
    in float32 from the dequantized pooled feature, `_int8_with_float_score`).
    `int8_io` makes the int8 model's input and probabilities int8 too (a calibrated
    run's `ood_score` stays float32); otherwise they stay float32 (quantize/dequantize
    inside).
    """
    if fmt not in TFLITE_FORMATS:
        raise ValueError(f"unknown TFLite format {fmt!r}; expected one of {TFLITE_FORMATS}")
    converter = tf.lite.TFLiteConverter.from_saved_model(savedmodel_path, signature_keys=["serving_default"])
    if fmt == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt == "int8":
        if representative_dataset is None:
            raise ValueError("int8 conversion needs a representative dataset")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        if SCORE_NAME in _signature_outputs(savedmodel_path):
            with native_logs_hidden():
                return _int8_with_float_score(converter, representative_dataset, int8_io)
    with native_logs_hidden():
        return converter.convert()


def _signature_outputs(savedmodel_path):
    """The output names of the `serving_default` signature of the SavedModel at `savedmodel_path`."""
    from tensorflow.python.saved_model import loader_impl

    meta_graph = loader_impl.parse_saved_model(savedmodel_path).meta_graphs[0]
    return set(meta_graph.signature_def["serving_default"].outputs)


def _int8_with_float_score(converter, representative_dataset, int8_io):
    """Full-integer int8 bytes of a calibrated run's model whose open-set score is computed in float32.

    Quantized, the Mahalanobis score came out on a grid of about 17 % of its threshold (the squared
    differences and per-class sums take one int8 scale each, set by the farthest class in calibration, and
    REDUCE_MIN keeps its input's scale): 72 images gave 10 distinct scores. The ops only the score needs
    (`float_score_nodes`) are therefore left out of quantization, through the converter's selective
    quantization (`tf.lite.experimental.QuantizationDebugger`, `denylisted_nodes`), with `TFLITE_BUILTINS`
    beside `TFLITE_BUILTINS_INT8` for them: the backbone and the probabilities stay int8; the pooled feature
    is dequantized once. With `int8_io`, the input and the `probabilities` output become int8 afterwards
    (`modify_model_io_type`, which removes the input's QUANTIZE and the outputs' DEQUANTIZE ops and leaves an
    output no DEQUANTIZE gives as it is): the score stays a float32 output. Quantized at the output
    (`fully_quantize`), it took the quantizer's scale, about a sixth of the threshold again: 72 images gave
    10 distinct scores.
    """
    import warnings

    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    with warnings.catch_warnings():  # the debugger's tf.lite.Interpreter warns that it is deprecated
        warnings.simplefilter("ignore")
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                             debug_dataset=representative_dataset)
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=float_score_nodes(debugger.calibrated_model), fully_quantize=False)
        content = debugger.get_nondebug_quantized_model()
    if int8_io:  # the input and `probabilities` only: the score, computed in float32, stays a float32 output
        from tensorflow.lite.python.util import modify_model_io_type

        logger = tf.get_logger()
        level = logger.level  # it warns that the outputs it leaves float "contain unsupported operations"
        logger.setLevel("ERROR")
        try:
            content = modify_model_io_type(content, tf.int8, tf.int8)
        finally:
            logger.setLevel(level)
    return content


def float_score_nodes(content):
    """The output tensor names of the ops that the int8 file computes in float32, in the (float, calibrated)
    .tflite bytes `content`: those the `ood_score` output needs and the `probabilities` output does not,
    and the pooled feature (a MEAN) they start from, the backbone's last op."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    outputs = {name: details["index"] for name, details in output_tensors(interpreter).items()}
    ops = interpreter._get_ops_details()  # pylint: disable=protected-access
    names = {details["index"]: details["name"] for details in interpreter.get_tensor_details()}
    producer = {tensor: op for op in ops for tensor in op["outputs"]}

    def needed(tensor):
        seen, pending = set(), [tensor]
        while pending:
            op = producer.get(pending.pop())
            if op is not None and op["index"] not in seen:
                seen.add(op["index"])
                pending.extend(op["inputs"])
        return seen

    score_only = needed(outputs[SCORE_NAME]) - needed(outputs[OUTPUT_NAME])
    feature = {producer[tensor]["index"] for index in score_only for tensor in ops[index]["inputs"]
               if tensor in producer and producer[tensor]["index"] not in score_only
               and producer[tensor]["op_name"] == "MEAN"}
    return [names[ops[index]["outputs"][0]] for index in sorted(score_only | feature)]


def native_logs_hidden():
    """A context that hides what LiteRT's and the converter's C++ code print on file descriptor 2 (the XNNPACK
    delegate's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", the quantizer's settings) while
    TensorFlow's own log lines are hidden (TF_CPP_MIN_LOG_LEVEL 3: the CLI without --verbose); a failure still
    reaches the user as the exception raised. A no-op context otherwise."""
    quiet = os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3"
    return stderr_fd_hidden() if quiet else contextlib.nullcontext()


def make_interpreter(model_path=None, model_content=None, num_threads=None):
    """A LiteRT interpreter with tensors allocated.

    num_threads defaults to the CPUs of this machine. LiteRT applies its default
    XNNPACK delegate (float32, float16-weight and int8 kernels) when it can.
    """
    from ai_edge_litert.interpreter import Interpreter

    threads = num_threads or os.cpu_count() or 1
    with native_logs_hidden():
        interpreter = Interpreter(model_path=model_path, model_content=model_content, num_threads=threads)
        interpreter.allocate_tensors()
    return interpreter


def tensor_description(details):
    """JSON-able name, shape, dtype and quantization (None when float) of a tensor."""
    scale, zero_point = details["quantization"]
    quantization = None
    if np.dtype(details["dtype"]).kind in "iu" and scale:
        quantization = {"scale": float(scale), "zero_point": int(zero_point)}
    return {
        "name": details["name"],
        "shape": [int(d) for d in details["shape"]],
        "dtype": np.dtype(details["dtype"]).name,
        "quantization": quantization,
    }


def _crop_condition(c, crop_square):
    """When the crop step applies, and what happens to the other images, as text."""
    if crop_square:
        return f"If H != W, or H == W > {c}", f"A square image of at most {c} px is not cropped."
    return "If H != W", "A square image is not cropped."


def _release_mode_steps(c, r1, r2, crop_square=False):
    """The crop, resize and scaling steps of preprocessing mode `release` (dnadet_tf.preprocess)."""
    when, otherwise = _crop_condition(c, crop_square)
    return [
        f"{when}: keep the centre {c}x{c} square in native pixels, no resampling: top = round((H - {c}) / 2), "
        f"left = round((W - {c}) / 2), halves rounded to even (torchvision's CenterCrop). {otherwise}",
        f"Resize to {r1}x{r1}, then to {r2}x{r2}, each exactly as Pillow's Image.resize(size, BICUBIC) on 8-bit "
        "RGB (what the authors' release trained with): the horizontal pass, rounded to 8 bits, then the vertical "
        "pass, rounded to 8 bits. Per pass from n to m pixels, in double precision: scale = n / m, f = max(scale, "
        "1), support = 2 f; output i has centre = (i + 0.5) * scale and taps j from max(int(centre - support + "
        "0.5), 0) to min(int(centre + support + 0.5), n) - 1, weights k((j - centre + 0.5) * (1 / f)) with the "
        "Keys kernel k (a = -0.5), divided by their sum, then as integers w = trunc(w * 2^22 +- 0.5) (away from "
        "zero); output = clamp(floor((sum_j w_j x_j + 2^21) / 2^22), 0, 255). Pillow's own resize gives exactly "
        "these values; dnadet_tf.preprocess.pil_bicubic_resize does it in TensorFlow.",
        "Scale to [-1, 1] as torchvision does: (x / 255 - 0.5) / 0.5 in float32.",
    ]


def app_preprocessing_steps(preprocess, input_description):
    """The exact steps an app performs before calling the model, as text lines."""
    c, r1, r2, m = preprocess.crop_size, preprocess.resize1, preprocess.resize2, preprocess.min_side
    steps = [
        "Decode the image file to 8-bit RGB, shape (H, W, 3) (first frame of an animation; dnadet_tf.images.load_rgb "
        "also applies EXIF orientation and composites transparency over white).",
        f"Refuse an image that is too small: a square one with sides below {m} px, a non-square one with a side "
        f"below {max(c, m)} px (dnadet-tf and the SavedModel refuse them too; the model's answer would be noise).",
    ]
    if preprocess.mode == "release":
        steps += _release_mode_steps(c, r1, r2, preprocess.crop_square)
    else:
        when, otherwise = _crop_condition(c, preprocess.crop_square)
        steps += [
            f"{when}: keep the centre {c}x{c} square in native pixels, no resampling: top = (H - {c}) // 2, "
            f"left = (W - {c}) // 2 (both sides must be >= {c}). {otherwise}",
            f"Resize to {r1}x{r1}, then to {r2}x{r2}, each in float32: separable bicubic (Keys cubic kernel, "
            "a = -0.5), half-pixel centres (source x = (i + 0.5) * in / out - 0.5), kernel widened by in/out when "
            "shrinking (antialiasing), taps outside the image dropped and the weights renormalised to sum 1; clip "
            "to [0, 255] after each resize (this is tf.image.resize(method='bicubic', antialias=True)).",
            "Scale to [-1, 1]: x / 127.5 - 1.",
        ]
    steps.append(f"Lay out as NHWC float32 [1, {r2}, {r2}, 3], channels in RGB order.")
    quantization = input_description.get("quantization")
    if quantization:
        steps.append(
            f"Quantize to int8: q = clamp(round_half_away_from_zero(x / {quantization['scale']!r}) "
            f"+ {quantization['zero_point']}, -128, 127)."
        )
    return steps


def output_steps(output_description, open_set=None, score_description=None):
    """The app's steps after inference, for the sidecar's `app_postprocessing`: dequantize what an int8-io
    file answers (the probabilities, and the open-set score, `score_description`, when it is int8), take
    the top class, compare the score with the threshold."""
    quantization = output_description.get("quantization")
    steps = []
    if quantization:
        steps.append(f"Dequantize: probability = (q - {quantization['zero_point']}) * {quantization['scale']!r}.")
    steps.append("Top class = argmax; class_names[i] names output i.")
    if open_set:
        score_quantization = (score_description or {}).get("quantization")
        dequantized = (f", dequantized: score = (q - {score_quantization['zero_point']}) * "
                       f"{score_quantization['scale']!r}," if score_quantization else "")
        steps.append(f"Read the output '{SCORE_NAME}' (by name, from the signature 'serving_default'){dequantized} "
                     f"and when the score is above {open_set['threshold']!r}, answer 'unknown architecture' "
                     f"(nearest known: the top class).")
    return steps


def output_tensors(interpreter):
    """{output name: tensor details} of a file's `serving_default` signature (its only one)."""
    return interpreter.get_signature_runner().get_output_details()


def write_tflite(content, path, fmt, common_metadata, preprocess, extra=None, open_set=None):
    """Writes `content` to `path` and its sidecar JSON; returns the sidecar dict.

    `open_set` ({"score", "threshold", "temperature"}) goes into the sidecar of a calibrated run's file.
    """
    with open(path, "wb") as f:
        f.write(content)
    return write_sidecar(content, path, fmt, common_metadata, preprocess, extra, open_set)


def write_sidecar(content, path, fmt, common_metadata, preprocess, extra=None, open_set=None):
    """Writes (or rewrites) the sidecar JSON of the .tflite file at `path`, whose bytes are `content`;
    returns the sidecar dict. The file itself is not written."""
    interpreter = make_interpreter(model_content=content, num_threads=1)
    input_description = tensor_description(interpreter.get_input_details()[0])
    outputs = {name: tensor_description(details) for name, details in output_tensors(interpreter).items()}
    output_description = outputs[OUTPUT_NAME]
    sidecar = {
        **common_metadata,
        "format": fmt,
        "file": os.path.basename(path),
        "sha256": hashlib.sha256(content).hexdigest(),
        "input": input_description,
        "output": output_description,
        "outputs": outputs,
        "open_set": dict(open_set, output=SCORE_NAME) if open_set else None,
        "app_preprocessing": app_preprocessing_steps(preprocess, input_description),
        "app_postprocessing": output_steps(output_description, open_set, outputs.get(SCORE_NAME)),
        **(extra or {}),
    }
    write_json_atomic(sidecar_path(path), sidecar)
    return sidecar


def read_sidecar(tflite_path):
    """The sidecar dict of a .tflite file; raises DnadetError when it is missing or unreadable."""
    from dnadet_tf.errors import DnadetError

    path = sidecar_path(tflite_path)
    if not os.path.isfile(path):
        raise DnadetError(
            f"{tflite_path}: no sidecar {os.path.basename(path)} beside it; expected a file written by "
            f"'dnadet-tf export' (it holds the labels and preprocessing)."
        )
    try:
        with open(path, encoding="utf-8") as f:
            sidecar = json.load(f)
    except (OSError, ValueError) as error:
        raise DnadetError(f"{path}: not a dnadet-tf sidecar ({error}).") from None
    missing = [key for key in ("class_names", "preprocess", "input", "output") if key not in sidecar]
    if missing:
        raise DnadetError(f"{path}: not a dnadet-tf sidecar (missing {', '.join(missing)}).")
    if "sha256" in sidecar:  # a sidecar copied beside another file would give it another threshold or quantization
        with open(tflite_path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != sidecar["sha256"]:
            raise DnadetError(f"{path}: the sidecar of another file (sha256 {sidecar['sha256'][:12]}..., file "
                              f"{sidecar.get('file')!r}), where {tflite_path} has sha256 {digest[:12]}...; expected "
                              f"the JSON 'dnadet-tf export' wrote beside this very file.")
    return sidecar


def quantize(values, quantization):
    """float values (any shape) -> int8 of the same shape as TFLite's QUANTIZE op does (round half away from
    zero), with a tensor's `quantization` {"scale", "zero_point"}."""
    scaled = np.asarray(values, np.float32) / quantization["scale"]
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    return np.clip(rounded + quantization["zero_point"], -128, 127).astype(np.int8)


def dequantize(values, quantization):
    """int8 values (any shape) -> float32 of the same shape: (q - zero_point) * scale, `quantize`'s inverse."""
    return (np.asarray(values, np.float32) - quantization["zero_point"]) * quantization["scale"]
