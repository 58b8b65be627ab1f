"""`dnadet-tf robustness`: accuracy under each test-time attack (the paper's Table 5)."""
import os

from dnadet_tf.cli.common import AUGMENT_NAMES_HELP, HelpFormatter


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
                        help="write the rows here (a Markdown table beside it, .md; missing folders are "
                             "created); default: robustness.json in RUN/robustness/<DATA names>/ (a run dir; "
                             "MODEL-robustness/... beside an export: a SavedModel version folder or a .tflite "
                             "file). Its \"data\", \"attacks\" and \"seed\" record what it measured (DATA as absolute "
                             "paths): the same measurement again replaces that folder, other data whose names are "
                             "the same, other attacks or another seed go to <DATA names>-2, -3, ...")
    parser.add_argument("--attacks", default="crop,blur,jpeg,noise,relight,combo",
                        help=f"attack columns (no attack is always measured): {AUGMENT_NAMES_HELP}")
    parser.add_argument("--batch-size", type=int, default=16, help="images per inference batch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbations")
    parser.set_defaults(func=run)


ROBUSTNESS_FILE = "robustness.json"


def markdown_path(json_path):
    """The Markdown table's path beside the JSON file `json_path`: its extension replaced by .md."""
    path = os.path.splitext(json_path)[0] + ".md"
    return json_path + ".md" if os.path.abspath(path) == os.path.abspath(json_path) else path


def run(args):
    from dnadet_tf.cli.output_paths import (check_output_file, data_record, default_output_dir, is_markdown_table,
                                            is_robustness_json, output_folder)
    from dnadet_tf.cli.common import UsageError, parse_attack_flag
    from dnadet_tf.api import load as load_predictor
    from dnadet_tf.robustness import format_robustness_table, robustness, robustness_markdown
    from dnadet_tf.runs import write_json_atomic, write_text_atomic

    attacks = parse_attack_flag("--attacks", args.attacks)
    if not attacks:
        raise UsageError(f"--attacks: expected one or more attack names, received {args.attacks!r}.")
    if args.json:
        check_output_file("--json", args.json, is_robustness_json, "an earlier robustness JSON")
        # the table beside an earlier robustness JSON is that measurement's own
        table_is_earlier = lambda path: is_robustness_json(args.json) and is_markdown_table(path)  # noqa: E731
        check_output_file("--json (its Markdown table)", markdown_path(args.json), table_is_earlier,
                          "the table of an earlier robustness JSON")
    predictor = load_predictor(args.model)
    rows = robustness(predictor, args.data, attacks=attacks, batch_size=args.batch_size, seed=args.seed)
    print(format_robustness_table(rows))
    # what tells one measurement from another in an output folder: the same again replaces its own folder
    record = {"data": data_record(args.data)["data"], "attacks": list(attacks), "seed": args.seed}
    if args.json:
        json_path = args.json
    else:
        preferred = default_output_dir(args.model, args.data, folder="robustness")
        folder = output_folder(preferred, ROBUSTNESS_FILE, record)
        if folder != preferred:
            print(f"{preferred} holds the robustness of other data, attacks or seed (see its {ROBUSTNESS_FILE}); "
                  f"writing to {folder}")
        json_path = os.path.join(folder, ROBUSTNESS_FILE)
    table_path = markdown_path(json_path)
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    write_json_atomic(json_path, {"model": args.model, **record, "rows": rows})
    write_text_atomic(table_path, robustness_markdown(rows))
    print(f"wrote {json_path} and {table_path}")
    return 0
