"""Building the zoo benchmark folder: plan the models, train them, write images and lists.

Layout of a zoo folder:

    classes.txt                real, progan, mmdgan, sngan, infomaxgan (+ dcgan, stylegan, cyclegan with wild)
    train.txt val.txt test.txt cross_seed.txt cross_loss.txt cross_finetune.txt cross_dataset.txt
                               `relative/path<TAB>label` per line
    open_set.txt               `relative/path<TAB>family` per line: images of architectures that are
                               not classes (dcgan, stylegan, cyclegan; without wild only), for
                               open-set evaluation
    images/<split>/<class>/<model or real group>_<index>.png       128x128 RGB
    models/<model>.weights.h5  generator weights; models/<model>.json its record
    contact_<split>.png        one row per class of the split, a few samples each
    build.json                 what the folder is being built with (checked when resuming)
    zoo.json                   every model's record, the build's size, seed and photos; written last

Splits (the paper's Table 1), content groups from `dnadet_tf.zoo.photos.content_groups`:

- train / val / test: real crops of A-train / A-val / A-test, and each family's base
  model (seed 0, its default loss, trained on A-train) generating from the same groups;
- cross_seed: progan retrained on A-train with seeds 1..k, generating from A-test;
- cross_loss: mmdgan and infomaxgan retrained with another adversarial and/or
  reconstruction loss, generating from A-test;
- cross_finetune: base models fine-tuned on C-train, generating from C-test;
- cross_dataset: real crops of B-test, and the families trained from scratch on
  B-train generating from B-test.
- open_set: the wild families (not classes of this zoo) trained on A-train, generating
  from A-test: the closed-set test's content, from architectures the attributor never saw.

Resuming: a model is finished once its record is written (after its weights, both
atomically); a re-run skips finished models and images already written, so an
interrupt loses at most the model in progress. A folder is resumed only with the settings of its
build.json (or, where that file is gone, of its zoo.json), and a model record only when it was
trained with this build's seed and size. Determinism: every model, crop and
noise map is seeded from (build seed, its own name, index), never from what ran
before it, and ops run under TF's op determinism.
"""
import contextlib
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from dnadet_tf.data import OPEN_SET_SPLIT, SPLITS, ZOO_MARKERS, benchmark_digest, is_zoo_dir
from dnadet_tf.errors import DataError
from dnadet_tf.images import save_png_atomic
from dnadet_tf.runs import process_alive, write_json_atomic, write_text_atomic
from dnadet_tf.zoo.generators import PAPER_FAMILIES, WILD_FAMILIES
from dnadet_tf.zoo.photos import cache_root, content_groups, crop_for, find_photos, seed_key
from dnadet_tf.zoo.sheets import contact_sheet
from dnadet_tf.zoo.training import (TrainConfig, generate, load_checked_weights, new_generator, train,
                                    weights_checksum)

SIZES_ORDER = ("tiny", "demo", "full")
ZOO_FORMAT = 1
SCALE = 4  # generators upsample x4: a 32x32 view -> a 128x128 image
IMAGE_SIZE = 128
GENERATE_BATCH = 16
SHEET_SAMPLES = 6

# Each family's own adversarial objective (as in the original papers, where one fits), and
# the other objective the cross-loss models use.
DEFAULT_LOSSES = {
    "progan": ("nonsaturating", "l1"),
    "mmdgan": ("hinge", "l1"),
    "sngan": ("hinge", "l1"),
    "infomaxgan": ("hinge", "l1"),
    "dcgan": ("nonsaturating", "l1"),
    "stylegan": ("nonsaturating", "l1"),
    "cyclegan": ("lsgan", "l1"),
}
CROSS_LOSSES = {"mmdgan": ("lsgan", "l1"), "infomaxgan": ("nonsaturating", "l2")}
REC_WEIGHTS = {"l1": 50.0, "l2": 200.0}


@dataclass(frozen=True)
class SizePreset:
    """How big a zoo is: model widths and steps, images per class and split, models per cross split."""

    width: int
    disc_width: int
    batch_size: int
    crop: int
    steps: int
    finetune_steps: int
    pool: int  # natural crops per training group that batches are cut from
    cross_seeds: int
    images: dict  # per class: train, val, test, cross (each cross split)
    min_photos: tuple  # usable photos needed in domains A, B, C
    loss_families: tuple = ("mmdgan", "infomaxgan")
    finetune_families: tuple = PAPER_FAMILIES
    dataset_families: tuple = PAPER_FAMILIES
    open_set_families: tuple = WILD_FAMILIES
    notes: str = field(default="", compare=False)


