"""Classification metrics computed with NumPy, and the confusion-matrix PNG."""
import numpy as np

from dnadet_tf.images import save_figure_atomic

# characters per line of a class name on a confusion matrix's axes, and of its title: longer ones are wrapped
LABEL_WRAP, TITLE_WRAP = 24, 60


def confusion_matrix(y_true, y_pred, num_classes):
    """(num_classes, num_classes) counts; rows are true classes, columns predictions."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return matrix


def classification_metrics(y_true, y_pred, class_names):
    """Accuracy, macro-F1, macro recall, per-class recall and the confusion matrix.

    Macro averages run over the classes that occur in `y_true` or in `y_pred`
    (scikit-learn's and the authors' release's convention): a cross-test that
    holds one architecture only (cross-seed, say) is not dragged down by classes
    nobody predicted, and a prediction of an absent class still costs macro-F1.
    Per-class recall is reported for classes present in `y_true` only.
    """
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.asarray(y_pred, np.int64)
    matrix = confusion_matrix(y_true, y_pred, len(class_names))
    present = np.flatnonzero(matrix.sum(axis=1) > 0)
    averaged = np.flatnonzero((matrix.sum(axis=1) > 0) | (matrix.sum(axis=0) > 0))
    true_positives = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    recall = np.divide(true_positives, support, out=np.zeros_like(true_positives), where=support > 0)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return {
        "num_images": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(np.mean(f1[averaged])) if len(averaged) else 0.0,
        "macro_recall": float(np.mean(recall[averaged])) if len(averaged) else 0.0,
        "per_class_recall": {class_names[i]: float(recall[i]) for i in present},
        "confusion_matrix": matrix.tolist(),
    }


def _wrapped(text, width):
    """`text` broken into lines of at most `width` characters (at spaces and hyphens, else inside a word); a
    shorter one as it is."""
    import textwrap

    text = str(text)
    if len(text) <= width:
        return text
    return "\n".join(textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=True)) or text


def fit_figure(figure, axes, side, tries=6):
    """Lays `figure` out (`tight_layout`) and grows it until none of its text (its title, tick labels) lies past its
    edge and `axes` (of a fixed aspect) spans at least `side` inches each way: a long class name or title is drawn
    whole, never clipped, and never squeezes the plot to nothing."""
    import warnings

    renderer = figure.canvas.get_renderer()
    for _ in range(tries):
        with warnings.catch_warnings():  # "Tight layout not applied": the figure is too small yet, it grows below
            warnings.simplefilter("ignore", UserWarning)
            figure.tight_layout()
        axes.apply_aspect()
        box = figure.get_tightbbox(renderer)  # inches
        width, height = figure.get_size_inches()
        position = axes.get_position()
        wider = max(0.0, -box.x0) + max(0.0, box.x1 - width) + max(0.0, side - position.width * width)
        taller = max(0.0, -box.y0) + max(0.0, box.y1 - height) + max(0.0, side - position.height * height)
        if wider <= 0.01 and taller <= 0.01:
            return figure
        figure.set_size_inches(width + wider, height + taller)
    return figure


def plot_confusion_matrix(matrix, class_names, path, title=""):
    """Writes a confusion-matrix PNG with counts in the cells, rows normalised for colour. `class_names` and
    `title` are drawn as given (a `$...$` pair in them is text, not matplotlib mathtext), a class name longer than
    LABEL_WRAP characters and a title longer than TITLE_WRAP on several lines, the title centred over the figure;
    the figure grows to hold them whole (`fit_figure`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, np.float64), where=rows > 0)
    names = [_wrapped(name, LABEL_WRAP) for name in class_names]
    size = 1.2 + 0.6 * len(class_names)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    # names come from folders and files: parse_math=False draws a `$` as itself (mathtext garbled or refused them)
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right", parse_math=False)
    axes.set_yticks(range(len(names)), names, parse_math=False)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:  # over the figure: centred over the axes, a title wider than they are passed the figure's edge
        figure.suptitle(_wrapped(title, TITLE_WRAP), parse_math=False)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                axes.text(j, i, str(matrix[i, j]), ha="center", va="center",
                          color="white" if normalised[i, j] > 0.5 else "black", fontsize=8)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    lines = max([name.count("\n") + 1 for name in names] or [1])
    fit_figure(figure, axes, len(names) * max(0.5, 0.3 * lines))  # a cell for each name, however many lines
    return save_figure_atomic(figure, path, dpi=110)
