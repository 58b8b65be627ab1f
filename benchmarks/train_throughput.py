"""Training and inference speed on this machine, as patches/s and as a fraction of its convolution ceiling.

Everything is measured in the same run, so the figures travel between machines as ratios:

  * ceiling: GFLOP/s of a lone 3x3 convolution (NHWC, forward), the best over the
    encoder's four 3x3 layer shapes at 320 patches of 64 px; float32 and bfloat16;
  * per preset (cpu, paper) and precision (float32, mixed_bfloat16):
      per position the same network fed the release's way (one forward/backward of B patches per
                 crop position, BatchNorm statistics per position; cross-entropy only), where
                 dnadet-tf feeds all B x P crops in one batch (statistics over all of them);
      step       the Trainer's distributed step on one batch held in memory
                 (`step_patches_per_s`, the best, and `step_median_patches_per_s`, the median,
                 over --steps steps and the 4 x --steps of the rounds below;
                 its GFLOP/s counts 3x the forward convolutions of a patch: forward, input
                 gradient, kernel gradient) and `ceiling_fraction` = that / the float32 ceiling;
      fed        the same step fed by the training pipeline, in 4 rounds that alternate
                 --steps steps of each (`fed_over_alone`: the ratio of their total times, what
                 the input costs the step on a machine whose speed drifts);
      pipeline   `pipeline.training_dataset` alone over generated 128 px PNGs, nothing consuming it;
      realized   the real `fit` loop reading those files (`realized_patches_per_s`: the median
                 of its logged windows after the first), and its ratio to the best step
                 (`realized_over_step`) and to the median step (`realized_over_median_step`),
                 and to the mean of the median step before and again after the loop
                 (`realized_over_median_step_around`: the machine's drift between them cancels);
      inference  whole preprocessed images at the preset's resize2 (512 px for `paper`),
                 batch 4, images/s and the ceiling fraction;
  * pretrain (cpu preset): the same for step 1 (170 transformations of generated photos),
    step and realized;
  * with --torch (PyTorch installed, e.g. `pip install -e ".[torch]"`): the same network in plain
    PyTorch, fed the release's way (one forward/backward of 20 patches per crop position, 16 per
    step, explicit padding, cross-entropy, Adam), as the reference the `paper` step is compared to.
The `paper` preset is measured at the release's batch (20 images x 16 crops = 320 patches).
Prints a table per preset; `--json FILE` writes every figure under keys that say what they are
(`python benchmarks/render_results.py FILE` renders the tables of docs/results.md from it).

Usage: python benchmarks/train_throughput.py [--presets cpu,paper] [--precisions float32,mixed_bfloat16]
       [--steps N] [--realized-steps N] [--no-pretrain] [--torch] [--default-inter-op] [--json FILE]
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.machine import describe_machine  # noqa: E402

# As the CLI: one inter-op thread on a CPU-only machine (what makes runs repeat exactly), before any op;
# --default-inter-op keeps TF's own pool, to measure what that setting costs.
DEFAULT_INTER_OP_FLAG = "--default-inter-op"
if DEFAULT_INTER_OP_FLAG not in sys.argv[1:]:
    configure_runtime()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from dnadet_tf.config import make_config  # noqa: E402
from dnadet_tf.data import read_folder_tree  # noqa: E402
from dnadet_tf.distribute import make_strategy  # noqa: E402
from dnadet_tf.input_priority import DEFAULT_NICENESS  # noqa: E402
from dnadet_tf.model import Backbone  # noqa: E402
from dnadet_tf.pipeline import training_dataset  # noqa: E402
from dnadet_tf.runs import write_json_atomic  # noqa: E402
from dnadet_tf.trainer import Trainer  # noqa: E402

CLASSES = ("real", "a", "b", "c", "d")
CEILING_BATCH = 320
CEILING_SHAPES = ((32, 64), (16, 128), (8, 256), (4, 512))  # (side, channels) of the encoder's 3x3 layers


def make_images(root, per_class=40, size=128):
    rng = np.random.default_rng(0)
    for name in CLASSES:
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            low = rng.uniform(0, 255, (size // 4, size // 4, 3)).astype(np.uint8)
            Image.fromarray(low).resize((size, size), Image.BICUBIC).save(os.path.join(root, name, f"{i}.png"))
    return read_folder_tree(root)


def generated_photos(folder, count=64):
    """`count` smooth random 384 x 256 JPEG photos in `folder` (made if missing); their paths, as `list_photos` gives them."""
    from dnadet_tf.pretraining import list_photos

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        low = rng.uniform(0, 255, (48, 64, 3)).astype(np.uint8)
        Image.fromarray(low).resize((384, 256), Image.BICUBIC).save(os.path.join(folder, f"{i}.jpg"), quality=95)
    return list_photos(folder)


def _timed_seconds(fn, repeats, warmup=2):
    """Seconds of each of `repeats` calls of `fn`, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return times


