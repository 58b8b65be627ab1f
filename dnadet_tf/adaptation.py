"""Adapting a trained attributor to another kind of content: its BatchNorm statistics re-estimated on
unlabeled images of that content (AdaBN, Li et al. 2016), every weight kept.

    run dir (best.keras) + unlabeled images of the content to attribute
      -> layer by layer, input to output, from encoder stage `first_stage` on (`adapt` re-estimates
         stages 3-4 by default, where the content shift sits): the statistics of each BatchNorm's input
         over every position of every image, the earlier layers already adapted (inference mode; any
         batching, any order)
      -> each BatchNorm's moving mean and variance = those statistics, mixed with the run's by `blend`
      -> a new run dir: best.keras (without the open-set calibration, which described the old
         content), config.json and labels.txt of the run, adaptation.json

A model trained on one content keeps the generators' traces in its kernels but normalises them with
that content's statistics; images of another content shift every layer's activations, and unseen
fakes are read as real (or real photos as fakes). Re-estimated statistics undo that shift. The images
should be a mix of what is to be attributed (fakes of several generators and real photos, unlabeled):
statistics of real photos alone, or of one generator, are statistics of another mix
(docs/results.md, "Adapting to other content").
"""
import os
import sys

import numpy as np

from dnadet_tf.config import ADAPT_FIRST_STAGE, ENCODER_STAGES
from dnadet_tf.data import collect_image_paths, readable_images
from dnadet_tf.errors import DataError, RunDirError
from dnadet_tf.model import BatchNormalization
from dnadet_tf.runs import RunDir, save_model_atomic, write_json_atomic

ADAPTATION_FILE = "adaptation.json"
FEW_IMAGES = 20  # from 20 the draw of images mattered little (docs/results.md): fewer are allowed, with a warning
ONE_CLASS_SHARE = 0.6  # above this share of one answer before adapting, a warning: one class's statistics fail


def batchnorm_layers(model):
    """The BatchNormalization layers of a classifier's encoder, input to output."""
    return [layer for layer in model.backbone._flatten_layers() if isinstance(layer, BatchNormalization)]


def layer_stage(layer):
    """The encoder stage (1-4) of a layer named `stage{s}_...`."""
    return int(layer.name.split("_", 1)[0][len("stage"):])


def _combined(count, mean, m2, batch_count, batch_mean, batch_var):
    """Running (count, mean, sum of squared deviations) merged with one batch's (Chan et al.'s update)."""
    total = count + batch_count
    delta = batch_mean - mean
    mean = mean + delta * (batch_count / total)
    m2 = m2 + batch_var * batch_count + delta ** 2 * (count * batch_count / total)
    return total, mean, m2