SIZES = {
    "tiny": SizePreset(
        width=8, disc_width=8, batch_size=4, crop=64, steps=20, finetune_steps=10, pool=16, cross_seeds=1,
        images={"train": 8, "val": 8, "test": 8, "cross": 8}, min_photos=(4, 2, 2),
        loss_families=("mmdgan",), finetune_families=("progan",), dataset_families=("sngan",),
        open_set_families=("dcgan",),
        notes="for tests: a few steps, 8 images per class and split, one model per cross split",
    ),
    "demo": SizePreset(
        width=48, disc_width=32, batch_size=8, crop=64, steps=700, finetune_steps=250, pool=256, cross_seeds=2,
        images={"train": 240, "val": 40, "test": 80, "cross": 80}, min_photos=(10, 4, 4),
        notes="about 4-6 minutes on a 2-core CPU; enough images for a classifier to learn",
    ),
    "full": SizePreset(
        width=64, disc_width=64, batch_size=16, crop=96, steps=2000, finetune_steps=700, pool=2048,
        cross_seeds=4, images={"train": 2500, "val": 400, "test": 1000, "cross": 1000}, min_photos=(20, 8, 8),
        notes="about 2.5 hours of training on a 2-core CPU (0.3 s per step); resumable",
    ),
}


@dataclass(frozen=True)
class ModelSpec:
    """One generator of the zoo and the images it contributes."""

    name: str
    family: str
    seed: int
    adv_loss: str
    rec_loss: str
    domain: str  # photos it was (last) trained on
    train_group: str
    steps: int
    finetuned_from: str = None
    outputs: tuple = ()  # (split, content group, count)

    def describe(self):
        domain = f"A->{self.domain}" if self.finetuned_from else self.domain
        return f"{self.family} seed={self.seed} loss={self.adv_loss}+{self.rec_loss} domain={domain}"


def _model_name(family, domain, seed, adv, rec):
    return f"{family}-{domain}-seed{seed}-{adv}-{rec}"


def _shares(total, parts):
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def plan(size, wild=False):
    """The models of a zoo, in build order (base models first: fine-tuning starts from them)."""
    preset = SIZES[size]
    families = PAPER_FAMILIES + (WILD_FAMILIES if wild else ())
    n = preset.images
    specs, base = [], {}
    for family in families:
        adv, rec = DEFAULT_LOSSES[family]
        spec = ModelSpec(
            _model_name(family, "A", 0, adv, rec), family, 0, adv, rec, "A", "A-train", preset.steps,
            outputs=(("train", "A-train", n["train"]), ("val", "A-val", n["val"]), ("test", "A-test", n["test"])),
        )
        base[family] = spec
        specs.append(spec)
    adv, rec = DEFAULT_LOSSES["progan"]
    for seed, count in zip(range(1, preset.cross_seeds + 1), _shares(n["cross"], preset.cross_seeds)):
        specs.append(ModelSpec(
            _model_name("progan", "A", seed, adv, rec), "progan", seed, adv, rec, "A", "A-train", preset.steps,
            outputs=(("cross_seed", "A-test", count),),
        ))
    for family in preset.loss_families:
        adv, rec = CROSS_LOSSES[family]
        specs.append(ModelSpec(
            _model_name(family, "A", 0, adv, rec), family, 0, adv, rec, "A", "A-train", preset.steps,
            outputs=(("cross_loss", "A-test", n["cross"]),),
        ))
    for family in preset.finetune_families:
        b = base[family]
        specs.append(ModelSpec(
            f"{b.name}-ftC", family, 0, b.adv_loss, b.rec_loss, "C", "C-train", preset.finetune_steps,
            finetuned_from=b.name, outputs=(("cross_finetune", "C-test", n["cross"]),),
        ))
    for family in preset.dataset_families + (WILD_FAMILIES if wild else ()):
        adv, rec = DEFAULT_LOSSES[family]
        specs.append(ModelSpec(
            _model_name(family, "B", 0, adv, rec), family, 0, adv, rec, "B", "B-train", preset.steps,
            outputs=(("cross_dataset", "B-test", n["cross"]),),
        ))
    for family in () if wild else preset.open_set_families:
        adv, rec = DEFAULT_LOSSES[family]
        specs.append(ModelSpec(
            _model_name(family, "A", 0, adv, rec), family, 0, adv, rec, "A", "A-train", preset.steps,
            outputs=((OPEN_SET_SPLIT, "A-test", n["cross"]),),
        ))
    return specs


