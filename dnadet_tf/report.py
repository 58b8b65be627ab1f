"""A self-contained HTML report of an evaluation.

One file, `DIR/report.html`, with inline CSS and every image embedded as a
base64 `data:` URI (no network resources, nothing beside it needed): the
metrics table per dataset, the confusion matrices, a t-SNE of the pooled
features coloured by class, a few Grad-CAM examples per class, and the run's
configuration. The PNGs it embeds are also left in DIR (`tsne.png`,
`gradcam/`).

t-SNE and Grad-CAM need the Keras model of a run dir; for an exported model
(SavedModel, .tflite) those sections say so instead. Both use the images
unperturbed, even when the metrics were measured under `--perturb`.
"""
import base64
import datetime
import html
import os

import numpy as np

from dnadet_tf.data import LabeledFiles, read_dataset, remap_to, usable_files
from dnadet_tf.errors import DataError
from dnadet_tf.evaluation import write_confusion_pngs
from dnadet_tf.images import save_figure_atomic
from dnadet_tf.model import DEFAULT_GRADCAM_LAYER
from dnadet_tf.predictor import features_and_logits
from dnadet_tf.runs import write_text_atomic

REPORT_FILE = "report.html"
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
    """Writes a scatter PNG: colour = class, marker = group (e.g. the dataset)."""
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
    axes.legend(handles=handles, fontsize=8, loc="best", framealpha=0.8)
    axes.set_xticks([])
    axes.set_yticks([])
    if title:
        axes.set_title(title)
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


