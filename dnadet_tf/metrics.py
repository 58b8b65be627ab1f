"""Classification metrics computed with NumPy, and the confusion-matrix PNG."""
import numpy as np

from dnadet_tf.images import save_figure_atomic


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


def plot_confusion_matrix(matrix, class_names, path, title=""):
    """Writes a confusion-matrix PNG with counts in the cells, rows normalised for colour. `class_names` and
    `title` are drawn as given: a `$...$` pair in them is text, not matplotlib mathtext."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, np.float64), where=rows > 0)
    size = 1.2 + 0.6 * len(class_names)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    # names come from folders and files: parse_math=False draws a `$` as itself (mathtext garbled or refused them)
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", parse_math=False)
    axes.set_yticks(range(len(class_names)), class_names, parse_math=False)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title, parse_math=False)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                axes.text(j, i, str(matrix[i, j]), ha="center", va="center",
                          color="white" if normalised[i, j] > 0.5 else "black", fontsize=8)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    save_figure_atomic(figure, path, dpi=110)
