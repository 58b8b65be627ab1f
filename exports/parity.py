"""Parity of exported models with the Keras model they came from.

For each format: file size, top-1 agreement with the Keras model, max and mean
absolute difference of the probabilities, accuracy when labels are known, and
the median latency per image at batch 1 after warm-up. For a calibrated run
also the open-set outputs: max |d ood_score| relative to the threshold's scale,
the agreement of the unknown flags, and the threshold each file flags with (its
own, refitted on its scores, or the Keras model's).
"""
import time

import numpy as np


def median_latency_ms(predictor, images, runs=20, warmup=3):
    """Median wall time of `predictor.predict_pixels` on one image (batch 1), in ms.

    images: (K, S, S, 3) float32; the timed calls cycle through them.
    """
    if len(images) == 0:
        return None
    for i in range(warmup):
        predictor.predict_pixels(images[i % len(images)][None])
    times = []
    for i in range(runs):
        start = time.perf_counter()
        predictor.predict_pixels(images[i % len(images)][None])
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def compare_scores(reference, scores, threshold, own_threshold=None):
    """Open-set figures of (N,) `scores` against (N,) `reference` scores and their threshold.

    `own_threshold`: the threshold the exported file flags its own scores with (an int8 file's refitted
    one), default `threshold`; the unknown flags compared are each model's own."""
    reference = np.asarray(reference, np.float64)
    scores = np.asarray(scores, np.float64)
    difference = np.abs(scores - reference)
    scale = max(abs(float(threshold)), 1e-12)
    return {
        "ood_score_max_abs_diff": float(difference.max()) if difference.size else 0.0,
        "ood_score_max_rel_diff": float(difference.max() / scale) if difference.size else 0.0,
        "unknown_agreement": (float(np.mean((scores > (threshold if own_threshold is None else own_threshold))
                                            == (reference > threshold))) if difference.size else 1.0),
    }


def compare(reference, probabilities, labels=None):
    """Agreement and differences of (N, C) `probabilities` against (N, C) `reference`."""
    reference = np.asarray(reference, np.float64)
    probabilities = np.asarray(probabilities, np.float64)
    difference = np.abs(probabilities - reference)
    row = {
        "images": int(len(reference)),
        "top1_agreement": float(np.mean(np.argmax(probabilities, 1) == np.argmax(reference, 1))),
        "max_abs_diff": float(difference.max()) if difference.size else 0.0,
        "mean_abs_diff": float(difference.mean()) if difference.size else 0.0,
        "accuracy": None,
    }
    if labels is not None:
        row["accuracy"] = float(np.mean(np.argmax(probabilities, 1) == np.asarray(labels)))
    return row


def parity_rows(reference, candidates, batches, labels=None, reference_size=None, latency_images=20, latency_runs=20,
                warmup=3):
    """Runs every predictor on the same preprocessed images and compares them with `reference`.

    Args:
      reference: the Keras predictor (row `keras`, file size `reference_size`).
      candidates: list of (format, predictor, size_bytes).
      batches: iterable of (N, S, S, 3) float32 pixel batches, in the order of `labels`.
      labels: (N,) int labels, or None when the images are unlabelled.
      latency_images: how many of the first images the latency runs cycle through.

    Returns a list of row dicts (keras first): format, size_bytes, images,
    top1_agreement, max_abs_diff, mean_abs_diff, accuracy, latency_ms; for a calibrated run also
    `compare_scores`'s figures, `threshold` (the one the file flags its own scores with) and `threshold_from`
    (`threshold_source`).
    """
    everyone = [("keras", reference, reference_size)] + list(candidates)
    outputs = {fmt: [] for fmt, _, _ in everyone}
    pool = []
    for batch in batches:
        batch = np.asarray(batch, np.float32)
        for fmt, predictor, _ in everyone:
            outputs[fmt].append(predictor.attribute_pixels(batch))
        if len(pool) < latency_images:
            pool.extend(batch[: latency_images - len(pool)])
    pool = np.asarray(pool, np.float32)
    joined = {fmt: {key: np.concatenate([o[key] for o in parts]) for key in parts[0]} if parts else {}
              for fmt, parts in outputs.items()}
    reference_probabilities = joined["keras"].get("probabilities", np.zeros((0, len(reference.class_names))))
    rows = []
    for fmt, predictor, size in everyone:
        row = {"format": fmt, "size_bytes": size}
        row.update(compare(reference_probabilities, joined[fmt].get("probabilities", reference_probabilities), labels))
        if reference.open_set and "ood_score" in joined[fmt]:
            own = getattr(predictor, "open_set", None) or reference.open_set
            row.update(compare_scores(joined["keras"]["ood_score"], joined[fmt]["ood_score"],
                                      reference.open_set["threshold"], own["threshold"]))
            row.update(threshold=float(own["threshold"]), threshold_from=threshold_source(own))
        row["latency_ms"] = median_latency_ms(predictor, pool, runs=latency_runs, warmup=warmup)
        rows.append(row)
    return rows


def threshold_source(open_set):
    """Which threshold the file of open-set entry `open_set` flags with: "own" (refitted on the file's own scores,
    a `threshold_fitted_on` naming its images) or "keras" (the Keras model's, as fitted by calibrate)."""
    return "own" if "images" in (open_set.get("threshold_fitted_on") or {}) else "keras"


def _size(value):
    if value is None:
        return "-"
    return f"{value / 1e6:.2f} MB" if value >= 1e5 else f"{value / 1e3:.1f} kB"


def format_parity_table(rows):
    """Plain-text table of `parity_rows`."""
    open_set = any("unknown_agreement" in row for row in rows)
    header = ["format", "size", "top-1 agree", "max |dp|", "mean |dp|", "accuracy", "latency ms"]
    if open_set:
        header += ["max |d score|/thr", "unknown agree", "threshold"]
    lines = [header]
    for row in rows:
        accuracy = "-" if row["accuracy"] is None else f"{100 * row['accuracy']:.2f} %"
        latency = "-" if row["latency_ms"] is None else f"{row['latency_ms']:.3f}"
        line = [row["format"], _size(row["size_bytes"]), f"{100 * row['top1_agreement']:.2f} %",
                f"{row['max_abs_diff']:.2e}", f"{row['mean_abs_diff']:.2e}", accuracy, latency]
        if open_set:
            line += ([f"{row['ood_score_max_rel_diff']:.2e}", f"{100 * row['unknown_agreement']:.2f} %",
                      f"{row['threshold']:.4g} ({row['threshold_from']})" if "threshold" in row else "-"]
                     if "unknown_agreement" in row else ["-", "-", "-"])
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    def render(line):
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))

    return "\n".join(render(line) for line in lines)
