"""A self-contained HTML report of an evaluation.

One file, `DIR/report.html`, with inline CSS and every image embedded as a
base64 `data:` URI (no network resources, nothing beside it needed): the
metrics table per dataset, the confusion matrices, a t-SNE of the pooled
features coloured by class, a few Grad-CAM examples per class, and the run's
configuration. The PNGs it embeds are also left in DIR (`tsne.png`,
`gradcam/`). `gradcam/gradcam.json` lists the Grad-CAM PNGs: a report into
the same DIR again removes those it does not write again. A report into the
same DIR replaces the report.html an earlier report wrote (its generator meta
tag says so) and the tsne.png and confusion PNGs that report embeds, and
removes that tsne.png when it draws none; it never replaces or removes a file
of yours: with your own report.html, tsne.png or confusion_NAME.png in DIR it
writes report-2.html, tsne-2.png or confusion_NAME-2.png (the next free name,
as `explain` does), and with a gradcam/gradcam.json that is not a report's
listing it writes its maps into gradcam-2/, and says so.

t-SNE and Grad-CAM need the Keras model of a run dir; for an exported model
(SavedModel, .tflite) those sections say so instead. Both use the images
unperturbed, even when the metrics were measured under `--perturb`.
"""
import base64
import datetime
import html
import os
import re

import numpy as np

from dnadet_tf.data import LabeledFiles, read_dataset, remap_to, usable_files
from dnadet_tf.errors import DataError
from dnadet_tf.evaluation import OPEN_SET_ROW, write_confusion_pngs
from dnadet_tf.explain import is_listing
from dnadet_tf.images import save_figure_atomic
from dnadet_tf.model import DEFAULT_GRADCAM_LAYER
from dnadet_tf.predictor import features_and_logits
from dnadet_tf.runs import (earlier_pngs, free_path, numbered_name, remove_unlisted, write_json_atomic,
                            write_text_atomic)

