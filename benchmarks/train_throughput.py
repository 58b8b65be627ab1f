"""Training throughput: patches/s of the training step and of the input pipeline alone.

For each preset (cpu, paper) on this machine:
  * input pipeline: `pipeline.training_dataset` over generated 128 px PNGs (5 classes),
    decoded, preprocessed and cropped exactly as in `fit`, with nothing consuming it;
  * training step: the Trainer's distributed step on one batch held in memory
    (so that the pipeline cannot be the bottleneck);
  * the ratio pipeline / step (it must be >= 2);
  * for reference, the release's way of feeding crops: one forward/backward per crop
    position (16 passes of B patches), which keeps BatchNorm statistics per position;
    dnadet-tf feeds all B x 16 crops in one batch instead (statistics over all of them).
The paper preset is measured at the release's batch (20 images x 16 crops = 320 patches).
Prints plain lines; takes a few minutes.

Usage: python benchmarks/train_throughput.py [--presets cpu,paper] [--steps N] [--precision P]
"""
import argparse
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from dnadet_tf.config import make_config  # noqa: E402
from dnadet_tf.data import read_folder_tree  # noqa: E402
from dnadet_tf.distribute import make_strategy  # noqa: E402
from dnadet_tf.pipeline import training_dataset  # noqa: E402
from dnadet_tf.trainer import Trainer  # noqa: E402

CLASSES = ("real", "a", "b", "c", "d")


def make_images(root, per_class=40, size=128):
    rng = np.random.default_rng(0)
    for name in CLASSES:
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            low = rng.uniform(0, 255, (size // 4, size // 4, 3)).astype(np.uint8)
            Image.fromarray(low).resize((size, size), Image.BICUBIC).save(os.path.join(root, name, f"{i}.png"))
    return read_folder_tree(root)


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


def step_rate(config, class_names, dataset_fn, steps, run_dir):
    """(patches/s, patches per step) of the Trainer's distributed step on one batch held in memory."""
    strategy = make_strategy(config.runtime.strategy)
    trainer = Trainer(config, class_names, run_dir, strategy, train_dataset=dataset_fn, output=open(os.devnull, "w"))
    batch = next(iter(dataset_fn(0)))
    distributed = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))))
    patches = int(np.prod(batch[0].shape[:2]))
    for _ in range(2):
        trainer._step_fn(distributed)[0].numpy()
    began = time.perf_counter()
    for _ in range(steps):
        trainer._step_fn(distributed)[0].numpy()
    return patches * steps / (time.perf_counter() - began), patches


def per_position_rate(files, config, steps):
    """The release's feeding: one forward/backward per crop position, cross-entropy only."""
    import keras

    from dnadet_tf.model import Backbone, Classifier

    model = Classifier(Backbone(config.model.width, dtype=config.runtime.precision), len(files.class_names), config.model.dropout)
    optimizer = keras.optimizers.Adam(config.optimizer.learning_rate)
    optimizer.build(model.trainable_variables)
    images, labels = next(iter(training_dataset(files, config)))

    @tf.function
    def step(images, labels):
        for position in range(config.sampling.patches_per_image):
            with tf.GradientTape() as tape:
                logits = model(images[:, position], training=True)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
            optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    step(images, labels).numpy()
    began = time.perf_counter()
    for _ in range(steps):
        step(images, labels).numpy()
    return int(np.prod(images.shape[:2])) * steps / (time.perf_counter() - began)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="cpu,paper")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per preset")
    parser.add_argument("--precision", default="float32")
    args = parser.parse_args(argv)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, devices: "
          f"{[d.device_type for d in tf.config.list_logical_devices()]}", flush=True)
    with tempfile.TemporaryDirectory() as root:
        files = make_images(os.path.join(root, "data"))
        for preset in args.presets.split(","):
            overrides = {"precision": args.precision}
            if preset == "paper":
                overrides["images_per_class"] = 4  # 20 images x 16 crops: the release's batch
            config = make_config(preset, **overrides)
            k = config.batch_images_per_class(len(CLASSES))
            dataset_fn = lambda start, config=config: training_dataset(files, config, start)  # noqa: E731
            pipe = pipeline_rate(dataset_fn(0), batches=max(4, args.steps))
            step, patches = step_rate(config, files.class_names, dataset_fn, args.steps,
                                      os.path.join(root, f"run-{preset}"))
            print(f"[{preset}] width {config.model.width}, {config.preprocessing.resize2} px images, {k} images/class x 5 classes x "
                  f"{config.sampling.patches_per_image} crops of {config.sampling.patch_size} px = {patches} patches per step, "
                  f"{args.precision}", flush=True)
            print(f"[{preset}] training step:  {step:8.1f} patches/s", flush=True)
            print(f"[{preset}] input pipeline: {pipe:8.1f} patches/s  ({pipe / step:.1f}x what the step consumes; "
                  f"target >= 2x)", flush=True)
            positions = per_position_rate(files, config, max(1, args.steps // 2))
            print(f"[{preset}] release-style one pass per crop position (CE only): {positions:8.1f} patches/s "
                  f"(all crops in one batch: {step / positions:.2f}x)", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(f"peak resident memory of this process: {peak:.2f} GiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