def estimate_batchnorm_statistics(model, batches, blend=1.0, progress=None, first_stage=1):
    """The statistics each encoder BatchNorm's input has over `batches` of preprocessed pixels (N, S, S, 3).

    Layer by layer, input to output: the encoder up to a BatchNorm runs in inference mode, every
    earlier BatchNorm already normalising with its new statistics (as the adapted model will), and
    the layer's input is summarised over every position of every image (mean and biased variance,
    float64). So the result depends on the images, not on how they are batched or ordered. `blend`
    in [0, 1] mixes each layer's result with its own statistics (1: the images' alone) before the next
    layer is estimated. The BatchNorms of stages before `first_stage` keep their own statistics (and
    are not estimated). `batches` is iterated once per estimated layer (a tf.data.Dataset or a list);
    `progress(index, count, name)`, when given, is called as each estimated layer starts.

    Returns [(mean (C,), variance (C,))] per layer, float32; the model's own statistics are restored
    before returning. Raises DataError when `batches` is empty.
    """
    import keras
    import tensorflow as tf

    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend: expected a number from 0 to 1, received {blend}.")
    layers = batchnorm_layers(model)
    stages = sorted({layer_stage(layer) for layer in layers})
    if first_stage not in stages:
        raise ValueError(f"first_stage: expected one of the encoder's stages {stages}, received {first_stage!r}.")
    saved = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in layers]
    kept = sum(layer_stage(layer) < first_stage for layer in layers)  # the layers run input to output
    statistics = saved[:kept]
    # One function for every estimated layer (traced once per call, not once per layer); the pass for
    # layer k runs only the encoder up to that layer's input, the earlier layers normalising with the
    # statistics already assigned.
    prefixes = [keras.Model(model.backbone.input, layer.input) for layer in layers[kept:]]

    @tf.function(reduce_retracing=True)
    def moments(pixels, position):
        return tf.switch_case(position, [
            lambda prefix=prefix: tf.nn.moments(tf.cast(prefix(pixels, training=False), tf.float32), axes=[0, 1, 2])
            for prefix in prefixes])

    try:
        for index, (layer, (own_mean, own_var)) in enumerate(zip(layers[kept:], saved[kept:]), start=1):
            if progress is not None:
                progress(index, len(layers) - kept, layer.name)
            count, mean, m2 = 0, 0.0, 0.0
            for pixels in batches:
                batch_mean, batch_var = moments(pixels, tf.constant(index - 1))
                positions = int(np.prod(pixels.shape[:3]))
                count, mean, m2 = _combined(count, mean, m2, positions, batch_mean.numpy().astype(np.float64),
                                            batch_var.numpy().astype(np.float64))
            if count == 0:
                raise DataError("images: expected at least one image to estimate BatchNorm statistics on, "
                                "received none.")
            (mean, variance), = blend_statistics([(own_mean, own_var)], [(mean, m2 / count)], blend)
            statistics.append((mean, variance))
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
    finally:
        for layer, (mean, variance) in zip(layers, saved):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
    return statistics


def blend_statistics(own, new, blend):
    """Per layer, the statistics of a mixture: `blend` of the new images' and 1 - `blend` of the model's own
    (mean = blend * new + (1 - blend) * own; variance the mixture's, between-means term included).
    own, new: [(mean, variance)] -> [(mean, variance)], float32."""
    mixed = []
    for (own_mean, own_var), (new_mean, new_var) in zip(own, new):
        mean = blend * new_mean + (1.0 - blend) * own_mean
        variance = (blend * (new_var + (new_mean - mean) ** 2)
                    + (1.0 - blend) * (own_var + (own_mean - mean) ** 2))
        mixed.append((np.asarray(mean, np.float32), np.asarray(variance, np.float32)))
    return mixed


def adapt_batchnorm(model, batches, blend=1.0, progress=None, first_stage=1):
    """Sets each encoder BatchNorm's moving statistics to `estimate_batchnorm_statistics(model, batches,
    blend, progress, first_stage)` (1 = the new images' alone, 0 = unchanged). Returns the statistics set."""
    statistics = estimate_batchnorm_statistics(model, batches, blend, progress, first_stage)
    for layer, (mean, variance) in zip(batchnorm_layers(model), statistics):
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(variance)
    return statistics


def answer_counts(model, batches):
    """How many of the images in `batches` the model attributes to each class: (C,) int64, inference mode."""
    from dnadet_tf.model import probabilities

    counts = np.zeros(model.num_classes, np.int64)
    for pixels in batches:
        counts += np.bincount(probabilities(model, pixels).numpy().argmax(-1), minlength=model.num_classes)
    return counts


def without_calibration(model):
    """The classifier with its `Calibration` (temperature and open-set statistics) removed."""
    model.calibration = None
    return model