def _best_seconds(fn, repeats, warmup=2):
    return min(_timed_seconds(fn, repeats, warmup))


def convolution_ceiling(dtype, repeats=6):
    """Best GFLOP/s of a lone 3x3 convolution (NHWC, forward) over `CEILING_SHAPES`, and each shape's."""
    by_shape = {}
    for side, channels in CEILING_SHAPES:
        x = tf.cast(tf.random.uniform((CEILING_BATCH, side, side, channels)), dtype)
        kernel = tf.cast(tf.random.uniform((3, 3, channels, channels)), dtype)
        conv = tf.function(lambda: tf.nn.conv2d(x, kernel, 1, "SAME"))
        seconds = _best_seconds(lambda: conv().numpy(), repeats)
        by_shape[f"{side}x{side}x{channels}"] = 2 * CEILING_BATCH * side * side * 9 * channels * channels / seconds / 1e9
    return max(by_shape.values()), by_shape


def forward_gflop(width, side):
    """Forward GFLOP of the encoder's convolutions for one side x side input (multiply-adds count 2)."""
    encoder = Backbone(width, input_size=side)
    total = 0
    for layer in encoder.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            total += 2 * h * w * kh * kw * layer.input.shape[-1] * c_out
    return total / 1e9


def pipeline_rate(dataset, batches):
    """Patches/s delivered by a training dataset with nothing consuming it."""
    iterator = iter(dataset)
    for _ in range(3):
        next(iterator)
    began = time.perf_counter()
    count = 0
    for _ in range(batches):
        images, _ = next(iterator)
        count += int(np.prod(images.shape[:2]))
    return count / (time.perf_counter() - began)


def step_rate(config, class_names, dataset_fn, steps, run_dir, rounds=4):
    """The Trainer's distributed step, as a dict: `step_patches_per_s` on one batch held in memory (the
    best step), `step_median_patches_per_s` (the median step), `patches_per_step`, and `fed_over_alone`:
    the step fed by the pipeline against the step on the batch in memory, `rounds` times `steps`
    steps of each in turn (the ratio of their total times), so that both see the same state of a
    shared machine: what the input costs the step, without the rest of the loop. Best and median
    are over every step on the batch in memory, the first `steps` and those of the rounds: the
    median of the first 5 alone was up to 15 % above the median of 60 taken over a minute.

    Returns that dict and a function that times the step alone again (its median, patches/s), for
    the caller to run right after the real loop."""
    strategy = make_strategy(config.runtime.strategy)
    trainer = Trainer(config, class_names, run_dir, strategy, train_dataset=dataset_fn, output=open(os.devnull, "w"))
    batch = next(iter(dataset_fn(0)))
    distributed = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))))
    patches = int(np.prod(batch[0].shape[:2]))
    step_alone = lambda: [float(v) for v in trainer._step_fn(distributed)]  # noqa: E731
    times = _timed_seconds(step_alone, steps)
    fed = iter(strategy.experimental_distribute_dataset(dataset_fn(0)))  # its prefetching starts here
    step_fed = lambda: [float(v) for v in trainer._step_fn(next(fed))]  # noqa: E731
    for _ in range(2):
        step_fed()
    alone_seconds = fed_seconds = 0.0
    for _ in range(rounds):
        alone = _timed_seconds(step_alone, steps, warmup=0)
        times += alone
        alone_seconds += sum(alone)
        fed_seconds += sum(_timed_seconds(step_fed, steps, warmup=0))
    figures = {"step_patches_per_s": patches / min(times),
               "step_median_patches_per_s": patches / float(np.median(times)),
               "patches_per_step": patches, "fed_over_alone": alone_seconds / fed_seconds}

    def median_step_again():
        return patches / float(np.median(_timed_seconds(step_alone, 4 * steps, warmup=1)))

    return figures, median_step_again