REPORT_FILE = "report.html"
GENERATOR = "dnadet-tf evaluate --report"  # report.html's generator meta tag: what tells an earlier report
# from a file of the user's (reports written before the tag are told by their title)
REPORT_MARKERS = (f'<meta name="generator" content="{GENERATOR}">', "<title>dnadet-tf evaluation report: ")
GRADCAM_DIR = "gradcam"
GRADCAM_LISTING = "gradcam.json"  # in GRADCAM_DIR: the rows (with `png`) of the Grad-CAM maps the report wrote
TSNE_PNG = "tsne.png"  # in the report folder: the t-SNE figure
TSNE_PERPLEXITY = 15.0
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1100px; color: #1d1d1f; line-height: 1.4; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 1.8em; }
p.meta, p.note { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
table.config td { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; border: 1px solid #e3e3e3; padding: 6px; background: #fff; }
figcaption { font-size: 0.85em; color: #444; max-width: 640px; word-break: break-all; }
img { display: block; max-width: 100%; height: auto; }
.grid.small img { width: 500px; }
.grid.small figcaption { max-width: 500px; }
"""


def embed_png(path):
    """A `data:image/png;base64,...` URI holding the PNG file at `path`."""
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def tsne_embedding(features, perplexity=TSNE_PERPLEXITY, seed=0):
    """(N, D) features -> (N, 2) t-SNE coordinates (scikit-learn, PCA init).

    The perplexity is clipped below the sample count, as scikit-learn requires;
    N must be at least 3.
    """
    from sklearn.manifold import TSNE

    features = np.asarray(features, np.float64)
    n = len(features)
    if n < 3:
        raise ValueError(f"t-SNE: expected at least 3 samples, received {n}.")
    perplexity = float(min(perplexity, n - 1.0))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    return tsne.fit_transform(features)


def plot_tsne(points, labels, class_names, path, groups=None, group_names=None, title=""):
    """Writes a scatter PNG: colour = class, marker = group (e.g. the dataset); names drawn as given (no
    mathtext)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    points = np.asarray(points)
    labels = np.asarray(labels)
    groups = np.zeros(len(points), np.int64) if groups is None else np.asarray(groups)
    group_names = group_names or ["images"]
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    figure, axes = plt.subplots(figsize=(7.5, 6.0))
    for g in np.unique(groups):
        for c in np.unique(labels):
            mask = (groups == g) & (labels == c)
            if mask.any():
                axes.scatter(points[mask, 0], points[mask, 1], s=18, alpha=0.8, color=cmap(int(c) % cmap.N),
                             marker=MARKERS[int(g) % len(MARKERS)], edgecolors="none")
    handles = [Line2D([], [], linestyle="", marker="o", color=cmap(c % cmap.N), label=name)
               for c, name in enumerate(class_names) if c in set(labels.tolist())]
    if len(group_names) > 1:
        handles += [Line2D([], [], linestyle="", marker=MARKERS[g % len(MARKERS)], color="0.4", label=name)
                    for g, name in enumerate(group_names) if g in set(groups.tolist())]
    legend = axes.legend(handles=handles, fontsize=8, loc="best", framealpha=0.8)
    for text in legend.get_texts():  # class and data names: a `$...$` pair in one is text, not mathtext
        text.set_parse_math(False)
    axes.set_xticks([])
    axes.set_yticks([])
    if title:
        axes.set_title(title, parse_math=False)
    figure.tight_layout()
    return save_figure_atomic(figure, path)


def _sample_per_class(labels, per_class, rng):
    """Up to `per_class` random indices of every class present, sorted."""
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        chosen.extend(rng.permutation(members)[:per_class].tolist())
    return np.sort(np.asarray(chosen, np.int64))


def _sample_files(spec, class_names, preprocess, per_class, seed):
    """Up to `per_class` usable files of every class of a dataset (LabeledFiles), or None.

    Only the sampled files are decoded (to drop unusable ones, silently: the
    evaluation already warned about them)."""
    files = remap_to(read_dataset(spec, "test"), class_names)
    keep = _sample_per_class(files.labels, per_class, np.random.default_rng(seed))
    subset = LabeledFiles([files.paths[i] for i in keep], files.labels[keep], files.class_names, files.source)
    try:
        return usable_files(subset, preprocess, warn=lambda message: None)
    except DataError:
        return None


def _evaluation_rows(rows):
    """The rows of `rows` that hold whole-image metrics of one dataset: all but the open-set row."""
    return [row for row in rows if row.get("kind") != OPEN_SET_ROW]


# optional columns of the metrics table: (metrics key, header), shown when a row has the key
OPTIONAL_COLUMNS = (("ece", "ECE %"), ("ece_uncalibrated", "ECE before temperature scaling %"),
                    ("flagged_unknown", "flagged unknown %"))


def _metrics_table(rows, class_names):
    """An HTML table: one line per evaluation row, accuracy, macro-F1, macro recall, the OPTIONAL_COLUMNS some row
    holds (ECE, ...) and recall per class (%)."""
    evaluation_rows = _evaluation_rows(rows)
    optional = [(key, title) for key, title in OPTIONAL_COLUMNS
                if any(key in row["metrics"] for row in evaluation_rows)]
    header = (["data", "images", "accuracy %", "macro-F1 %", "macro recall %"] + [title for _, title in optional]
              + [f"recall {c} %" for c in class_names])
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for row in evaluation_rows:
        m = row["metrics"]
        recall = m.get("per_class_recall", {})
        cells = [row["name"], str(m["num_images"]), f"{100 * m['accuracy']:.2f}", f"{100 * m['macro_f1']:.2f}",
                 f"{100 * m['macro_recall']:.2f}"]
        cells += [f"{100 * m[key]:.2f}" if key in m else "-" for key, _ in optional]
        cells += [f"{100 * recall[c]:.1f}" if c in recall else "-" for c in class_names]
        title = html.escape(str(row.get("data", "")), quote=True)
        out.append(f'<tr title="{title}">' + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _figure(path, caption, alt):
    """An HTML <figure> embedding the PNG at `path`, with its caption and alt text."""
    return (f'<figure><img src="{embed_png(path)}" alt="{html.escape(alt, quote=True)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _note(text):
    """An HTML paragraph of class "note" holding `text` (HTML, not escaped)."""
    return f'<p class="note">{text}</p>'


def _config_table(values):
    """An HTML table of `values` ({key: value}), keys sorted; lists shown comma-separated."""
    out = ['<table class="config"><tbody>']
    for key in sorted(values):
        value = values[key]
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value) or "(none)"
        out.append(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


# Sections: each returns (key, heading, body HTML).

def _metrics_section(rows, class_names):
    """The metrics table of the evaluation rows."""
    return ("metrics", "Metrics", _metrics_table(rows, class_names)
            + _note("Accuracy, macro averages over the classes present in the true or the predicted labels, "
                    "expected calibration error (15 bins), the share of the images the open-set score flags "
                    "unknown (a calibrated model), per-class recall; hover a row for its data path."))


def _table(header, lines):
    """An HTML table of `header` and `lines` (rows of strings), every cell escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>" for line in lines)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _open_set_sections(rows):
    """The open-set section, for an evaluation with an open-set row (`--unknown`, a benchmark's open_set.txt):
    AUROC, FPR at 95 % TPR, open-set accuracy, the shares of unknown and known images flagged, and every score's
    AUROC and FPR95 when measured; [] without one."""
    open_set = [row for row in rows if row.get("kind") == OPEN_SET_ROW]
    if not open_set:
        return []
    parts = []
    for row in open_set:
        m = row["metrics"]
        parts.append(_table(
            ["score", "threshold", "known images", "unknown images", "AUROC", "FPR at 95 % TPR %",
             "open-set accuracy %", "unknown flagged %", "known flagged %"],
            [[str(m["score"]), f"{m['threshold']:.4g}", str(m["known_images"]), str(m["unknown_images"]),
              f"{m['auroc']:.4f}", f"{100 * m['fpr_at_95_tpr']:.2f}", f"{100 * m['open_set_accuracy']:.2f}",
              f"{100 * m['unknown_flagged']:.1f}", f"{100 * m['known_flagged']:.1f}"]]))
        parts.append(_note(f"{html.escape(', '.join(map(str, row.get('data', []))))} against the known images of "
                           f"{html.escape(', '.join(map(str, row.get('known', []))))}; an image is flagged unknown "
                           "where its score passes the threshold."))
        if m.get("by_score"):
            parts.append(_table(["score", "AUROC", "FPR at 95 % TPR %"],
                                [[name, f"{f['auroc']:.4f}", f"{100 * f['fpr_at_95_tpr']:.2f}"]
                                 for name, f in m["by_score"].items()]))
    return [("openset", "Open set", "\n".join(parts))]


def _confusion_png(row, class_names, out_dir, replaceable, drawn):
    """The confusion-matrix PNG of an evaluation row: its `confusion_png`, or one drawn into `out_dir` as
    `evaluate --out` draws it (the row itself is not changed), over a file of `replaceable` (those an earlier
    report drew) but no other file there, nor one of `drawn` (the PNGs this report drew, to which it is added)."""
    png = row.get("confusion_png")
    if png and os.path.isfile(png):
        return png
    kept = {os.path.realpath(path) for path in drawn}
    (png,) = write_confusion_pngs([dict(row)], class_names, out_dir,
                                  replaceable=[path for path in replaceable if os.path.realpath(path) not in kept])
    drawn.append(png)
    return png


def _confusion_section(rows, class_names, out_dir, replaceable=()):
    """A figure per evaluation row: its confusion matrix (`_confusion_png`; `replaceable`: the confusion PNGs of
    the report replaced, `_earlier_confusion_pngs`)."""
    drawn = []
    figures = [_figure(_confusion_png(row, class_names, out_dir, replaceable, drawn),
                       f"{row['name']} ({row['metrics']['num_images']} images)", f"confusion matrix {row['name']}")
               for row in _evaluation_rows(rows)]
    return ("confusion", "Confusion matrices", '<div class="grid">' + "".join(figures) + "</div>")


def _earlier_confusion_pngs(report, out_dir):
    """The confusion PNGs (confusion_*.png) in `out_dir` whose bytes the report at `report` (an earlier report's
    or none, `_report_paths`) embeds in its confusion section: those it drew, which this report may draw over."""
    return _embedded_files(report, "confusion", out_dir, r"confusion_.*\.png")


def _embedded_files(report, section, out_dir, pattern):
    """The files of `out_dir` whose names match `pattern` (a regular expression, whole name) and whose bytes the
    report at `report` (none: none) embeds in its `section`, in name order."""
    embedded = _embedded_pngs(report, section) if os.path.isfile(report) else set()
    found = []
    for name in sorted(os.listdir(out_dir)) if embedded else []:
        path = os.path.join(out_dir, name)
        if re.fullmatch(pattern, name) and os.path.isfile(path) and embed_png(path).split(",", 1)[1] in embedded:
            found.append(path)
    return found


def _tsne_sample(rows, class_names, preprocess, max_images, seed):
    """Usable test files of every row, spread over rows and classes (about `max_images` in all).

    Returns (paths [N], labels [N] class indices, groups [N] indices into names, names [G] of the rows
    that gave files)."""
    paths, labels, groups, names = [], [], [], []
    rows = _evaluation_rows(rows)  # the open-set row's data are images of unknown classes
    per_class = max(1, max_images // max(1, len(rows) * len(class_names)))
    for g, row in enumerate(rows):
        subset = _sample_files(row["data"], class_names, preprocess, per_class, seed + g)
        if subset is None:
            continue
        paths += subset.paths
        labels += subset.labels.tolist()
        groups += [len(names)] * len(subset)
        names.append(row["name"])
    return paths, labels, groups, names


def _tsne_figure(model, sample, class_names, png, seed, batch_size, progress):
    """Writes `png` (tsne.png, or the free name `_report_paths` chose), the t-SNE of the pooled features (N, D) of
    `sample` (from `_tsne_sample`, N >= 3), and returns its HTML figure."""
    paths, labels, groups, names = sample
    progress(f"report: t-SNE of the pooled features of {len(paths)} images")
    if os.path.basename(png) != TSNE_PNG:
        progress(f"report: {os.path.join(os.path.dirname(png), TSNE_PNG)} is not an earlier report's t-SNE: kept; "
                 f"writing {png}")
    features = features_and_logits(model, paths, batch_size)[0]
    points = tsne_embedding(features, seed=seed)
    perplexity = min(TSNE_PERPLEXITY, len(paths) - 1.0)
    png = plot_tsne(points, labels, class_names, png, groups=groups,
                    group_names=names, title=f"t-SNE of the pooled features (perplexity {perplexity:g})")
    return _figure(png, f"{len(paths)} images, {features.shape[1]}-d features; colour = true class"
                   + ("; marker = dataset" if len(names) > 1 else ""), "t-SNE of the pooled features")


def _tsne_section(model, rows, class_names, preprocess, png, earlier, max_images, seed, batch_size, progress):
    """The t-SNE figure, written to `png`, or a note saying why there is none (no Keras model, fewer than 3
    images); the files of `earlier` (the t-SNE PNGs of the report replaced) that it does not write are removed."""
    heading = "t-SNE of the pooled features"
    sample = None if model is None else _tsne_sample(rows, class_names, preprocess, max_images, seed)
    if sample is not None and len(sample[0]) >= 3:
        figure = _tsne_figure(model, sample, class_names, png, seed, batch_size, progress)
        remove_unlisted(earlier, [png])
        return ("tsne", heading, figure)
    remove_unlisted(earlier, [])
    return ("tsne", heading, _note("Not available: t-SNE needs the Keras model of a run dir." if sample is None
                                   else f"Not enough images for t-SNE ({len(sample[0])})."))


def _remove_if_there(path):
    """Removes the file at `path` when there is one."""
    if os.path.isfile(path):
        os.remove(path)


def is_report(path):
    """Whether the file at `path` is a report.html this module wrote (its generator meta tag; one written before
    the tag had it by its title): what a report into the same folder may replace."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return False
    return any(marker in head for marker in REPORT_MARKERS)


def _embedded_pngs(path, section):
    """The base64 text of every PNG the report at `path` embeds in its section `section` ("tsne"; a set, empty when
    it cannot be read). The t-SNE section's alone: a file of the user's may well be a copy of another figure."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return set()
    found = re.search(rf'<section id="{re.escape(section)}">(.*?)</section>', text, re.S)
    return set(re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', found.group(1))) if found else set()


def _report_paths(out_dir):
    """(report, tsne, earlier_tsne): where the report writes its HTML and its t-SNE PNG in `out_dir`, and the t-SNE
    PNGs of the earlier report it replaces (which it replaces or removes).

    The HTML goes to report.html, or to report-2.html, -3, ... when a file that is not a report (`is_report`) holds
    the name; an earlier report there is replaced. Its t-SNE PNGs (tsne.png, tsne-2.png, ...) are those whose bytes
    its t-SNE section embeds; the t-SNE goes to tsne.png, or the next name that is free or one of those. A file of
    the user's is neither written over nor removed."""
    report = free_path(out_dir, REPORT_FILE, is_report)
    stem, ext = os.path.splitext(TSNE_PNG)
    earlier = _embedded_files(report, "tsne", out_dir, rf"{re.escape(stem)}(-[0-9]+)?{re.escape(ext)}")
    tsne = free_path(out_dir, TSNE_PNG, lambda path: path in earlier)
    return report, tsne, earlier


def _gradcam_sample(spec, class_names, preprocess, per_class, seed):
    """Up to `per_class` usable test files of every class of dataset `spec`: (paths [N], labels [N]), or None.
    A few spare files per class are sampled, in case some are unusable."""
    subset = _sample_files(spec, class_names, preprocess, per_class + 2, seed)
    if subset is None:
        return None
    chosen = np.concatenate([np.flatnonzero(subset.labels == c)[:per_class] for c in np.unique(subset.labels)])
    return [subset.paths[i] for i in chosen], subset.labels[chosen]


def _gradcam_folder(out_dir):
    """Where the report's Grad-CAM maps go: `out_dir`/gradcam, or gradcam-2, -3, ...: the first that is absent or a
    folder whose GRADCAM_LISTING is absent or a report's (`explain.is_listing`); a listing of the user's is never
    read, written over nor removed."""
    number = 1
    while True:
        folder = os.path.join(out_dir, numbered_name(GRADCAM_DIR, number))
        listing = os.path.join(folder, GRADCAM_LISTING)
        if not os.path.lexists(folder) or (os.path.isdir(folder) and (not os.path.lexists(listing)
                                                                        or is_listing(listing))):
            return folder
        number += 1


def _explain_into(model, class_names, preprocess, sample, gradcam_dir, layer, method, batch_size):
    """Writes a Grad-CAM PNG per file of `sample` (paths [N], labels [N]) into `gradcam_dir` and lists them in
    its GRADCAM_LISTING; the PNGs an earlier report listed there and this one does not write are removed,
    other files are kept. Returns the rows of `explain.explain_files` (N)."""
    from dnadet_tf.explain import explain_files

    gradcam_dir = os.path.abspath(gradcam_dir)  # the listing names PNGs whatever the working folder
    listing = os.path.join(gradcam_dir, GRADCAM_LISTING)
    earlier = earlier_pngs(listing, "png")
    paths, labels = sample
    results = explain_files(model, class_names, preprocess, paths, gradcam_dir, layer=layer, method=method,
                            labels=labels, batch_size=batch_size, replaceable=earlier)
    write_json_atomic(listing, results)
    remove_unlisted(earlier, [result["png"] for result in results])
    return results


def _gradcam_body(results, layer, method, data_name):
    """The Grad-CAM section's HTML: what the maps are, then a figure per row of `results` (or a note)."""
    figures = [_figure(result["png"], result["path"], f"Grad-CAM of {os.path.basename(result['path'])}")
               for result in results]
    return (_note(f'{"Grad-CAM++" if method == "gradcam++" else "Grad-CAM"} at layer '
                  f"<code>{html.escape(layer)}</code> for the predicted class, on {html.escape(data_name)}; "
                  "the map is upsampled to the preprocessed input and laid over it.")
            + ('<div class="grid small">' + "".join(figures) + "</div>" if figures else _note("No usable image.")))


def _gradcam_section(model, rows, class_names, preprocess, out_dir, per_class, layer, method, seed, batch_size,
                     progress):
    """Grad-CAM examples of the first row's dataset, written into `out_dir/gradcam`, or a note saying why
    there are none (no Keras model, no rows, no usable image); without maps, an earlier report's go."""
    heading = "Grad-CAM examples"
    gradcam_dir = _gradcam_folder(out_dir)
    sample = None if model is None or not rows else _gradcam_sample(rows[0]["data"], class_names, preprocess,
                                                                    per_class, seed)
    listing = os.path.join(gradcam_dir, GRADCAM_LISTING)
    if sample is None and os.path.isfile(listing):  # an earlier report's (`_gradcam_folder`): its maps go
        remove_unlisted(earlier_pngs(listing, "png"), [])
        _remove_if_there(listing)
    if model is None:
        return ("gradcam", heading, _note("Not available: Grad-CAM needs the Keras model of a run dir."))
    if not rows:
        return ("gradcam", heading, _note("No data."))
    results = []
    if sample is not None:
        progress(f"report: Grad-CAM of {len(sample[0])} images of {rows[0]['name']}")
        if os.path.basename(gradcam_dir) != GRADCAM_DIR:
            progress(f"report: {os.path.join(out_dir, GRADCAM_DIR, GRADCAM_LISTING)} is not an earlier report's "
                     f"listing: kept; writing the Grad-CAM maps into {gradcam_dir}")
        results = _explain_into(model, class_names, preprocess, sample, gradcam_dir, layer, method, batch_size)
    return ("gradcam", heading, _gradcam_body(results, layer, method, rows[0]["name"]))


def _config_section(predictor, settings):
    """The model, its classes and preprocessing, `settings`, and a run dir's training configuration."""
    config = {"model": getattr(predictor, "source", ""), "kind": getattr(predictor, "kind", ""),
              "classes": list(predictor.class_names),
              "preprocess": ", ".join(f"{k}={v}" for k, v in predictor.preprocess.to_dict().items())}
    body = _config_table({**config, **(settings or {})})
    run = getattr(predictor, "run", None)
    if run is not None:
        body += "<h3>Training configuration (config.json)</h3>" + _config_table(run.config.flat())
    return ("config", "Configuration", body)


def _page(source, num_classes, sections):
    """The whole HTML document: title, meta line, navigation, then every (key, heading, body) section."""
    title = f"dnadet-tf evaluation report: {os.path.basename(os.path.normpath(source)) or source}"
    generated = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    nav = " · ".join(f'<a href="#{key}">{html.escape(heading)}</a>' for key, heading, _ in sections)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', REPORT_MARKERS[0],
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">Model {html.escape(source)} · {num_classes} classes · generated {generated}</p>',
        f"<nav>{nav}</nav>",
    ]
    for key, heading, body in sections:
        parts.append(f'<section id="{key}"><h2>{html.escape(heading)}</h2>\n{body}\n</section>')
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_report(predictor, rows, out_dir, settings=None, gradcam_per_class=2, tsne_max_images=500,
                 layer=DEFAULT_GRADCAM_LAYER, method="gradcam", seed=0, batch_size=16, progress=print):
    """Writes `out_dir/report.html` for evaluation `rows` (from `evaluation.evaluate`).

    Args:
      predictor: what produced the rows; its Keras model (run dirs) serves t-SNE and Grad-CAM.
      rows: {name, data, metrics[, confusion_png]} per dataset.
      settings: extra key/values shown with the configuration (e.g. the evaluation flags).
      gradcam_per_class: Grad-CAM examples per class, from the first dataset.
      tsne_max_images: at most this many images in the t-SNE, spread over datasets and classes.
      layer, method: Grad-CAM target layer and "gradcam" / "gradcam++".
      seed: picks the sampled images and seeds t-SNE.

    Beside the HTML: `tsne.png`, confusion PNGs of rows without one, and `gradcam/` with its PNGs and their
    listing (`gradcam.json`); the Grad-CAM PNGs an earlier report listed there and this one does not write again
    are removed. An earlier report's report.html and the tsne.png and confusion PNGs it embeds are replaced (that
    tsne.png removed when there is no t-SNE); a file of the user's under any of these names is kept, and the report
    takes the next free name (report-2.html, tsne-2.png, confusion_NAME-2.png; `_report_paths`), which `progress`
    names (but the confusion PNGs' names); with a gradcam/gradcam.json that is not a report's listing, the maps go
    to gradcam-2/ (`_gradcam_folder`). Returns the path of the HTML file.
    """
    os.makedirs(out_dir, exist_ok=True)
    class_names = list(predictor.class_names)
    model = getattr(predictor, "model", None)
    path, tsne_png, earlier_tsne = _report_paths(out_dir)
    sections = [
        _metrics_section(rows, class_names),
        *_open_set_sections(rows),
        _confusion_section(rows, class_names, out_dir, _earlier_confusion_pngs(path, out_dir)),
        _tsne_section(model, rows, class_names, predictor.preprocess, tsne_png, earlier_tsne, tsne_max_images, seed,
                      batch_size, progress),
        _gradcam_section(model, rows, class_names, predictor.preprocess, out_dir, gradcam_per_class, layer, method,
                         seed, batch_size, progress),
        _config_section(predictor, settings),
    ]
    if os.path.basename(path) != REPORT_FILE:
        progress(f"report: {os.path.join(out_dir, REPORT_FILE)} is not an earlier report: kept; writing {path}")
    write_text_atomic(path, _page(getattr(predictor, "source", ""), len(class_names), sections))
    return path
