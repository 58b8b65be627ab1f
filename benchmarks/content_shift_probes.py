"""What the content shift is not: three test-time probes of trained step-2 runs on one benchmark.

For each run (step 2 with other training seeds) on the benchmark's closed set and
cross-tests (accuracy, as a fraction):

- `whole`: the run's answer for the whole preprocessed image (as `evaluate`).
- `tile_mean`, `tile_vote`: the same network on each `--tile` px tile of that
  image (the size step 2 trains on), answered by the mean of the tiles'
  probabilities or by their majority vote; `tile`: the share of single tiles
  answered right. Asks whether the whole image's pooled feature dilutes traces
  that some tiles hold.
- with `--partner-runs` (one per run, same classes, e.g. from another step 1):
  `partner` (its whole-image accuracy) and `ensemble` (the mean of both runs'
  probabilities). Asks whether two runs that fail on different splits combine.

and, on real photos of other sources (`--real DIR`, every image in it counts as
real), the share each run calls real as read (`real_share`) and after a JPEG round trip at
quality 95 (`real_share_jpeg95`); the same two shares for the fake images of the
benchmark's cross-dataset split (`fakes_called_real`). Asks whether the real class
is read from compression traces.

Prints each run's figures and the mean ± std over the runs (population std, as
`ablation.mean_std`); `--json FILE` writes {"zoo", "tile", "runs", "summary"}.

Usage: python benchmarks/content_shift_probes.py --zoo ZOO --runs RUN [RUN ...]
           [--partner-runs RUN [RUN ...]] [--real DIR [DIR ...]] [--tile 64] [--json FILE]
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from dnadet_tf.ablation import mean_std_figures  # noqa: E402
from dnadet_tf.data import REAL_CLASS, SPLITS, collect_image_paths, read_usable, readable_images  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.evaluation import SPLIT_TITLES  # noqa: E402
from dnadet_tf.predictor import KerasPredictor, predict_files  # noqa: E402
from dnadet_tf.runs import write_json_atomic  # noqa: E402

JPEG_QUALITY = 95
PROBED_SPLITS = tuple(split for split in SPLITS if split not in ("train", "val"))


def tile_probabilities(predictor, pixels, tile):
    """(N, S, S, 3) preprocessed pixels -> (N, T, C) probabilities of the T non-overlapping `tile` px tiles."""
    import tensorflow as tf

    n, _, _, channels = pixels.shape
    tiles = tf.image.extract_patches(pixels, [1, tile, tile, 1], [1, tile, tile, 1], [1, 1, 1, 1], "VALID")
    count = tiles.shape[1] * tiles.shape[2]
    tiles = tf.reshape(tiles, (n * count, tile, tile, channels))
    return predictor.predict_pixels(tiles).reshape(n, count, -1)


def answer_figures(truth, whole, tiles):
    """Accuracies of the answers: truth (N,), whole-image probabilities (N, C), tile probabilities (N, T, C) ->
    {"whole", "tile_mean" (mean of the tiles' probabilities), "tile_vote" (majority of the tiles' answers, a tie
    to the lower class index), "tile" (share of single tiles answered right)}."""
    votes = np.stack([np.bincount(row, minlength=whole.shape[-1]) for row in tiles.argmax(-1)])
    return {"whole": float(np.mean(whole.argmax(-1) == truth)),
            "tile_mean": float(np.mean(tiles.mean(axis=1).argmax(-1) == truth)),
            "tile_vote": float(np.mean(votes.argmax(-1) == truth)),
            "tile": float(np.mean(tiles.argmax(-1) == truth[:, None]))}


def split_figures(predictor, partner, files, tile):
    """{"whole", "tile_mean", "tile_vote", "tile"[, "partner", "ensemble"]} accuracies on LabeledFiles."""
    from dnadet_tf.pipeline import inference_dataset

    truth = np.asarray(files.labels)
    whole, tiles = [], []
    for pixels in inference_dataset(files.paths, predictor.preprocess, 8):
        whole.append(predictor.predict_pixels(pixels))
        tiles.append(tile_probabilities(predictor, pixels, tile))
    whole = np.concatenate(whole)
    figures = answer_figures(truth, whole, np.concatenate(tiles))
    if partner is not None:
        other = predict_files(partner, files.paths)
        figures["partner"] = float(np.mean(other.argmax(-1) == truth))
        figures["ensemble"] = float(np.mean((whole + other).argmax(-1) == truth))
    return figures


def jpeg_round_trip_fn(quality):
    """perturb_fn(image, seed) for `inference_dataset`: one JPEG round trip at `quality`."""
    import tensorflow as tf

    from dnadet_tf.imageops import jpeg_round_trip

    return lambda image, seed: tf.cast(jpeg_round_trip(image, quality), tf.float32)


def real_shares(predictor, paths):
    """(share called real as read, share called real after a JPEG round trip at JPEG_QUALITY)."""
    real = predictor.class_names.index(REAL_CLASS)
    as_read = predict_files(predictor, paths).argmax(-1)
    recompressed = predict_files(predictor, paths, perturb_fn=jpeg_round_trip_fn(JPEG_QUALITY)).argmax(-1)
    return float(np.mean(as_read == real)), float(np.mean(recompressed == real))


def run_figures(zoo, run, partner_run, real_dirs, tile):
    """All the probes' figures of one run: {"run", "partner_run", "splits", "real_sources", "fakes_called_real"}."""
    predictor = KerasPredictor(run)
    partner = KerasPredictor(partner_run) if partner_run else None
    if partner is not None and partner.class_names != predictor.class_names:
        raise SystemExit(f"--partner-runs: {partner_run} has classes {partner.class_names}, "
                         f"expected those of {run}: {predictor.class_names}")
    if REAL_CLASS not in predictor.class_names:
        raise SystemExit(f"--runs: {run} has no class named {REAL_CLASS!r} (classes {predictor.class_names})")
    preprocess = predictor.preprocess
    splits, cross_dataset = {}, None
    for split in PROBED_SPLITS:
        path = os.path.join(zoo, f"{split}.txt")
        if not os.path.exists(path):
            continue
        files = read_usable(path, "test", predictor.class_names, preprocess)
        splits[split] = split_figures(predictor, partner, files, tile)
        print(f"{run} {split}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in splits[split].items()), flush=True)
        if split == "cross_dataset":
            cross_dataset = files
    sources = {}
    for folder in real_dirs:
        paths, _ = readable_images(collect_image_paths([folder]), preprocess)
        share, share_jpeg = real_shares(predictor, paths)
        sources[os.path.basename(os.path.normpath(folder))] = {
            "folder": folder, "images": len(paths), "real_share": share, "real_share_jpeg95": share_jpeg}
        print(f"{run} real photos {folder} ({len(paths)}): called real {100 * share:.1f} %, "
              f"after JPEG {JPEG_QUALITY} {100 * share_jpeg:.1f} %", flush=True)
    fakes = None
    if cross_dataset is not None:
        real = predictor.class_names.index(REAL_CLASS)
        fake_paths = [p for p, label in zip(cross_dataset.paths, cross_dataset.labels) if label != real]
        share, share_jpeg = real_shares(predictor, fake_paths)
        fakes = {"images": len(fake_paths), "real_share": share, "real_share_jpeg95": share_jpeg}
        print(f"{run} cross-dataset fakes ({len(fake_paths)}): called real {100 * share:.1f} %, "
              f"after JPEG {JPEG_QUALITY} {100 * share_jpeg:.1f} %", flush=True)
    return {"run": run, "partner_run": partner_run, "splits": splits, "real_sources": sources,
            "fakes_called_real": fakes}


def flat_figures(figures):
    """One run's figures as {"split/figure" | "real/<source>/<share>" | "fakes_called_real/<share>": value}."""
    flat = {f"{split}/{key}": value for split, row in figures["splits"].items() for key, value in row.items()}
    for name, source in figures["real_sources"].items():
        flat.update({f"real/{name}/{key}": source[key] for key in ("real_share", "real_share_jpeg95")})
    if figures["fakes_called_real"]:
        flat.update({f"fakes_called_real/{key}": figures["fakes_called_real"][key]
                     for key in ("real_share", "real_share_jpeg95")})
    return flat


def across_runs(runs):
    """{figure: {"values", "mean", "std"}} over the runs, figures named as in `flat_figures`."""
    flats = [flat_figures(run) for run in runs]
    summary = {}
    for key in flats[0]:
        values = [flat.get(key) for flat in flats]
        summary[key] = mean_std_figures(values)
    return summary


FIGURE_TITLES = {"whole": "whole image", "tile_mean": "tiles, mean", "tile_vote": "tiles, vote", "tile": "single tile",
                 "partner": "partner run", "ensemble": "both runs' mean"}


def format_tables(document):
    """The two Markdown tables (accuracy % per split and answer; share called real %) of a --json document."""
    from dnadet_tf.ablation import mean_std_cell

    summary = document["summary"]
    splits = [split for split in PROBED_SPLITS if f"{split}/whole" in summary]
    figures = [key for key in FIGURE_TITLES if f"{splits[0]}/{key}" in summary]
    lines = [f"accuracy (%), mean ± std over {len(document['runs'])} runs; tiles of {document['tile']} px", "",
             "| split | " + " | ".join(FIGURE_TITLES[key] for key in figures) + " |",
             "|---|" + "---:|" * len(figures)]
    lines += [f"| {SPLIT_TITLES[split]} | " + " | ".join(mean_std_cell(summary[f"{split}/{key}"]) for key in figures)
              + " |" for split in splits]
    rows = [(f"real photos, {name} ({source['images']})", f"real/{name}/")
            for name, source in document["runs"][0]["real_sources"].items()]
    if document["runs"][0]["fakes_called_real"]:
        rows.append((f"fakes of cross-dataset ({document['runs'][0]['fakes_called_real']['images']})",
                     "fakes_called_real/"))
    if rows:
        lines += ["", "share called real (%), mean ± std", "",
                  f"| images | as read | after JPEG {JPEG_QUALITY} |", "|---|---:|---:|"]
        lines += [f"| {title} | {mean_std_cell(summary[prefix + 'real_share'])} | "
                  f"{mean_std_cell(summary[prefix + 'real_share_jpeg95'])} |" for title, prefix in rows]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True, help="the benchmark folder the runs were trained on")
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="step-2 run dirs (other seeds)")
    parser.add_argument("--partner-runs", nargs="+", metavar="RUN", default=[],
                        help="one run per --runs run to average probabilities with")
    parser.add_argument("--real", nargs="+", metavar="DIR", default=[], help="folders of real photos of other sources")
    parser.add_argument("--tile", type=int, default=64, help="tile size in px of the network's input (default 64)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if args.partner_runs and len(args.partner_runs) != len(args.runs):
        parser.error(f"--partner-runs: expected one run per --runs run ({len(args.runs)}), "
                     f"received {len(args.partner_runs)}")
    configure_runtime()
    partners = args.partner_runs or [None] * len(args.runs)
    runs = [run_figures(args.zoo, run, partner, args.real, args.tile) for run, partner in zip(args.runs, partners)]
    summary = across_runs(runs)
    document = {"zoo": args.zoo, "tile": args.tile, "runs": runs, "summary": summary}
    print(format_tables(document))
    if args.json:
        write_json_atomic(args.json, document, indent=1, sort_keys=False)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
