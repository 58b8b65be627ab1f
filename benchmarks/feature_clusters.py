"""Do a run's features keep the generators of another content apart, where its head names them wrongly?

For each run: the pooled encoder features of the second half of the zoo's cross-dataset split (positions 1, 3, ...;
generators retrained on the other content, and its real photos), L2-normalised, clustered by k-means into as many
clusters as the split has classes (10 starts, seed 0), as trained and after `adapt --images` on the first half
(stages 3-4, its default). Figures: the head's accuracy; the clusters' purity (the share of images in their
cluster's most common class) and normalised mutual information with the true classes; the same mutual information
of the head's answers; and the accuracy when each cluster takes the class its images' mean probability names
(`cluster_vote`) or a class of its own by the Hungarian assignment on those probabilities (`cluster_assigned`).
Pure clusters with a low `cluster_assigned`: the features tell the generators apart, the head does not know which
architecture each is (docs/results.md, "A few labeled images of the new content").

Usage: python benchmarks/feature_clusters.py --zoo ZOO --runs RUN [RUN ...] [--json FILE]
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from content_adaptation import halves, runs_parser, write_document  # noqa: E402

from dnadet_tf.ablation import mean_std_cell, mean_std_figures  # noqa: E402
from dnadet_tf.adaptation import adapt_model  # noqa: E402
from dnadet_tf.predictor import features_and_logits  # noqa: E402
from dnadet_tf.config import ADAPT_FIRST_STAGE  # noqa: E402
from dnadet_tf.data import benchmark_digest, benchmark_split, read_usable  # noqa: E402
from dnadet_tf.distribute import configure_runtime  # noqa: E402
from dnadet_tf.runs import RunDir  # noqa: E402

STATES = ("as_trained", "adapted_stage3")


def purity(truth, clusters):
    """Share of the items that belong to their cluster's most common true class."""
    return sum(np.bincount(truth[clusters == c]).max() for c in np.unique(clusters)) / len(truth)


def cluster_figures(features, logits, truth, classes, seed=0):
    """{accuracy, purity, nmi, nmi_of_answers, cluster_vote, cluster_assigned} of one set of features."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    clusters = KMeans(len(classes), n_init=10, random_state=seed).fit_predict(unit)
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    found = np.unique(clusters)
    mean_probabilities = np.stack([probabilities[clusters == c].mean(0) for c in found])
    vote = dict(zip(found, mean_probabilities.argmax(1)))
    rows, columns = linear_sum_assignment(-np.log(mean_probabilities[:, classes] + 1e-12))
    assigned = {found[r]: classes[c] for r, c in zip(rows, columns)}
    return {"accuracy": float(np.mean(logits.argmax(1) == truth)), "purity": float(purity(truth, clusters)),
            "nmi": float(normalized_mutual_info_score(truth, clusters)),
            "nmi_of_answers": float(normalized_mutual_info_score(truth, logits.argmax(1))),
            "cluster_vote": float(np.mean([vote[c] == t for c, t in zip(clusters, truth)])),
            "cluster_assigned": float(np.mean([assigned.get(c, -1) == t for c, t in zip(clusters, truth)]))}


def run_figures(zoo, run):
    """{"run", STATE: cluster_figures} of one run."""
    run_dir = RunDir(run)
    model = run_dir.load_model()
    preprocess = run_dir.config.preprocess
    cross = read_usable(benchmark_split(zoo, "cross_dataset"), "test", run_dir.class_names, preprocess)
    adapt_on, scored = halves(len(cross.paths))
    truth = cross.labels[scored]
    classes = sorted(set(truth.tolist()))
    figures = {"run": run}
    for state in STATES:
        if state == "adapted_stage3":
            adapt_model(model, [cross.paths[i] for i in adapt_on], 1.0, ADAPT_FIRST_STAGE, 16)
        features, logits = features_and_logits(model, [cross.paths[i] for i in scored])
        figures[state] = cluster_figures(features.astype(np.float64), logits.astype(np.float64), truth, classes)
    print(f"{run}: " + "; ".join(f"{state} " + ", ".join(f"{k} {v:.3f}" for k, v in figures[state].items())
                                  for state in STATES), flush=True)
    return figures


def document_of(zoo, digest, runs):
    keys = list(runs[0][STATES[0]]) if runs else []
    return {"zoo": os.path.abspath(zoo), "zoo_sha256": digest, "runs": runs,
            "summary": {f"{state}/{key}": mean_std_figures([run[state][key] for run in runs])
                        for state in STATES for key in keys}}


def format_table(document):
    """One Markdown row per figure, a column per state: %, mean ± std over the runs."""
    keys = list(dict.fromkeys(key.split("/", 1)[1] for key in document["summary"]))
    lines = [f"%, mean ± std over {len(document['runs'])} runs", "",
             "| figure | " + " | ".join(STATES) + " |", "|---|" + "---:|" * len(STATES)]
    lines += [f"| {key} | " + " | ".join(mean_std_cell(document["summary"][f"{state}/{key}"]) for state in STATES)
              + " |" for key in keys]
    return "\n".join(lines)


def main(argv=None):
    parser = runs_parser(__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    digest = benchmark_digest(args.zoo)
    configure_runtime()
    runs = [run_figures(args.zoo, run) for run in args.runs]
    document = document_of(args.zoo, digest, runs)
    if args.json:
        write_document(args.json, document)
    print(format_table(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