def _metrics_table(rows, class_names):
    header = ["data", "images", "accuracy %", "macro-F1 %", "macro recall %"] + [f"recall {c} %" for c in class_names]
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for row in rows:
        if row.get("kind") == "open_set":
            continue
        m = row["metrics"]
        recall = m.get("per_class_recall", {})
        cells = [row["name"], str(m["num_images"]), f"{100 * m['accuracy']:.2f}", f"{100 * m['macro_f1']:.2f}",
                 f"{100 * m['macro_recall']:.2f}"]
        cells += [f"{100 * recall[c]:.1f}" if c in recall else "-" for c in class_names]
        title = html.escape(str(row.get("data", "")), quote=True)
        out.append(f'<tr title="{title}">' + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _figure(path, caption, alt):
    return (f'<figure><img src="{embed_png(path)}" alt="{html.escape(alt, quote=True)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _config_table(values):
    out = ['<table class="config"><tbody>']
    for key in sorted(values):
        value = values[key]
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value) or "(none)"
        out.append(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


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

    Returns the path of the HTML file.
    """
    os.makedirs(out_dir, exist_ok=True)
    class_names = list(predictor.class_names)
    preprocess = predictor.preprocess
    run = getattr(predictor, "run", None)
    model = getattr(predictor, "model", None)
    source = getattr(predictor, "source", "")
    sections = []

    # Metrics.
    sections.append(("metrics", "Metrics", _metrics_table(rows, class_names)
                     + '<p class="note">Accuracy, macro averages over the classes present in the true or the predicted labels, per-class recall; '
                       "hover a row for its data path.</p>"))

    # Confusion matrices.
    figures = []
    for row in rows:
        if row.get("kind") == "open_set":
            continue
        png = row.get("confusion_png")
        if not png or not os.path.isfile(png):  # drawn as `evaluate --out` draws it, without changing the row
            (png,) = write_confusion_pngs([dict(row)], class_names, out_dir)
        figures.append(_figure(png, f"{row['name']} ({row['metrics']['num_images']} images)",
                               f"confusion matrix {row['name']}"))
    sections.append(("confusion", "Confusion matrices", '<div class="grid">' + "".join(figures) + "</div>"))

    # t-SNE of the pooled features.
    if model is None:
        body = '<p class="note">Not available: t-SNE needs the Keras model of a run dir.</p>'
    else:
        paths, labels, groups, names = [], [], [], []
        per_class = max(1, tsne_max_images // max(1, len(rows) * len(class_names)))
        for g, row in enumerate(rows):
            subset = _sample_files(row["data"], class_names, preprocess, per_class, seed + g)
            if subset is None:
                continue
            paths += subset.paths
            labels += subset.labels.tolist()
            groups += [len(names)] * len(subset)
            names.append(row["name"])
        if len(paths) < 3:
            body = f'<p class="note">Not enough images for t-SNE ({len(paths)}).</p>'
        else:
            progress(f"report: t-SNE of the pooled features of {len(paths)} images")
            features = features_and_logits(model, paths, batch_size)[0]
            points = tsne_embedding(features, seed=seed)
            perplexity = min(TSNE_PERPLEXITY, len(paths) - 1.0)
            tsne_png = plot_tsne(points, labels, class_names, os.path.join(out_dir, "tsne.png"),
                                 groups=groups, group_names=names,
                                 title=f"t-SNE of the pooled features (perplexity {perplexity:g})")
            body = (_figure(tsne_png, f"{len(paths)} images, {features.shape[1]}-d features; colour = true class"
                            + ("; marker = dataset" if len(names) > 1 else ""), "t-SNE of the pooled features"))
    sections.append(("tsne", "t-SNE of the pooled features", body))

    # Grad-CAM examples.
    if model is None:
        body = '<p class="note">Not available: Grad-CAM needs the Keras model of a run dir.</p>'
    elif not rows:
        body = '<p class="note">No data.</p>'
    else:
        from dnadet_tf.explain import explain_files

        # A few spare files per class, in case some are unusable.
        subset = _sample_files(rows[0]["data"], class_names, preprocess, gradcam_per_class + 2, seed)
        figures = []
        if subset is not None:
            chosen = np.concatenate([np.flatnonzero(subset.labels == c)[:gradcam_per_class]
                                     for c in np.unique(subset.labels)])
            paths = [subset.paths[i] for i in chosen]
            progress(f"report: Grad-CAM of {len(paths)} images of {rows[0]['name']}")
            gradcam_dir = os.path.join(out_dir, "gradcam")
            for name in os.listdir(gradcam_dir) if os.path.isdir(gradcam_dir) else []:
                if name.endswith((".gradcam.png", ".gradcampp.png")):  # an earlier report's, of other images
                    os.remove(os.path.join(gradcam_dir, name))
            results = explain_files(model, class_names, preprocess, paths, gradcam_dir,
                                    layer=layer, method=method, labels=subset.labels[chosen], batch_size=batch_size)
            for result in results:
                figures.append(_figure(result["png"], result["path"],
                                       f"Grad-CAM of {os.path.basename(result['path'])}"))
        body = (f'<p class="note">{"Grad-CAM++" if method == "gradcam++" else "Grad-CAM"} at layer '
                f"<code>{html.escape(layer)}</code> for the predicted class, on {html.escape(rows[0]['name'])}; "
                "the map is upsampled to the preprocessed input and laid over it.</p>"
                + ('<div class="grid small">' + "".join(figures) + "</div>" if figures else
                   '<p class="note">No usable image.</p>'))
    sections.append(("gradcam", "Grad-CAM examples", body))

    # Configuration.
    config = {"model": source, "kind": getattr(predictor, "kind", ""), "classes": class_names,
              "preprocess": ", ".join(f"{k}={v}" for k, v in preprocess.to_dict().items())}
    body = _config_table({**config, **(settings or {})})
    if run is not None:
        body += "<h3>Training configuration (config.json)</h3>" + _config_table(run.config.flat())
    sections.append(("config", "Configuration", body))

    title = f"dnadet-tf evaluation report: {os.path.basename(os.path.normpath(source)) or source}"
    generated = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    nav = " · ".join(f'<a href="#{key}">{html.escape(heading)}</a>' for key, heading, _ in sections)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">Model {html.escape(source)} · {len(class_names)} classes · generated {generated}</p>',
        f"<nav>{nav}</nav>",
    ]
    for key, heading, content in sections:
        parts.append(f'<section id="{key}"><h2>{html.escape(heading)}</h2>\n{content}\n</section>')
    parts += ["</body>", "</html>", ""]
    path = os.path.join(out_dir, REPORT_FILE)
    write_text_atomic(path, "\n".join(parts))
    return path