def realized_rate(run_dir):
    """Median patches/s of a finished run's logged windows, the first (tracing) left out."""
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    rates = [r["patches_per_s"] for r in records if "patches_per_s" in r and "loss" in r]
    return float(np.median(rates[1:] if len(rates) > 2 else rates))


def inference_rate(config, repeats=4, batch=4):
    """Whole preprocessed images at resize2 per second, inference mode, batch `batch`."""
    side = config.preprocessing.resize2
    encoder = Backbone(config.model.width, dtype=config.runtime.precision)
    pixels = tf.random.uniform((batch, side, side, 3), -1, 1)
    run = tf.function(lambda x: encoder(x, training=False))
    return batch / _best_seconds(lambda: run(pixels).numpy(), repeats)


def per_position_rate(config, images, labels, steps, classes):
    """Patches/s of the same Keras network fed the release's way: one forward/backward of B patches
    per crop position (BatchNorm statistics per position), cross-entropy only, Adam."""
    from dnadet_tf.model import Classifier

    model = Classifier(Backbone(config.model.width, dtype=config.runtime.precision), classes, config.model.dropout)
    optimizer = keras.optimizers.Adam(config.optimizer.learning_rate)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(images, labels):
        for position in range(images.shape[1]):
            with tf.GradientTape() as tape:
                logits = tf.cast(model(images[:, position], training=True), tf.float32)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
            optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    seconds = _best_seconds(lambda: step(images, labels).numpy(), steps, warmup=1)
    return int(np.prod(images.shape[:2])) / seconds


def training_row(config, precision, stepping, after, pipe, run_dir, steps, fit_seconds, ceiling):
    """The figures of a training step (`step_rate`'s dict), its input pipeline and a finished real loop
    in `run_dir` (a dict). `realized_over_step` compares the loop's median window with the best step,
    `realized_over_median_step` with the median step (the same statistic on both sides), and
    `realized_over_median_step_around` with the mean of that median and the median step measured
    again right after the loop (`after`, patches/s, kept as `step_median_after_patches_per_s`), so that
    a machine whose speed drifts between the two measurements moves the ratio less."""
    realized = realized_rate(run_dir)
    around = (stepping["step_median_patches_per_s"] + after) / 2
    gflop = 3 * forward_gflop(config.model.width, config.sampling.patch_size)
    step = stepping["step_patches_per_s"]
    return {
        "preset": config.preset, "precision": precision, "width": config.model.width,
        "patches_per_step": stepping["patches_per_step"], "train_gflop_per_patch": gflop,
        "step_patches_per_s": step, "step_gflops": step * gflop, "ceiling_fraction": step * gflop / ceiling,
        "step_median_patches_per_s": stepping["step_median_patches_per_s"],
        "fed_over_alone": stepping["fed_over_alone"],
        "pipeline_patches_per_s": pipe, "pipeline_over_step": pipe / step,
        "realized_patches_per_s": realized, "realized_over_step": realized / step,
        "realized_over_median_step": realized / stepping["step_median_patches_per_s"],
        "step_median_after_patches_per_s": after, "realized_over_median_step_around": realized / around,
        "realized_steps": steps, "realized_fit_seconds": fit_seconds,
    }


