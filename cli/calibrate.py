"""`dnadet-tf calibrate`: fit (or refit) a run's temperature and open-set score."""
import argparse

from dnadet_tf.cli.common import HelpFormatter
from dnadet_tf.openset import DEFAULT_RADII, DEFAULT_SCORE, KNOWN_RATE, RADII, SCORES, parse_means


def register(subparsers):
    parser = subparsers.add_parser(
        "calibrate",
        help="fit a run's temperature and open-set score (fit does this at its end)",
        description=(
            "Fit temperature scaling (by validation NLL) and an open-set score on a run's best.keras, and store "
            "both in it: probabilities then mean what they say, and predict/evaluate/export answer 'unknown' for "
            "images unlike every known architecture. The class statistics come from the training images' pooled "
            "features, the temperature, each class's radius (--radii) and the threshold (--known-rate of the "
            "validation images kept as known) from the validation images; a validation image that is also a "
            "training image (--data LABELED --val LABELED, a few labeled images of a new content) is scored by the "
            "distance scores with the class statistics of the others, as images never seen would be "
            "(leave-one-out), and for a run of 'adapt --labeled' an image its head answers by gets, for the "
            "temperature, its probabilities under the head made of the others. Writes RUN/calibration.json."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("run", metavar="RUN", help="run dir written by 'dnadet-tf fit' (or by adapt or import-torch), "
                        "outside the folder trees of --data and --val (one inside is refused: it would be read as a "
                        "class)")
    parser.add_argument("--score", choices=SCORES, default=DEFAULT_SCORE, help="open-set score to store")
    parser.add_argument("--data", help="training images for the class statistics (default: the run's own; for a run "
                        "of 'adapt --labeled', the labeled images it was adapted to, each also a validation image "
                        "scored leave-one-out, as adapt calibrated it; a run adapted to unlabeled images "
                        "(--images, --photos) needs --data and --val, and any adapted run given --data needs --val)")
    parser.add_argument("--val", help="known validation images (default: the run's own, or the images 'fit --val-split' "
                        "held out of its training data, also with other --data; none for a run of 'adapt' given "
                        "--data: its own are the content before adaptation); images the run trained on (the same "
                        "bytes as an image of its own training data) are refused when they are all of --val, warned "
                        "of when some are")
    parser.add_argument("--known-rate", type=float, default=KNOWN_RATE, metavar="Q",
                        help="share of the validation images the open-set threshold keeps as known, above 0 and at "
                             "most 1; lower flags more unknown architectures and more known ones under a shift "
                             "(other seeds, losses, data)")
    parser.add_argument("--radii", choices=RADII, default=DEFAULT_RADII,
                        help="scale of the distance scores (mahalanobis, cosine): 'per-class' measures each class's "
                             "distance in units of its own radius, the distance that keeps --known-rate of that "
                             "class's validation images, so a class whose images spread far does not set the "
                             "threshold for all: it flags more new architectures, and more images of known ones whose "
                             "seed, loss or data changed (docs/results.md, 'One radius per class'); 'shared': one scale for "
                             "every class")
    parser.add_argument("--means", type=means_choice, default=None, metavar="{class,image,K}",
                        help="what the distance scores measure to: 'class' (the default, but for a run of 'adapt "
                             "--labeled': the points its head answers by, whatever --data), each class's mean of the "
                             "training images; 'image', the nearest training image of each class (every image its own mean, "
                             "as the head of 'adapt --labeled' answers; the run then stores every training image's "
                             "feature); a number K, the nearest of K k-means centres of each class's training "
                             "images, at most K points per class whatever the number of images (64 centres flagged "
                             "94.6 / 75.4 %% of unseen architectures where 'image' flagged 95.0 / 76.9 and 'class' "
                             "90.4 / 70.3, faces -> scenes / demo zoo, with a quarter of 'image''s points; 2-16 "
                             "flag as 'class' does: docs/results.md, 'Fewer points than images')")
    parser.add_argument("--batch-size", type=int, default=32, help="images per inference batch")
    parser.set_defaults(func=run)


def means_choice(text):
    """--means: "class", "image" or a positive number of k-means centres per class."""
    try:
        return parse_means(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run(args):
    from dnadet_tf.calibrate import calibrate_run

    calibrate_run(args.run, score=args.score, data=args.data, val=args.val, batch_size=args.batch_size,
                  known_rate=args.known_rate, radii=args.radii, means=args.means)
    return 0