def real_outputs(size):
    n = SIZES[size].images
    return (("train", "A-train", n["train"]), ("val", "A-val", n["val"]), ("test", "A-test", n["test"]),
            ("cross_dataset", "B-test", n["cross"]))


def classes_for(wild=False):
    return ("real",) + PAPER_FAMILIES + (WILD_FAMILIES if wild else ())


def default_zoo_dir(size="demo", seed=0, wild=False):
    """The cache folder of a zoo: $DNADET_TF_CACHE (or ~/.cache/dnadet-tf)/zoo-<size>[-wild]-seed<seed>."""
    return os.path.join(cache_root(), f"zoo-{size}{'-wild' if wild else ''}-seed{seed}")


@contextlib.contextmanager
def _graph_settings():
    """TF settings of the build, restored afterwards: op determinism on, Grappler's remapper off.

    The remapper cannot fuse conv + bias + LeakyReLU when the tape also needs the bias
    output; it then gives up on the whole graph with an alarming (harmless) error line per
    model, so turning it off costs nothing and keeps the progress output readable.
    """
    from tensorflow.python.framework import config as tf_config  # the public API cannot disable it

    was_deterministic = getattr(tf_config, "is_op_determinism_enabled", lambda: False)()
    remapping = tf.config.optimizer.get_experimental_options().get("remapping", True)
    tf.config.experimental.enable_op_determinism()
    tf.config.optimizer.set_experimental_options({"remapping": False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"remapping": remapping})
        if not was_deterministic and hasattr(tf_config, "disable_op_determinism"):
            tf_config.disable_op_determinism()


def _remove_leftovers(out_dir):
    """Deletes temporary files that an interrupted run left behind (names containing '.tmp-')."""
    for root, _, files in os.walk(out_dir):
        for name in files:
            if ".tmp-" in name:
                os.remove(os.path.join(root, name))


def _image_path(split, cls, stem, index):
    return f"images/{split}/{cls}/{stem}_{index:05d}.png"


