"""`dnadet-tf adapt`: a run adapted to another kind of content (BatchNorm statistics of unlabeled images)."""
import argparse
import os

from dnadet_tf.config import ADAPT_FIRST_STAGE, LABELED_FIRST_STAGE, PHOTO_FIRST_STAGE
from dnadet_tf.cli.common import HelpFormatter, UsageError


def register(subparsers):
    parser = subparsers.add_parser(
        "adapt",
        # RUN first and required, as the command needs it (argparse takes it as optional: see the argument)
        usage=("dnadet-tf adapt [-h] RUN (--images PATH [PATH ...] | --photos DIR | --labeled DATA [DATA ...])\n"
               + " " * 23 + "--out OUT [--means-per-class G] [--fakes DATA] [--blend BLEND] [--first-stage S]\n"
               + " " * 23 + "[--batch-size BATCH_SIZE] [--overwrite] [--verbose]"),
        help="adapt a run to another kind of content from unlabeled images of it, or a few labeled ones (writes a new run dir)",
        description=(
            "Re-estimate the BatchNorm statistics of a run's best.keras on unlabeled images of the content to "
            "attribute (AdaBN: every weight kept; by default those of encoder stages 3-4, where the content shift "
            "sits, and of every stage with --photos and --labeled) and write a new run dir that predict, evaluate, explain and "
            "export take like any other. Give a mix of what is to be attributed, fakes and real photos alike, "
            "20 images or more, and as many as there are (a warning says when there are fewer, or when the run "
            "attributes most of them to one class; over five draws on each of five zoos, 20 came within 2 points of "
            "200 on the mean, 5 fell up to 35 points short in single draws, and 1 or 2 left runs that were right "
            "as trained 24-39 points lower: docs/results.md, 'How many images adapt needs'): statistics of real "
            "photos alone or of one generator are another mix's. The adapted "
            "model is for that content (across a content shift it is worse on the training content: docs/results.md, "
            "'Adapting to other content'); --blend keeps part of the run's own statistics. With real photos of "
            "the new content and no fakes of it, --photos DIR makes the mix: 40 crops of the photos as the real "
            "images and 40 fakes per fake class, each a training fake's fine residual laid over another crop "
            "(scaled down when the photos have less fine texture than the training reals; the mix is drawn in "
            "OUT/adaptation_images.png), re-estimates every stage and keeps three quarters of the run's statistics "
            "(--first-stage 1 and --blend 0.25 by default with --photos). Over six seeds on six content shifts it "
            "gained 32.4 points from faces to scenes, 47.1 to lossless photos, 13.6 and 6.1 from scenes and lossless "
            "photos to faces, and stayed level between scenes and lossless photos (both ways): 91.7 on the mean "
            "against 75.4 as trained, 87.6 from stage 3 and 93.8 adapting to the images themselves; with photos of "
            "the training content it cost at most 1.8 points: docs/results.md, 'Adapting from "
            "real photos alone'. With a few labeled images of the new content, one or more of every class of the "
            "run (--labeled DATA: a folder per class or an annotation list), the statistics are re-estimated on "
            "them in every stage and the head answers the class of the nearest labeled image (each image its own "
            "mean: --means-per-class all, the default); a class the run does not have is added (a generator named "
            "from a few images, no training): docs/results.md, 'A few labeled images of the new content'. The run "
            "adapted so is for the contents of its labeled images: for a stream of several, give labeled images of "
            "each, in one DATA or one DATA per content (5 images per class and content, faces -> scenes with seven "
            "families: 96.0 % on scenes and 99.9 on faces, where one mean per class over both named 45.3 % of the "
            "scenes: docs/results.md, 'Every labeled image its own mean'). The open-set calibration described the "
            "training content: with --labeled, 2 or more images of every class, it is refitted on them, each scored "
            "by its distance to the nearest of the others of each class (the points the head answers by; with "
            "--means-per-class G, to the nearest of G k-means centres of the others; with --means-per-class 1, by "
            "the class statistics of the others): docs/results.md, 'The open set after "
            "adapt --labeled'; with --images it is refitted on those images, each labeled by the adapted run's "
            "answer (2 or more answers of every class; the run's known rate, radii and means kept): from faces to "
            "scenes 2.7 % of the new content's known images and 99.9 % of its unseen architectures flagged, where "
            "the run's own flagged every image; images "
            "of unseen architectures among those adapted to count as known (a tenth of them: 26.4 % of those "
            "architectures flagged): docs/results.md, 'The open set after adapt --images'; "
            "with --photos it is dropped (one fitted on the made mix flagged 81.5-82 % of the new content's known "
            "images: docs/results.md, 'The open set after adapt --photos'), and 'dnadet-tf calibrate OUT --data "
            "LABELED --val LABELED' refits it; with --images or --photos and --blend 0, which leaves the run's "
            "model as it was, it is kept as it was (calibration.json copied). A file given more than once (the "
            "same file, by its real path or a hard link, or a copy: the same bytes) counts once, with a warning; "
            "with --labeled, one file (or copy) in two classes is refused."
        ),
        formatter_class=HelpFormatter,
    )
    # RUN is optional to argparse only, so that a RUN given after --images or --labeled's paths (which take every
    # path that follows) is answered by a line naming it rather than by argparse's bare "RUN is required".
    parser.add_argument("run", metavar="RUN", nargs="?", help="run dir written by 'dnadet-tf fit' (or by adapt or "
                        "import-torch)")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--images", nargs="+", metavar="PATH",
                       help="unlabeled images of the new content: files or folders (read recursively; a file "
                            "given more than once, or copied, counts once)")
    given.add_argument("--photos", metavar="DIR",
                       help="real photos of the new content, no fakes (read recursively; 128 px or more on the "
                            "shorter side): the mix is made of them and the run's training fakes")
    given.add_argument("--labeled", nargs="+", metavar="DATA",
                       help="a few labeled images of the new content (a folder per class, or an annotation list), at "
                            "least one of every class of RUN; classes RUN does not have are added: the head answers "
                            "the class of the nearest labeled image (--means-per-class). Several DATA (say one per "
                            "content): their images together, and with --means-per-class 1 a mean per class in each, "
                            "a class answered by the nearest of its means")
    parser.add_argument("--means-per-class", type=means_count, default=None, metavar="G",
                        help="with --labeled: the means a class gets of its labeled images. all: every image its own, "
                             "the nearest labeled image answers (the default; with 5 images per class of one content "
                             "ahead of the class means, by 2.3 points from faces to scenes with seven families, and "
                             "with two contents in one set ahead of a mean per content: docs/results.md 'Every labeled "
                             "image its own mean'); 1: the class means (one per class and DATA; before 'all' the "
                             "default); G > 1, one DATA: G means per class, of the clusters k-means finds in each "
                             "class's features (default: all)")
    parser.add_argument("--fakes", metavar="DATA",
                        help="with --photos: the training data whose fakes are laid over the photos (default: the "
                             "run's, as its config.json names it)")
    parser.add_argument("--out", required=True, help="the adapted run dir to write (RUN itself is kept: RUN, a "
                        "symbolic link to it or a folder holding it is refused; with --overwrite, so is a symbolic "
                        "link to a folder of files)")
    parser.add_argument("--blend", type=float, default=None,
                        help="share of the new images in the statistics, 0 to 1 (1: theirs alone; 0.5: half the "
                             "run's own, for a mix of both contents; 0.25 with --photos keeps the training content) "
                             "(default: 1 with --images and --labeled, 0.25 with --photos)")
    parser.add_argument("--first-stage", type=int, default=None, metavar="S",
                        help="re-estimate the BatchNorms of this encoder stage and the later ones, keep the "
                             "earlier ones (3: stages 3-4, where the content shift sits, docs/results.md 'Adapting to "
                             "other content'; 1: every stage, which the made mix of --photos needs) (default: "
                             f"{ADAPT_FIRST_STAGE} with --images, {PHOTO_FIRST_STAGE} with --photos, "
                             f"{LABELED_FIRST_STAGE} with --labeled)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an existing --out")
    parser.set_defaults(func=run)


