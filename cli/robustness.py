"""`dnadet-tf robustness`: accuracy under each test-time attack (the paper's Table 5)."""
import os

from dnadet_tf.cli.main import HelpFormatter


def register(subparsers):
    parser = subparsers.add_parser(
        "robustness",
        help="accuracy under crop, blur, JPEG, noise, relighting and their combination",
        description=(
            "Whole-image accuracy of one model with no attack, each attack alone and the combination "
            "(each attack with probability 0.5), one row per DATA (a benchmark folder expands to its "
            "closed-set and cross-test lists). Image i is attacked with seed (--seed, i): deterministic. "
            "Prints a table and writes JSON and Markdown."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", required=True,
                        help="a run dir, an exported SavedModel version folder, or a .tflite file")
    parser.add_argument("--data", required=True, nargs="+", metavar="DATA",
                        help="folder trees, annotation lists or benchmark folders")
    parser.add_argument("--json", metavar="FILE",
                        help="write the rows here (a Markdown table beside it, .md); default: "
                             "robustness.json in the run dir, or beside a model file")
    parser.add_argument("--attacks", default="crop,blur,jpeg,noise,relight,combo",
                        help="comma list of attack columns (no attack is always measured)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per inference batch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbations")
    parser.set_defaults(func=run)


def default_json_path(model):
    if os.path.isdir(model):
        return os.path.join(model, "robustness.json")
    return os.path.splitext(os.path.abspath(model))[0] + ".robustness.json"


def run(args):
    from dnadet_tf.cli.main import UsageError, parse_attack_flag
    from dnadet_tf.api import load as load_predictor
    from dnadet_tf.robustness import format_robustness_table, robustness, robustness_markdown
    from dnadet_tf.runs import write_json_atomic, write_text_atomic

    if args.batch_size < 1:
        raise UsageError(f"--batch-size: expected a positive integer, received {args.batch_size}.")
    attacks = parse_attack_flag("--attacks", args.attacks)
    predictor = load_predictor(args.model)
    rows = robustness(predictor, args.data, attacks=attacks, batch_size=args.batch_size, seed=args.seed)
    print(format_robustness_table(rows))
    json_path = args.json or default_json_path(args.model)
    folder = os.path.dirname(os.path.abspath(json_path))
    os.makedirs(folder, exist_ok=True)
    write_json_atomic(json_path, {"model": args.model, "seed": args.seed, "attacks": list(attacks),
                                  "rows": rows})
    markdown_path = os.path.splitext(json_path)[0] + ".md"
    if os.path.abspath(markdown_path) == os.path.abspath(json_path):
        markdown_path = json_path + ".md"
    write_text_atomic(markdown_path, robustness_markdown(rows))
    print(f"wrote {json_path} and {markdown_path}")
    return 0
