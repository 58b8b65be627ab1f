"""`dnadet-tf fit`: train an attributor (DNA-Det from a step 1, Base+PCL from scratch, or the paper's Base) on
labelled images."""
import argparse
import os

from dnadet_tf.cli.common import AUGMENT_NAMES_HELP, HelpFormatter, add_training_runtime_flags, augment_from
from dnadet_tf.config import CE_INPUTS, METRICS, PRESETS, LoopConfig, OptimizerConfig
from dnadet_tf.openset import DEFAULT_SCORE, SCORES
from dnadet_tf.selection import SELECTION_RULES


def register(subparsers):
    parser = subparsers.add_parser(
        "fit",
        help="train an attributor (no arguments: build the demo zoo, train, evaluate)",
        description=(
            "Train an attributor: an 8-layer CNN on 64 px patches with cross-entropy plus a patch-wise "
            "supervised contrastive loss, weighted by learned loss weights. The cpu preset starts from the step 1 "
            "shipped with the package (--init packaged), so it trains the full method, DNA-Det (the paper's "
            "Base+PT+PCL); --init none trains from random initialisation, the paper's Base+PCL (the paper and tiny "
            "presets' default); --init PRETRAIN_RUN starts from your own step 1 ('dnadet-tf pretrain'). --base "
            "trains the paper's Base (Base+PT from a step 1). With no --data, builds "
            "(or reuses) the demo generator zoo, trains the cpu preset on it and evaluates every split."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--data", help="training data: a folder tree ROOT/<class>/..., an annotation list "
                        "(path<TAB>label lines with classes.txt beside it), or a benchmark folder (its train.txt). "
                        "Omitted: the demo zoo.")
    parser.add_argument("--val", help="validation data in the same forms, other images than --data's (--data "
                        "itself, a copy of it or a list of its files is refused: use --val-split; some of its images "
                        "among them: a warning line); default: a benchmark's val.txt")
    parser.add_argument("--val-split", type=float, metavar="F",
                        help="hold out this share of each class of --data (0 to below 1, e.g. 0.1) as the validation "
                        "images, in place of --val: for a folder tree without validation data, so that best.keras "
                        "is validated and the temperature and open-set threshold are fitted; the same images for "
                        "the same files (chosen by a hash of their paths), again on --resume and by 'dnadet-tf "
                        "calibrate RUN'; images so like the training ones set a tight open-set threshold (11-21 %% of "
                        "known test images flagged on the zoos, README), so calibrate on other images when you have "
                        "them")
    parser.add_argument("--out", help="run dir to write (default with no --data: runs/demo, or runs/demo-1, ... "
                        "when that exists; with --resume or --overwrite, the newest of them)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="hyper-parameters: paper (the paper's; README, \"Method and presets\"), cpu (narrow, laptop "
                        "minutes), tiny (tests); default cpu")
    parser.add_argument("--steps", type=int, help="train until this step (total, also when resuming)")
    parser.add_argument("--init", help="start from the weights of a run dir (e.g. a 'dnadet-tf pretrain' run), "
                        "'packaged' (the step 1 shipped with the package for the preset) or 'none' (random "
                        "initialisation); weights whose shapes differ (the head) are re-initialised, a head of the same classes in "
                        "another order is put in this run's order, one of other classes re-initialised (default: the "
                        "preset's: cpu packaged, paper and tiny none)")
    parser.add_argument("--init-partial", action="store_true",
                        help="with --init, load only the encoder weights that match instead of stopping when "
                        "the encoders differ (e.g. another --width)")
    parser.add_argument("--base", action="store_true",
                        help="train the paper's Base: whole images, cross-entropy only, no patches, no contrastive loss; "
                        "Base+PT when it starts from a step 1 (--init, and the cpu preset's default --init packaged)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint, with its own settings (config.json): "
                        "only --steps, --val-every, --strategy and --jit may change; another --preset, --data, --val "
                        "(omitted: the run's own) or any other changed flag is refused")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run dir")
    add_training_runtime_flags(parser)
    parser.add_argument("--augment", help=f"robustness augmentation before the resize chain: {AUGMENT_NAMES_HELP}")
    parser.add_argument("--lr", type=float, help="learning rate (overrides the preset)")
    parser.add_argument("--images-per-class", type=int, help="K images of every class per step (preset: cpu 8, tiny 4; paper 0, the "
                        "paper's rule: 32 per class for up to 5 classes, 16 for more)")
    parser.add_argument("--val-every", type=int, help="validate on whole images every N steps")
    parser.add_argument("--metric", choices=METRICS,
                        help=f"validation metric that picks best.keras (default: {LoopConfig.metric})")
    parser.add_argument("--select", choices=SELECTION_RULES,
                        help="rule that picks best.keras among validated models: first = first step reaching the "
                        "best metric; last = the release's (ties go to the later step); nll = best metric, ties "
                        "broken by lower validation cross-entropy; final = the last validated model; average = the "
                        "mean of the weights of the last --average-last validated models (without validation data, "
                        "of the models of the steps a validation would have come at; the other rules then keep the "
                        f"last step's model) (default: the preset's; cpu: average, and nll for Base+PCL, --init none without --base; "
                        f"paper and tiny: {LoopConfig.select})")
    parser.add_argument("--average-last", type=int,
                        help=f"how many of the last validated models --select average averages "
                        f"(default: {LoopConfig.average_last})")
    parser.add_argument("--keep-validated", action="store_true", default=None,
                        help="also keep every validated model in RUN/validated/ (to compare selection rules)")
    parser.add_argument("--ce-input", choices=CE_INPUTS,
                        help="what the cross-entropy reads: logits (the method), or softmax probabilities as the "
                        f"authors' release does (bounded loss, the contrastive loss dominates) (default: {OptimizerConfig.ce_input})")
    parser.add_argument("--frozen-stages", type=int,
                        help="with --init: keep the first N of the encoder's 4 stages as the init run left them "
                             "(not trained; their BatchNorm keeps its statistics) (default: 0, train every layer)")
    parser.add_argument("--lr-decay-every", type=int,
                        help="multiply the learning rate by --lr-decay every N steps (overrides the preset)")
    parser.add_argument("--lr-decay", type=float, help="learning-rate decay factor (default 0.9)")
    parser.add_argument("--width", type=float, help="width multiplier of the encoder (overrides the preset)")
    parser.add_argument("--zero-mean-stem", action=argparse.BooleanOptionalAction, default=None,
                        help="train the encoder's first convolution as high-pass filters (every kernel kept at zero "
                        "spatial mean; docs/results.md, \"A high-pass first layer\") (default: off)")
    parser.add_argument("--statistics-shift", type=float, metavar="S",
                        help="in half of the training steps, move the BatchNorm outputs of encoder stages 3-4 by a "
                        "random per-channel scale exp(a) and offset b, a, b ~ N(0, S^2), one draw per batch: the "
                        "mismatch running statistics cause on another content, so that the later layers learn to "
                        "answer through it; over 6 seeds on each of four content shifts 0.15 gained 0.7-7 points on the "
                        "mean, 19 of 24 seeds up (docs/results.md, \"Shifting the BatchNorm statistics in training\") "
                        "(preset: cpu 0.15 for DNA-Det, 0 for Base, Base+PT and Base+PCL, as each was measured; "
                        "paper and tiny 0)")
    parser.add_argument("--crop-size", type=int,
                        help="a non-square image (with --crop-square also a larger square one) is first "
                        "center-cropped to this many native pixels (preset: 128; tiny 32)")
    parser.add_argument("--crop-square", action=argparse.BooleanOptionalAction, default=None,
                        help="center-crop a square image larger than --crop-size to it in native pixels instead of "
                        "squashing it to --resize1 (preset: cpu on; paper, as the release, and tiny off)")
    parser.add_argument("--resize1", type=int, help="first bicubic resize, in px (preset: 128; tiny 32)")
    parser.add_argument("--resize2", type=int, help="second bicubic resize, the network's input size in px, a "
                        "multiple of 16 (preset: 512; tiny 64)")
    parser.add_argument("--patch-size", type=int,
                        help="side of the training patches in px of the network's input, a multiple of 16 up to "
                        "--resize2 (preset: 64, the paper's; tiny 32), and the smallest side of a square image "
                        "accepted; evaluation always sees whole images; Base trains whole images")
    parser.add_argument("--patches-per-image", type=int,
                        help="training patches per image and step (preset: cpu 8, paper 16, tiny 4); 32 px x 32 and "
                        "128 px x 2 hold about the pixels of 64 px x 8; measured against it: docs/results.md, "
                        "\"The patches of step 2\"")
    parser.add_argument("--crop-grid", type=int, metavar="N",
                        help="put the training patches' corners on multiples of N px of the network's input "
                        "(default 1: anywhere; at most --resize2 minus --patch-size; pretrain --crop-grid does the same in step 1)")
    parser.add_argument("--extra-real", metavar="auto|packaged|none|DIR",
                        help="add to the real class (named real, else the one class with 'real' or 'reals' as a word of "
                        "its name, such as Real or 0_real) as many 128 px crops of other photos as it has training "
                        "images: 'packaged' (the 60 photos shipped with the package), a folder of photos, 'auto' "
                        "(packaged when there is a real class, else nothing) or 'none' (preset: cpu auto, paper and "
                        "tiny none; docs/results.md, \"Real photos of other content in the real class\")")
    parser.add_argument("--extra-real-process", metavar="jpeg:Q|upsample:S|auto|none",
                        help="give the --extra-real crops the processing of your real photos: a JPEG round trip at "
                        "quality Q, or bicubic through S x S px and back (the crops are 128 px); 'auto': jpeg:Q when "
                        "every real training image is a JPEG file (Q estimated from their quantization tables), else "
                        "none (lossless reals enlarged by 1x to 2x are reported with the upsample:S that matches, "
                        "not applied); plain crops next to processed real photos teach 'real' as the processing "
                        "(preset: cpu auto, paper and tiny none; docs/results.md, \"Crops processed like the training reals\")")
    parser.add_argument("--transplant", type=float, metavar="P",
                        help="with probability P, train a fake image as its high-frequency residual laid over one of the "
                        "--extra-real photos, label kept: fakes of the photos' content; it helped where the photos "
                        "resembled the content to attribute and cost elsewhere (docs/results.md, \"Fakes of other content\") "
                        "(default: 0, off)")
    parser.add_argument("--content-align", type=float, metavar="W",
                        help="weight W of the content-alignment loss: in encoder stages 3-4, the statistics of each "
                        "channel over the real training images are drawn to those over the --extra-real crops "
                        "(photos of other content), so that the traces are read the same way whatever the content; "
                        "10 gained 11 and 17 points on other content when trained on faces, and lost 8 or stayed level "
                        "when trained on scenes or lossless photos (docs/results.md, \"Aligning the real class across "
                        "content\", \"A third content pair\") (preset: 0, off)")
    parser.add_argument("--patience", type=int,
                        help="stop early after this many validations without improvement (overrides the preset)")
    parser.add_argument("--seed", type=int, help="seed of data order, crops and initialisation (default: 0)")
    parser.add_argument("--zoo", help="with no --data: the zoo folder to build or reuse (default: the cache)")
    parser.add_argument("--ood-score", choices=SCORES,
                        help=f"open-set score fitted at the end with the temperature, on the validation images "
                             f"(default {DEFAULT_SCORE}; see 'dnadet-tf calibrate --help')")
    parser.set_defaults(func=run)


def overrides_from(args):
    return dict(
        steps=args.steps, init=args.init, mode="base" if args.base else None, strategy=args.strategy,
        precision=args.precision, jit=args.jit, input_niceness=args.input_niceness, augment=augment_from(args),
        learning_rate=args.lr,
        images_per_class=args.images_per_class, val_every=args.val_every, metric=args.metric, seed=args.seed,
        patience=args.patience, select=args.select, average_last=args.average_last,
        keep_validated=args.keep_validated,
        ce_input=args.ce_input, frozen_stages=args.frozen_stages, lr_decay_every=args.lr_decay_every,
        lr_decay=args.lr_decay, width=args.width, zero_mean_stem=args.zero_mean_stem,
        statistics_shift=args.statistics_shift,
        crop_size=args.crop_size, crop_square=args.crop_square, resize1=args.resize1, resize2=args.resize2,
        crop_grid=args.crop_grid, patch_size=args.patch_size, patches_per_image=args.patches_per_image,
        extra_real=args.extra_real, extra_real_process=args.extra_real_process,
        transplant=args.transplant, content_align=args.content_align, val_split=args.val_split,
        init_partial=args.init_partial,
        ood_score=args.ood_score,
    )


def run(args):
    from dnadet_tf.training import fit

    overrides = overrides_from(args)
    if args.data is None and args.resume and args.out:
        args.data = _resumed_data(args.out, args.zoo)
    if args.data is None:
        return run_demo(args, overrides)
    if not args.out:
        from dnadet_tf.cli.common import UsageError

        raise UsageError("--out: expected a run dir to write, received nothing (it is required with --data).")
    if args.val_split and args.val:
        from dnadet_tf.cli.common import UsageError

        raise UsageError(f"--val-split: expected no --val beside it (the share is held out of --data), received "
                         f"--val-split {args.val_split} and --val {args.val}.")
    fit(args.data, args.out, val=args.val, preset=args.preset, resume=args.resume,
        overwrite=args.overwrite, **overrides)
    return 0


def _resumed_data(run_dir, zoo=None):
    """The data `fit --resume --out RUN` with no --data continues on: the run's own (its config.json's), or None for
    a run trained on the demo zoo (`zoo`, else the cached one), which `run_demo` resumes and evaluates. Raises
    RunDirError, before any zoo is built, when RUN holds no run to resume."""
    from dnadet_tf.runs import RunDir
    from dnadet_tf.training import same_path
    from dnadet_tf.zoo import default_zoo_dir

    run = RunDir(run_dir).check(resume=True)
    recorded = run.config.data
    if not recorded or same_path(recorded, zoo or default_zoo_dir("demo")):
        return None
    return recorded


def run_demo(args, overrides):
    """`dnadet-tf fit` with no --data: the demo zoo, the cpu preset, every split evaluated."""
    import time

    from dnadet_tf.evaluation import evaluate, format_table
    from dnadet_tf.predictor import KerasPredictor
    from dnadet_tf.runs import write_json_atomic
    from dnadet_tf.training import fit
    from dnadet_tf.zoo import ensure_zoo

    began = time.time()
    out = args.out or _demo_run_dir(os.path.join("runs", "demo"), args)
    print(f"dnadet-tf fit with no --data: building or reusing the demo generator zoo, then training the "
          f"{args.preset or 'cpu'} preset on it and evaluating every split.", flush=True)
    zoo = ensure_zoo("demo", zoo_dir=args.zoo)
    print(f"zoo ready at {zoo} ({time.time() - began:.0f} s)", flush=True)
    resume = args.resume
    fit(zoo, out, preset=args.preset, resume=resume, overwrite=args.overwrite, **overrides)
    predictor = KerasPredictor(out)
    rows = evaluate(predictor, [zoo], out_dir=os.path.join(out, "evaluation"))
    write_json_atomic(os.path.join(out, "evaluation", "evaluation.json"), rows)
    print(format_table(rows, predictor.class_names))
    print(f"run dir: {os.path.abspath(out)} (best.keras, metrics.jsonl, evaluation/*.png); "
          f"total {time.time() - began:.0f} s", flush=True)
    return 0


def _demo_run_dir(base, args):
    """Where `fit` with no --data and no --out writes: a new folder (`_fresh_dir`), or with --resume or
    --overwrite the newest that exists, the one the last such `fit` wrote (refused before the zoo is built when
    there is none)."""
    if not (args.resume or args.overwrite):
        return _fresh_dir(base)
    existing = _fresh_dir(base)
    if existing == base:
        from dnadet_tf.cli.common import UsageError

        flag = "--resume" if args.resume else "--overwrite"
        raise UsageError(f"{flag}: expected a run of fit with no --data in {base} (or {base}-1, ...), found none; "
                         f"name the run with --out.")
    number = int(existing.rsplit("-", 1)[1]) - 1
    return base if number == 0 else f"{base}-{number}"


def _fresh_dir(base):
    """`base`, or `base-1`, `base-2`, ... : the first that does not exist yet."""
    path, number = base, 0
    while os.path.exists(path):
        number += 1
        path = f"{base}-{number}"
    return path