def means_count(text):
    """--means-per-class: a positive int, or ALL_IMAGES ("all": every labeled image its own mean)."""
    from dnadet_tf.labeled_head import ALL_IMAGES

    if text == ALL_IMAGES:
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number or {ALL_IMAGES!r}, received {text!r}")
    return value


def run(args):
    from dnadet_tf.adaptation import adapt_run
    from dnadet_tf.runs import RunDir

    if args.run is None:
        given = args.labeled or args.images or []
        last = given[-1] if given else None
        hint = ""
        if last and os.path.isfile(RunDir(last).best_model_path):
            flag = "--labeled" if args.labeled else "--images"
            hint = (f"; {last!r}, the last path of {flag}, is a run dir: give RUN before {flag}, whose paths take "
                    f"every path after it (dnadet-tf adapt {last} {flag} {' '.join(given[:-1])} --out ...)")
        raise UsageError("RUN: expected the run dir to adapt (written by 'dnadet-tf fit'), received none" + hint + ".")
    # --blend, --first-stage, --means-per-class and --fakes are checked by adapt_run before any work
    adapt_run(args.run, args.images, args.out, blend=args.blend, batch_size=args.batch_size,
              overwrite=args.overwrite, first_stage=args.first_stage, photos=args.photos, fakes=args.fakes,
              labeled=args.labeled, means_per_class=args.means_per_class)
    return 0
