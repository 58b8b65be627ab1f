"""Makes the photo folder of the faces -> scenes zoo: training content faces, cross-dataset content scenes.

    python benchmarks/faces_scenes_photos.py --out DIR [--shared ../shared/data] [--faces 60] [--scenes 40]
        [--finetune 30] [--other 0] [--seed 0] [--swap] [--cross-content scenes|lossless]
        [--training-content faces|scenes]
    dnadet-tf zoo build --photos DIR --out ZOO

Writes DIR/a (faces: the training domain A), DIR/b (scenes: the cross-dataset domain B) and DIR/c (other
faces: the fine-tuning domain C) as symbolic links to the shared photos, so that nothing is copied; `--other N`
adds DIR/other, the next N photos of the cross-dataset content (none of them in b/): real photos of the content
to attribute that the zoo never saw, for `fit --extra-real DIR/other`; `--swap`
makes the scenes -> faces zoo instead (scenes in a/ and c/, faces in b/; the counts keep their folders:
--faces photos in a/, --scenes in b/, --finetune in c/); `--cross-content lossless` takes the lossless
photos (CBSD68, CSet14, CUrban100: PNG, never JPEG-compressed) where scenes would be, for a third content pair;
`--training-content scenes` takes scenes where faces would be (with `--cross-content lossless`: scenes -> lossless
photos, and with `--swap` lossless photos -> scenes, two textured contents). Which
photos are taken is fixed: candidates are ordered by the SHA-256 of "<seed>:<file name>" and the first ones
are kept (faces for a, the next faces for c), so the same arguments always make the same folder and the zoo
built from it the same fingerprint. The shared photos are for local benchmarks only; the folder must never be
committed or shipped (see ../shared/data/README.md).
"""
import argparse
import hashlib
import json
import os
import sys


def ranked(folder, seed):
    """The photos under `folder` (its subfolders too) as (name, path) pairs, ordered by SHA-256 of
    '<seed>:<name>'; a photo in a subfolder is named '<subfolder>_<file name>'."""
    photos = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        prefix = os.path.relpath(root, folder).replace(os.sep, "_")
        for n in files:
            if not n.startswith("."):
                photos.append((n if prefix == "." else f"{prefix}_{n}", os.path.join(root, n)))
    return sorted(photos, key=lambda photo: hashlib.sha256(f"{seed}:{photo[0]}".encode()).hexdigest())


def link_all(photos, target):
    os.makedirs(target)
    for name, path in photos:
        os.symlink(os.path.abspath(path), os.path.join(target, name))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to create (must not exist)")
    parser.add_argument("--shared", default=os.path.join("..", "shared", "data"), help="the shared data folder")
    parser.add_argument("--faces", type=int, default=60, help="face photos in a/ (training domain)")
    parser.add_argument("--scenes", type=int, default=40, help="scene photos in b/ (cross-dataset domain)")
    parser.add_argument("--finetune", type=int, default=30, help="other face photos in c/ (fine-tuning domain)")
    parser.add_argument("--other", type=int, default=0,
                        help="photos of the cross-dataset content after those of b/ in other/ (default 0: no folder)")
    parser.add_argument("--seed", type=int, default=0, help="selection seed")
    parser.add_argument("--swap", action="store_true",
                        help="scenes -> faces: scenes in a/ and c/, faces in b/ (counts keep their folders)")
    parser.add_argument("--cross-content", choices=("scenes", "lossless"), default="scenes",
                        help="the shared photo folder in place of scenes: 'lossless' is 168 PNG photos (city, "
                             "nature, objects; never JPEG-compressed, where faces and scenes are JPEG)")
    parser.add_argument("--training-content", choices=("faces", "scenes"), default="faces",
                        help="the shared photo folder of a/ and c/ (b/ and other/ with --swap); 'scenes' needs "
                             "--cross-content lossless")
    args = parser.parse_args(argv)
    if args.training_content == args.cross_content:
        parser.error(f"--training-content {args.training_content}: expected a content other than --cross-content "
                     f"{args.cross_content}, received the same")
    if os.path.exists(args.out):
        parser.error(f"--out {args.out} exists; choose a new folder")
    training_dir = os.path.join(args.shared, "photos", args.training_content)
    cross_dir = os.path.join(args.shared, "photos", args.cross_content)
    for folder in (training_dir, cross_dir):
        if not os.path.isdir(folder):
            parser.error(f"--shared {args.shared}: expected a folder {folder}, which does not exist")
    if args.swap:
        training_dir, cross_dir = cross_dir, training_dir
    training = ranked(training_dir, args.seed)  # a/ and c/: the training and fine-tuning content
    cross = ranked(cross_dir, args.seed)  # b/ and other/: the cross-dataset content
    if args.faces + args.finetune > len(training) or args.scenes + args.other > len(cross):
        parser.error(f"asked for {args.faces}+{args.finetune} photos of {training_dir} and {args.scenes}+{args.other} "
                     f"of {cross_dir}; they have {len(training)} and {len(cross)}")
    link_all(training[: args.faces], os.path.join(args.out, "a"))
    link_all(cross[: args.scenes], os.path.join(args.out, "b"))
    link_all(training[args.faces : args.faces + args.finetune], os.path.join(args.out, "c"))
    if args.other:
        link_all(cross[args.scenes : args.scenes + args.other], os.path.join(args.out, "other"))
    json.dump({"a": args.faces, "b": args.scenes, "c": args.finetune, "other": args.other, "seed": args.seed,
               "swap": args.swap, "cross_content": args.cross_content, "training_content": args.training_content},
              sys.stdout)
    print()


if __name__ == "__main__":
    main()