class _Builder:
    def __init__(self, out_dir, size, photo_set, seed, wild, progress):
        self.out_dir = out_dir
        self.size = size
        self.preset = SIZES[size]
        self.photo_set = photo_set
        self.groups = content_groups(photo_set, seed)
        self.seed = seed
        self.wild = wild
        self.progress = progress
        self.classes = classes_for(wild)
        self.specs = plan(size, wild)
        self.entries = {split: [] for split in SPLITS}  # (relative path, label)
        self.open_set = []  # (relative path, family)
        self._pools = {}

    # -- helpers ---------------------------------------------------------------------------
    def path(self, relative):
        return os.path.join(self.out_dir, relative)

    def pool(self, group):
        if group not in self._pools:
            paths = self.groups[group]
            self._pools[group] = np.stack(
                [crop_for(paths, self.seed, "pool", group, i) for i in range(self.preset.pool)]
            )
        return self._pools[group]

    def config(self, spec):
        p = self.preset
        return TrainConfig(
            steps=spec.steps, batch_size=p.batch_size, crop=p.crop, scale=SCALE, width=p.width,
            disc_width=p.disc_width, adv_loss=spec.adv_loss, rec_loss=spec.rec_loss,
            rec_weight=REC_WEIGHTS[spec.rec_loss],
        )

    def model_seed(self, spec):
        return seed_key(self.seed, "model", spec.name) % (2**31 - 2)

    # -- real images -----------------------------------------------------------------------
    def real_images(self):
        written = 0
        for split, group, count in real_outputs(self.size):
            for i in range(count):
                relative = _image_path(split, "real", f"real-{group}", i)
                self.entries[split].append((relative, 0))
                if not os.path.exists(self.path(relative)):
                    os.makedirs(os.path.dirname(self.path(relative)), exist_ok=True)
                    save_png_atomic(crop_for(self.groups[group], self.seed, "real", split, i), self.path(relative))
                    written += 1
        total = sum(c for _, _, c in real_outputs(self.size))
        self.progress(f"real: {total} photo crops ({written} written, {total - written} already there)")

    # -- models ----------------------------------------------------------------------------
    def record_path(self, spec):
        return self.path(f"models/{spec.name}.json")

    def weights_path(self, spec):
        return self.path(f"models/{spec.name}.weights.h5")

    def recorded_checksum(self, name):
        """The weights_sha256 of model `name`'s record (models/NAME.json), None without one."""
        path = self.path(f"models/{name}.json")
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as handle:
            return json.load(handle).get("weights_sha256")

    def load_generator(self, spec):
        generator = new_generator(spec.family, self.config(spec), self.model_seed(spec))
        return load_checked_weights(generator, self.weights_path(spec), self.recorded_checksum(spec.name))

    def train_model(self, index, spec):
        label = f"[{index}/{len(self.specs)}] {spec.describe()}"
        cfg = self.config(spec)
        seed = self.model_seed(spec)
        started = time.monotonic()
        generator = new_generator(spec.family, cfg, seed)
        if spec.finetuned_from:
            load_checked_weights(generator, self.path(f"models/{spec.finetuned_from}.weights.h5"),
                                 self.recorded_checksum(spec.finetuned_from))
        losses = train(generator, self.pool(spec.train_group), cfg, seed, self.progress, f"{spec.name}: ")
        seconds = time.monotonic() - started
        weights = self.weights_path(spec)
        tmp = f"{weights[:-len('.weights.h5')]}.tmp-{os.getpid()}.weights.h5"
        generator.save_weights(tmp)
        os.replace(tmp, weights)
        record = {
            "name": spec.name,
            "family": spec.family,
            "seed": spec.seed,
            "rng_seed": seed,
            "adversarial_loss": spec.adv_loss,
            "reconstruction_loss": spec.rec_loss,
            "domain": spec.domain,
            "training_photos": spec.train_group,
            "finetuned_from": spec.finetuned_from,
            "steps": spec.steps,
            "final_losses": {k: round(v, 6) for k, v in losses.items()},
            "weights": os.path.relpath(weights, self.out_dir),
            "weights_sha256": weights_checksum(generator),
            "train_config": cfg.as_dict(),
            "parameters": int(generator.count_params()),
            "seconds": round(seconds, 1),
        }
        write_json_atomic(self.record_path(spec), record)
        self.progress(
            f"{label}: {spec.steps} steps, {seconds:.1f} s, g_adv={losses['g_adv']:.3f} "
            f"rec={losses['rec']:.3f} d={losses['d']:.3f}"
        )
        return generator, record

    def check_record(self, spec, record):
        """Refuses a model record of another build (another build seed or size: a model's name holds neither)."""
        expected = {"rng_seed": self.model_seed(spec), "steps": spec.steps, "finetuned_from": spec.finetuned_from}
        config = self.config(spec).as_dict()
        recorded_config = record.get("train_config") or {}
        differ = [f"{k} {record.get(k)!r} there, {v!r} now" for k, v in expected.items() if record.get(k) != v]
        differ += [f"{k} {recorded_config[k]!r} there, {v!r} now" for k, v in config.items()
                   if k in recorded_config and recorded_config[k] != v]
        if differ:
            raise DataError(
                f"{self.record_path(spec)}: expected a model of this build (--size {self.size} --seed {self.seed}), "
                f"received one trained otherwise ({', '.join(differ)}); use another --out, or delete that folder "
                f"(or the model's files) to train it anew."
            )

    def model(self, index, spec):
        if os.path.exists(self.record_path(spec)) and os.path.exists(self.weights_path(spec)):
            with open(self.record_path(spec), encoding="utf-8") as handle:
                record = json.load(handle)
            self.check_record(spec, record)
            self.progress(
                f"[{index}/{len(self.specs)}] {spec.describe()}: already built ({record['steps']} steps), skipped"
            )
            generator = None
        else:
            generator, record = self.train_model(index, spec)
        for split, group, count in spec.outputs:
            relatives = [_image_path(split, spec.family, spec.name, i) for i in range(count)]
            if split == OPEN_SET_SPLIT:
                self.open_set.extend((r, spec.family) for r in relatives)
            else:
                self.entries[split].extend((r, self.classes.index(spec.family)) for r in relatives)
            os.makedirs(self.path(f"images/{split}/{spec.family}"), exist_ok=True)
            noise_key = seed_key(self.seed, "noise", spec.name, split) % (2**31 - 1)
            # Fixed chunks: an image is always computed in the same batch, whatever already exists.
            for start in range(0, count, GENERATE_BATCH):
                chunk = range(start, min(count, start + GENERATE_BATCH))
                missing = [i for i in chunk if not os.path.exists(self.path(relatives[i]))]
                if not missing:
                    continue
                if generator is None:
                    generator = self.load_generator(spec)
                crops = np.stack(
                    [crop_for(self.groups[group], self.seed, "content", spec.name, split, i) for i in chunk]
                )
                seeds = [(noise_key, i) for i in chunk]
                images = generate(generator, crops, seeds, SCALE)
                for offset, i in enumerate(chunk):
                    if i in missing:
                        save_png_atomic(images[offset], self.path(relatives[i]))
        return record

    # -- outputs ---------------------------------------------------------------------------
    def write_lists(self):
        write_text_atomic(self.path("classes.txt"), "".join(f"{c}\n" for c in self.classes))
        for split in SPLITS:
            lines = sorted(self.entries[split], key=lambda e: (e[1], e[0]))
            write_text_atomic(self.path(f"{split}.txt"), "".join(f"{p}\t{label}\n" for p, label in lines))
        if self.open_set:
            write_text_atomic(self.path(f"{OPEN_SET_SPLIT}.txt"),
                              "".join(f"{p}\t{family}\n" for p, family in sorted(self.open_set)))

    def write_sheets(self):
        for split in SPLITS:
            rows = []
            for label, cls in enumerate(self.classes):
                paths = [self.path(p) for p, lab in sorted(self.entries[split]) if lab == label]
                if paths:
                    rows.append((cls, paths[:SHEET_SAMPLES]))
            contact_sheet(rows, self.path(f"contact_{split}.png"), tile=IMAGE_SIZE)
        if self.open_set:
            families = sorted({family for _, family in self.open_set})
            rows = [(f"{family} (unknown)", [self.path(p) for p, f in sorted(self.open_set) if f == family][:SHEET_SAMPLES])
                    for family in families]
            contact_sheet(rows, self.path(f"contact_{OPEN_SET_SPLIT}.png"), tile=IMAGE_SIZE)

    def split_summary(self):
        summary = {}
        for split in SPLITS:
            per_class = {}
            for _, label in self.entries[split]:
                per_class[self.classes[label]] = per_class.get(self.classes[label], 0) + 1
            summary[split] = {"images": len(self.entries[split]), "per_class": per_class}
        if self.open_set:
            per_family = {}
            for _, family in self.open_set:
                per_family[family] = per_family.get(family, 0) + 1
            summary[OPEN_SET_SPLIT] = {"images": len(self.open_set), "per_family": per_family}
        return summary