def adapt_run(run_dir, images, out, blend=1.0, batch_size=16, overwrite=False, output=None,
              first_stage=ADAPT_FIRST_STAGE):
    """Writes `out`, a run dir whose best.keras is `run_dir`'s adapted to `images` (files or folders,
    unlabeled); returns the report written to out/adaptation.json.

    Files that cannot be decoded or are too small are skipped with one warning line each; the open-set
    calibration is dropped (`dnadet-tf calibrate OUT --data ... --val ...` refits it on labeled images
    of the new content). Raises DataError when no image is usable, RunDirError when `out` is `run_dir`
    or already holds files without `overwrite`; nothing is written then.
    """
    from dnadet_tf.pipeline import inference_dataset

    output = output or sys.stdout
    source = RunDir(run_dir)
    if os.path.abspath(out) == os.path.abspath(run_dir):
        raise RunDirError(f"out {out}: expected a new folder for the adapted run, received the run itself "
                          f"(adaptation keeps {run_dir} as it is).")
    target = RunDir(out).check(overwrite=overwrite)
    config, class_names = source.config, source.class_names
    model = source.load_model()
    paths, skipped = readable_images(collect_image_paths(list(images)), model.preprocessing,
                                     warn=lambda line: print(line, file=output, flush=True))
    if len(paths) < FEW_IMAGES:
        print(f"warning: {len(paths)} images to adapt on; below {FEW_IMAGES} which images they are decides (5: up to "
              f"35 points short of 200 images; 1-2: below the run as trained where it was right; docs/results.md, "
              f"'How many images adapt needs').", file=output, flush=True)
    answers = answer_counts(model, inference_dataset(paths, model.preprocessing, batch_size))
    top = int(np.argmax(answers))
    if answers[top] > ONE_CLASS_SHARE * len(paths):
        print(f"warning: {run_dir} attributes {answers[top]} of the {len(paths)} images to {class_names[top]!r}; "
              f"statistics of one class are not the content's (adapted to one generator's images, the model "
              f"fails on them: docs/results.md, 'Adapting to other content'); give a mix of fakes and real photos.",
              file=output, flush=True)
    print(f"adapting {run_dir}: BatchNorm statistics of {len(paths)} images"
          + (f" in stages {first_stage}-{ENCODER_STAGES}" if first_stage > 1 else "") + ", one pass per layer ...", file=output,
          flush=True)
    own = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in batchnorm_layers(model)]
    statistics = adapt_batchnorm(
        model, inference_dataset(paths, model.preprocessing, batch_size), blend,
        progress=lambda index, count, name: print(f"  layer {index}/{count} ({name})", file=output, flush=True),
        first_stage=first_stage)
    had_calibration = model.calibration is not None
    without_calibration(model)
    target.start(config, class_names, overwrite=overwrite)
    save_model_atomic(model, target.best_model_path)
    report = {
        "source_run": os.path.abspath(run_dir), "images": len(paths), "skipped": skipped,
        "inputs": [os.path.abspath(item) for item in images], "blend": blend, "first_stage": first_stage,
        "batch_size": batch_size,
        "calibration_dropped": had_calibration,
        "answers_before": dict(zip(class_names, (int(count) for count in answers))),
        # Per layer, how far the statistics moved: mean |new mean - old mean| in old standard deviations, and
        # the mean ratio of new to old standard deviation (1 = unchanged).
        "layers": [{"name": layer.name,
                    "mean_shift_in_std": float(np.mean(np.abs(new[0] - old[0]) / np.sqrt(old[1] + layer.epsilon))),
                    "std_ratio": float(np.mean(np.sqrt(new[1] + layer.epsilon) / np.sqrt(old[1] + layer.epsilon)))}
                   for layer, old, new in zip(batchnorm_layers(model), own, statistics)],
    }
    write_json_atomic(target.file(ADAPTATION_FILE), report)
    print(f"wrote {target.best_model_path} and {ADAPTATION_FILE}" + (
        "; its open-set calibration was dropped (it described the training content): "
        f"'dnadet-tf calibrate {out} --data LABELED --val LABELED' refits it on labeled images of this content"
        if had_calibration else ""), file=output, flush=True)
    return report
