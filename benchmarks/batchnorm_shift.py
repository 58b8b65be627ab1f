"""How far `dnadet-tf adapt` moved a run's BatchNorm statistics: per layer, in units of the run's own.

    python benchmarks/batchnorm_shift.py RUN ADAPTED_RUN

For every BatchNorm of the encoder, the moved means (adapted - own) / own standard deviation and the log ratio of
the standard deviations, each summarised over the channels by its mean and standard deviation (docs/results.md,
"Shifting the BatchNorm statistics in training": the size of the mismatch `fit --statistics-shift` imitates).
"""
import argparse
import sys

import numpy as np


def batchnorm_statistics(model):
    """{layer name: (moving mean, moving variance)} of the encoder's BatchNorms (`adaptation.batchnorm_layers`)."""
    from dnadet_tf.model import batchnorm_layers

    return {layer.name: (np.asarray(layer.moving_mean, np.float64), np.asarray(layer.moving_variance, np.float64))
            for layer in batchnorm_layers(model)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run dir whose best.keras was adapted")
    parser.add_argument("adapted", help="the run dir 'dnadet-tf adapt' wrote")
    args = parser.parse_args(argv)
    from dnadet_tf.cli.main import quiet_tensorflow

    quiet_tensorflow()
    from dnadet_tf.runs import RunDir

    own, new = (batchnorm_statistics(RunDir(run).load_model()) for run in (args.run, args.adapted))
    print("layer        mean shift: mean    std   |  log std ratio: mean    std")
    for name, (mean, variance) in own.items():
        new_mean, new_variance = new[name]
        shift = (new_mean - mean) / np.sqrt(variance + 1e-5)
        log_ratio = 0.5 * np.log((new_variance + 1e-5) / (variance + 1e-5))
        print(f"{name:<12} {shift.mean():+17.3f} {shift.std():6.3f}   | {log_ratio.mean():+19.3f} {log_ratio.std():6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