def _build_settings(size, seed, wild, photo_set):
    return {"format": ZOO_FORMAT, "size": size, "seed": seed, "wild": wild, "photos": photo_set.fingerprint,
            "photo_content": photo_set.content_digest}


def _is_inside(path, folder):
    """Whether `path` is `folder` or lies under it (links resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def build_zoo(out_dir, size="demo", photos=None, seed=0, wild=False, progress=print):
    """Builds (or resumes building) a zoo benchmark folder.

    Args:
      out_dir: the folder to write; created if missing. A folder already holding a zoo
        built with other settings (size, seed, wild, photos) is refused.
      size: 'tiny' (tests, well under a minute), 'demo' (minutes) or 'full' (hours).
      photos: a photo folder (see `dnadet_tf.zoo.photos` for how domains A, B, C are
        taken from it), or None for the photos shipped with the package.
      seed: the build seed; the same seed gives the same weights and image bytes.
      wild: add the dcgan, stylegan and cyclegan families (train/val/test and cross_dataset).
      progress: called with one line per model and a few more.

    Returns:
      out_dir.

    Raises:
      DataError: an unknown size, an empty `out_dir` or `photos`, bad photos (see `find_photos`), a folder
        built with other settings (or holding a model record of another build), or a folder another live
        process is building (`build.lock`).
    """
    if size not in SIZES:
        raise DataError(f"unknown zoo size {size!r}; expected one of {', '.join(SIZES_ORDER)}.")
    seed = int(seed)
    if seed < 0:
        raise DataError(f"--seed must be a non-negative integer, received {seed}.")
    preset = SIZES[size]
    out_dir = os.fspath(out_dir)
    refuse_empty_path("--out", out_dir)
    if photos is not None:
        refuse_empty_path("--photos", os.fspath(photos))
    if photos is not None and _is_inside(out_dir, os.fspath(photos)):
        raise DataError(f"--out {out_dir}: expected a folder outside --photos {os.fspath(photos)}, received one "
                        f"inside it (its images would be read as photos the next time, and a rerun or a resumed "
                        f"build refused).")
    _check_out_dir(out_dir)  # before the photos are decoded: a wrong --out is refused at once
    photo_set = find_photos(photos, preset.min_photos)
    os.makedirs(os.path.join(out_dir, "models"), exist_ok=True)
    with _build_lock(out_dir):
        _check_settings(out_dir, _build_settings(size, seed, wild, photo_set))
        _remove_leftovers(out_dir)
        _build(out_dir, size, photo_set, seed, wild, progress)
    return out_dir


def refuse_empty_path(flag, value):
    """An empty path is the current folder to `os.path` (a build or swap-content there wrote beside whatever it
    holds): refused, naming `flag`."""
    if not value.strip():
        raise DataError(f"{flag}: expected a folder path, received an empty value{f' {value!r}' if value else ''} "
                        f"(a shell variable that is not set?).")


def _check_out_dir(out_dir):
    """Refuses an `out_dir` that is a file, or a folder holding files of something other than a zoo (a run dir,
    photos, ...): a build writes its images and lists beside whatever is there. A folder holding nothing but an
    empty models/ is a build stopped before it wrote build.json."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"--out {out_dir}: expected a folder for the zoo, received a file.")
    entries = os.listdir(out_dir) if os.path.isdir(out_dir) else []
    models = os.path.join(out_dir, "models")
    started = entries == ["models"] and os.path.isdir(models) and not os.listdir(models)
    if entries and not started and not is_zoo_dir(out_dir):
        kind = "a run dir" if os.path.isfile(os.path.join(out_dir, "config.json")) else "a folder of other files"
        raise DataError(f"--out {out_dir}: expected an empty folder or a zoo this command built ({ZOO_MARKERS[0]} "
                        f"in it), received {kind}.")