def measure_preset(preset, precision, files, root, args, ceiling):
    """Every figure of one (preset, precision) for training on the generated data set."""
    from dnadet_tf.training import fit

    overrides = {"precision": precision, "input_niceness": args.input_niceness}
    if preset == "paper":
        overrides["images_per_class"] = 4  # 20 images x 16 crops: the release's batch
    config = make_config(preset, **overrides)
    dataset_fn = lambda start, config=config: training_dataset(files, config, start)  # noqa: E731
    stepping, median_step_again = step_rate(config, files.class_names, dataset_fn, args.steps,
                                            os.path.join(root, f"step-{preset}-{precision}"))
    images, labels = next(iter(dataset_fn(0)))
    per_position = per_position_rate(config, images, labels, args.steps, len(files.class_names))
    pipe = pipeline_rate(dataset_fn(0), batches=max(4, args.steps))
    run_dir = os.path.join(root, f"fit-{preset}-{precision}")
    realized_steps = args.realized_steps * (1 if preset == "paper" else 10)
    began = time.perf_counter()
    fit(os.path.join(root, "data"), run_dir, preset=preset, output=open(os.devnull, "w"), steps=realized_steps,
        log_every=max(1, realized_steps // 10), val_every=realized_steps, checkpoint_every=realized_steps, **overrides)
    fit_seconds = time.perf_counter() - began
    row = training_row(config, precision, stepping, median_step_again(), pipe, run_dir, realized_steps,
                       fit_seconds, ceiling)
    inference = inference_rate(config)
    inference_gflop = forward_gflop(config.model.width, config.preprocessing.resize2)
    return {**row, "per_position_patches_per_s": per_position,
            "inference_side": config.preprocessing.resize2, "inference_images_per_s": inference,
            "inference_gflop_per_image": inference_gflop,
            "inference_ceiling_fraction": inference * inference_gflop / ceiling}


def measure_pretrain(precision, root, args, ceiling):
    """Step 1 (`cpu` preset): the step with 170 classes and the realized `pretrain` loop on generated photos."""
    from dnadet_tf.pipeline import transformation_dataset
    from dnadet_tf.pretraining import PHOTO_SIZE, pretrain
    from dnadet_tf.transforms import TRANSFORM_NAMES

    folder = os.path.join(root, "photos")
    photos = generated_photos(folder)
    config = make_config("cpu", precision=precision, input_niceness=args.input_niceness).replace(
        crop_size=PHOTO_SIZE, resize1=PHOTO_SIZE)
    batch = config.pretrain.batch_size
    dataset_fn = lambda start: transformation_dataset(photos, config, batch, start)  # noqa: E731
    stepping, median_step_again = step_rate(config, TRANSFORM_NAMES, dataset_fn, args.steps,
                                            os.path.join(root, f"step-pretrain-{precision}"))
    pipe = pipeline_rate(dataset_fn(0), batches=max(4, args.steps))
    run_dir = os.path.join(root, f"pretrain-{precision}")
    steps = args.realized_steps * 10
    began = time.perf_counter()
    pretrain(folder, run_dir, preset="cpu", output=open(os.devnull, "w"), steps=steps, precision=precision,
             input_niceness=args.input_niceness, log_every=max(1, steps // 10), val_every=steps, checkpoint_every=steps)
    fit_seconds = time.perf_counter() - began
    return training_row(config, precision, stepping, median_step_again(), pipe, run_dir, steps, fit_seconds, ceiling)


def torch_release_rate(steps, images=20, positions=16, classes=5):
    """Patches/s of the `paper` network in plain PyTorch, trained one crop position per pass (the release's way)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    blocks, channels = [], 3
    for width in (64, 128, 256, 512):
        for kernel, stride in ((4, 2), (3, 1)):
            blocks += [nn.Conv2d(channels, width, kernel, stride, 1), nn.BatchNorm2d(width), nn.LeakyReLU(0.2)]
            channels = width
    model = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes))
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    patches = torch.rand(positions, images, 3, 64, 64) * 2 - 1
    labels = torch.arange(images) % classes

    def step():
        for position in range(positions):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(patches[position]), labels).backward()
            optimizer.step()

    return images * positions / _best_seconds(step, steps, warmup=1), torch.__version__, torch.get_num_threads()


def print_row(name, row):
    line = (f"[{name}] step {row['step_patches_per_s']:7.1f} patches/s ({row['step_gflops']:5.1f} GFLOP/s, "
            f"{100 * row['ceiling_fraction']:4.1f} % of the ceiling)  pipeline {row['pipeline_patches_per_s']:7.1f} "
            f"({row['pipeline_over_step']:.2f}x)  realized in fit {row['realized_patches_per_s']:7.1f} "
            f"({100 * row['realized_over_step']:.0f} % of the best step, "
            f"{100 * row['realized_over_median_step']:.0f} % of the median, "
            f"{100 * row['realized_over_median_step_around']:.0f} % of the median before and after)  fed / alone {100 * row['fed_over_alone']:.0f} %")
    if "inference_images_per_s" in row:
        line += (f"  inference {row['inference_side']} px {row['inference_images_per_s']:.2f} images/s "
                 f"({100 * row['inference_ceiling_fraction']:.1f} %)")
    print(line, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="cpu,paper")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--steps", type=int, default=5,
                        help="timed training steps on a batch in memory, and per round of the fed / alone comparison")
    parser.add_argument("--realized-steps", type=int, default=20,
                        help="steps of the real fit loop for `paper` (10x that for `cpu` and step 1, whose windows "
                             "rose by about 15 %% over their first 50 steps)")
    parser.add_argument("--no-pretrain", action="store_true", help="leave out step 1")
    parser.add_argument("--torch", action="store_true", help="also time the network in plain PyTorch (the release's feeding)")
    parser.add_argument("--input-niceness", type=int, default=DEFAULT_NICENESS,
                        help="OS nice value of the training input's threads (fit --input-niceness; default: fit's)")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument(DEFAULT_INTER_OP_FLAG, action="store_true",
                        help="keep TensorFlow's default inter-op thread pool (the CLI gives it one thread so that runs "
                             "repeat exactly): compare with a run without the flag to see what that costs")
    args = parser.parse_args(argv)
    machine = describe_machine()
    cpu_model = machine["cpu_model"]
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores ({cpu_model}), devices: "
          f"{[d.device_type for d in tf.config.list_logical_devices()]}", flush=True)
    ceiling, ceiling_shapes = convolution_ceiling(tf.float32)
    ceiling_bf16, ceiling_shapes_bf16 = convolution_ceiling(tf.bfloat16)
    print(f"ceiling: lone 3x3 convolution, best of the encoder's shapes at {CEILING_BATCH} patches: "
          f"{ceiling:.1f} GFLOP/s float32, {ceiling_bf16:.1f} GFLOP/s bfloat16", flush=True)
    document = {
        "machine": {"cpu_count": os.cpu_count(), "cpu_model": cpu_model, "tensorflow": tf.__version__,
                    "cpu_features": machine["cpu_features"], "load_average_1min": machine["load_average_1min"]},
        "ceiling": {"float32_gflops": ceiling, "bfloat16_gflops": ceiling_bf16, "batch": CEILING_BATCH,
                    "float32_by_shape": ceiling_shapes, "bfloat16_by_shape": ceiling_shapes_bf16},
        "input_niceness": args.input_niceness,
        # 1: the CLI's setting (runs repeat exactly); 0: TensorFlow's default pool (--default-inter-op)
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "presets": {},
    }
    began = time.time()
    if args.torch:
        rate, version, threads = torch_release_rate(args.steps)
        document["torch_release_feeding"] = {"step_patches_per_s": rate, "torch": version, "threads": threads,
                                             "patches_per_step": 320, "width": 1.0}
        print(f"[PyTorch {version}, {threads} threads] paper network, one pass of 20 patches per crop position: "
              f"{rate:.1f} patches/s", flush=True)
    with tempfile.TemporaryDirectory() as root:
        files = make_images(os.path.join(root, "data"))
        for preset in args.presets.split(","):
            for precision in args.precisions.split(","):
                row = measure_preset(preset, precision, files, root, args, ceiling)
                document["presets"].setdefault(preset, {})[precision] = row
                print_row(f"{preset} {precision}", row)
        if not args.no_pretrain:
            for precision in args.precisions.split(","):
                row = measure_pretrain(precision, root, args, ceiling)
                document.setdefault("pretrain", {})[precision] = row
                print_row(f"pretrain {precision}", row)
    document["peak_resident_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    document["seconds"] = time.time() - began
    print(f"peak resident memory of this process: {document['peak_resident_gib']:.2f} GiB", flush=True)
    if args.json:
        write_json_atomic(args.json, document, indent=1, sort_keys=False)
        print(f"wrote {args.json}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