def _settings_of_finished_zoo(out_dir):
    """The build settings a zoo.json records (for a folder whose build.json is gone), or None without one."""
    path = os.path.join(out_dir, "zoo.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        zoo = json.load(handle)
    return {"format": zoo.get("format"), "size": zoo.get("size"), "seed": zoo.get("seed"),
            "wild": zoo.get("wild"), "photos": (zoo.get("photos") or {}).get("fingerprint")}


def _shown_setting(key, value):
    if key in ("photos", "photo_content") and isinstance(value, str):
        return f"{value[:12]}..."  # a digest of the photo files: its start tells two apart
    return repr(value)


def _check_settings(out_dir, settings):
    """Records the build settings in a new folder; refuses a folder built with other settings.

    A folder without build.json but with a zoo.json (a zoo copied without it, or the file deleted) is compared
    with the settings zoo.json records: its models carry no build seed or size in their names, so they would
    otherwise be taken for this build's."""
    settings_path = os.path.join(out_dir, "build.json")
    if os.path.exists(settings_path):
        with open(settings_path, encoding="utf-8") as handle:
            previous = json.load(handle)
    else:
        previous = _settings_of_finished_zoo(out_dir)
        if previous is None:
            write_json_atomic(settings_path, settings)
            return
    if "photo_content" not in previous:  # written before the photos' bytes were recorded: their sizes must do
        previous = {**previous, "photo_content": settings["photo_content"]}
        if all(previous.get(k) == v for k, v in settings.items()):
            write_json_atomic(settings_path, previous)
    if previous != settings:
        differ = ", ".join(
            f"{k}: {_shown_setting(k, previous.get(k))} there, {_shown_setting(k, v)} now"
            for k, v in settings.items() if previous.get(k) != v
        )
        raise DataError(
            f"--out {out_dir}: expected a zoo built with the same settings (to resume or rerun it), received one "
            f"built with other settings ({differ}); use another --out or delete that folder."
        )


@contextlib.contextmanager
def _build_lock(out_dir):
    """One build at a time per folder: `build.lock` holds the builder's process id (stale locks are taken over)."""
    path = os.path.join(out_dir, "build.lock")
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            with open(path, encoding="utf-8") as handle:
                pid = int(handle.read().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid and pid != os.getpid() and process_alive(pid):
            raise DataError(
                f"{out_dir}: another build (process {pid}) is writing this zoo; wait for it to finish "
                f"(or delete {path} if no build is running)."
            ) from None
        os.remove(path)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)


def _build(out_dir, size, photo_set, seed, wild, progress):
    started = time.monotonic()
    builder = _Builder(out_dir, size, photo_set, seed, wild, progress)
    groups = ", ".join(f"{g} {len(p)}" for g, p in builder.groups.items())
    progress(f"zoo {size} seed={seed}{' wild' if wild else ''} -> {out_dir}: {len(builder.specs)} models; "
             f"photos: {groups}")
    with _graph_settings():
        builder.real_images()
        records = [builder.model(i, spec) for i, spec in enumerate(builder.specs, start=1)]
    builder.write_lists()
    builder.write_sheets()
    zoo = {
        "format": ZOO_FORMAT,
        "size": size,
        "seed": seed,
        "wild": wild,
        "image_size": IMAGE_SIZE,
        "photos": {
            **photo_set.describe(),
            "content_groups": {g: [os.path.relpath(p, photo_set.source) for p in paths]
                               for g, paths in builder.groups.items()},
        },
        "classes": list(builder.classes),
        "splits": builder.split_summary(),
        "models": records,
        # what ablate, swap-content and the benchmarks record of the zoo they measured (README, "The generator zoo")
        "zoo_sha256": benchmark_digest(out_dir),
    }
    write_json_atomic(os.path.join(out_dir, "zoo.json"), zoo)
    total = sum(len(v) for v in builder.entries.values()) + len(builder.open_set)
    progress(f"zoo written to {out_dir}: {total} images in {len(SPLITS)} splits, "
             f"{time.monotonic() - started:.1f} s; zoo_sha256 {zoo['zoo_sha256']}")


def _is_complete(out_dir):
    if not os.path.exists(os.path.join(out_dir, "zoo.json")):
        return False
    with open(os.path.join(out_dir, "zoo.json"), encoding="utf-8") as handle:
        zoo = json.load(handle)
    # A zoo built before open-set images existed is completed (its other models are reused).
    lists = SPLITS + (() if zoo.get("wild") else (OPEN_SET_SPLIT,))
    for split in lists:
        list_path = os.path.join(out_dir, f"{split}.txt")
        if not os.path.exists(list_path):
            return False
        with open(list_path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip() and not os.path.exists(os.path.join(out_dir, line.split("\t")[0])):
                    return False
    return True


def ensure_zoo(size="demo", seed=0, progress=print, wild=False, zoo_dir=None):
    """The path of a complete zoo, built (or an interrupted build resumed) only when needed.

    Args:
      size, seed, wild: as for `build_zoo` (the packaged photos are used).
      progress: called with one-line messages.
      zoo_dir: the folder to use; default `default_zoo_dir(size, seed, wild)`, a cache folder
        under $DNADET_TF_CACHE or ~/.cache/dnadet-tf.

    Returns:
      The zoo folder (a complete zoo: zoo.json, every list and every listed image present).

    Raises:
      DataError: the folder holds a zoo built with other settings.
    """
    out_dir = os.fspath(zoo_dir) if zoo_dir else default_zoo_dir(size, seed, wild)
    if _is_complete(out_dir):
        with open(os.path.join(out_dir, "build.json"), encoding="utf-8") as handle:
            settings = json.load(handle)
        wanted = {"size": size, "seed": int(seed), "wild": bool(wild)}
        if all(settings.get(k) == v for k, v in wanted.items()):
            progress(f"zoo: using {out_dir}")
            return out_dir
    progress(f"zoo: building the {size} zoo in {out_dir} (once; an interrupted build resumes)")
    return build_zoo(out_dir, size=size, seed=seed, wild=wild, progress=progress)
