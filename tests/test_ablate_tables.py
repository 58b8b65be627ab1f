"""The tables of `ablate` and of the result scripts: benchmarks/render_results.py renders every result file once,
says a bad file in one line and renders the others; `ablate` (and benchmarks/zoo_table.py) refuses unknown variants
and no seeds before any work; mean ± std cells round halves up; a rerun with fewer seeds or variants keeps the
earlier table's results it would reuse (and names those it would not); its own step 1 on the packaged photos is
reused after the package moved."""
import glob
import json
import os
import shutil

import pytest

from clirun import BENCHMARKS, benchmark_module, run_cli
from dnadet_tf import ablation
from dnadet_tf.ablation import ablate
from dnadet_tf.errors import DnadetError
from synthetic import make_photos, write_benchmark

RESULTS = os.path.join(BENCHMARKS, "results")
TINY = dict(preset="tiny", steps=4)  # the tiny runs these tests train, a few seconds each


_module = benchmark_module


# --- render_results.py ---------------------------------------------------------------------------------------------

def test_render_results_renders_every_result_file_once_by_its_longest_prefix(capsys):
    # "open-set*" also matched "open-set-points*": each open-set-points-*.json was printed twice.
    render = _module("render_results")
    assert render.main([]) == 0
    headings = [line[4:] for line in capsys.readouterr().out.splitlines() if line.startswith("### ")]
    assert len(headings) == len(set(headings))
    points = sorted(os.path.basename(p) for p in glob.glob(os.path.join(RESULTS, "open-set-points-*.json")))
    assert points and all(headings.count(name) == 1 for name in points)
    # rendered as open-set points (open_set_points.format_table), not as an open_set_table.py document
    assert render.render_file(os.path.join(RESULTS, points[0])) == render._rendered_by(
        "open_set_points", "format_table", os.path.join(RESULTS, points[0]))


def test_render_results_names_each_bad_file_in_one_line_and_renders_the_others(tmp_path, capsys):
    # A missing, non-JSON or other-shaped file stopped the script with a traceback, rendering none of the others.
    render = _module("render_results")
    good = os.path.join(RESULTS, "ablation-demo-avx512-default-four-variants.json")
    missing = str(tmp_path / "ablation-missing.json")
    not_json = tmp_path / "ablation-not-json.json"
    not_json.write_text("{not json")
    no_preset = tmp_path / "ablation-no-preset.json"
    no_preset.write_text(json.dumps({"seeds": [0], "variants": []}))
    a_list = tmp_path / "open-set-points-list.json"
    a_list.write_text("[]")
    folder = tmp_path / "ablation-folder.json"
    folder.mkdir()
    bad = [missing, str(not_json), str(no_preset), str(a_list), str(folder)]
    assert render.main([missing, str(not_json), good, str(no_preset), str(a_list), str(folder)]) == 2
    out, err = capsys.readouterr()
    assert out.count("### ") == 1 and f"### {os.path.basename(good)}" in out
    lines = err.splitlines()
    assert len(lines) == len(bad)
    for path, line in zip(bad, lines):
        assert line.startswith(f"render_results: {path}: ")
    assert lines[0] == f"render_results: {missing}: no such file."
    assert lines[1].startswith(f"render_results: {not_json}: not JSON (Expecting property name enclosed in double "
                               f"quotes: line 1 column 2); expected the JSON that ablation*.json files hold")
    assert lines[2] == (f"render_results: {no_preset}: JSON without the key 'preset'; expected the JSON that "
                        f"ablation*.json files hold.")
    assert "JSON of another shape" in lines[3] and "open-set-points*.json" in lines[3]
    assert lines[4] == f"render_results: {folder}: a folder, not a result file."


# --- variants and seeds ---------------------------------------------------------------------------------------------

VARIANTS_ERROR = "variants: expected a comma list of base, base_pt, base_pcl, dnadet (one or more), received {}."
SEEDS_ERROR = "seeds: expected one or more distinct training seeds (integers of 0 or above), received {}."


@pytest.mark.parametrize("variants, seeds, message", [
    (["basepcl"], (0,), VARIANTS_ERROR.format("['basepcl']")),
    ([], (0,), VARIANTS_ERROR.format("[]")),
    ("base,dna", (0,), VARIANTS_ERROR.format("'base,dna'")),
    (["base"], range(0), SEEDS_ERROR.format("none")),
    (["base"], [0, 0], SEEDS_ERROR.format("[0, 0]")),
    (["base"], [-1], SEEDS_ERROR.format("[-1]")),
])
def test_ablate_refuses_unknown_variants_and_no_seeds_before_any_work(zoo, tmp_path, variants, seeds, message):
    # An unknown variant ran nothing (an empty table, or none) and no seed crashed in `aggregate` (IndexError).
    out = tmp_path / "ablation"
    with pytest.raises(DnadetError) as raised:
        ablate(zoo, str(out), seeds=seeds, variants=variants, **TINY)
    assert str(raised.value) == message
    assert not out.exists()


def test_ablate_command_and_zoo_table_share_the_check(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ablation"
    code, _, err = run_cli(["ablate", "--zoo", str(tmp_path), "--out", str(out), "--variants", "basepcl"])
    assert code == 2 and err == "dnadet-tf ablate: error: --" + VARIANTS_ERROR.format("'basepcl'") + "\n"
    zoo_table = _module("zoo_table")

    def built(*args, **kwargs):
        raise AssertionError("the demo zoo built before the flags were checked")

    monkeypatch.setattr(zoo_table, "ensure_zoo", built)
    monkeypatch.setattr(zoo_table, "configure_runtime", lambda *args, **kwargs: None)
    capsys.readouterr()
    for argv, message in ((["--variants", "basepcl"], "--" + VARIANTS_ERROR.format("'basepcl'")),
                          (["--seeds", "0"], "--" + SEEDS_ERROR.format("none"))):
        with pytest.raises(SystemExit) as stopped:
            zoo_table.main(["--out", str(out)] + argv)
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and err.splitlines()[-1].endswith(f"error: {message}")
    assert not out.exists()


# --- reruns with fewer seeds or variants ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def zoo(upsampling_data, tmp_path_factory):
    """A benchmark folder over `upsampling_data`: its train and val images, its test images in every test list."""
    return write_benchmark(upsampling_data, tmp_path_factory.mktemp("zoo"))


def _state(folder):
    """{path relative to `folder`: (modification time, size)} of every file under it but the ablation's tables."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            relative = os.path.relpath(path, folder)
            if relative not in ("ablation.json", "ablation.md"):
                found[relative] = (os.stat(path).st_mtime_ns, os.path.getsize(path))
    return found


def _seeds(document):
    """{variant: [seed, ...]} of an ablation document, and each variant's values as many as its seeds."""
    found = {}
    for entry in document["variants"]:
        found[entry["variant"]] = [result["seed"] for result in entry["seeds"]]
        assert len(entry["summary"]["closed-set"]["accuracy"]["values"]) == len(entry["seeds"])
    return found


def test_a_rerun_with_fewer_seeds_or_variants_keeps_the_results_it_would_reuse(zoo, tmp_path, capsys):
    # A rerun with fewer seeds or variants on the same out replaced ablation.json/md with a smaller table.
    import io

    out = str(tmp_path / "ablation")
    ablate(zoo, out, seeds=(0, 1), variants=["base"], **TINY)
    document = ablate(zoo, out, seeds=(0,), variants=["base_pcl"], **TINY)
    assert _seeds(document) == {"Base": [0, 1], "Base+PCL": [0]}
    assert document["seeds"] == [0, 1] and document["planned"] == ["Base", "Base+PCL"] and document["complete"]
    with open(os.path.join(out, "ablation.md"), encoding="utf-8") as f:
        table = f.read()
    assert "over 2 training seed(s) (Base+PCL: seed 0)" in table and "| Base | " in table
    # the same again with one seed of Base: nothing trained, both variants and both seeds of Base in the table
    before = _state(out)
    output = io.StringIO()
    again = ablate(zoo, out, seeds=(0,), variants=["base"], output=output, **TINY)
    assert _state(out) == before
    assert _seeds(again) == {"Base": [0, 1], "Base+PCL": [0]}
    assert again["variants"][0]["summary"] == document["variants"][0]["summary"]
    with open(os.path.join(out, "ablation.json"), encoding="utf-8") as f:
        assert _seeds(json.load(f)) == {"Base": [0, 1], "Base+PCL": [0]}
    assert (f"{out}/ablation.json: its results of Base seed 1; Base+PCL seed 0 stay in the new table (not rerun; "
            f"their runs are reused as they are)") in output.getvalue().splitlines()
    # a run trained otherwise (another learning rate) and a run gone: left out, named in one warning line
    config_path = os.path.join(out, "base_pcl", "seed0", "config.json")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    rate = config["optimizer"]["learning_rate"]
    config["optimizer"]["learning_rate"] = 0.5
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f)
    shutil.rmtree(os.path.join(out, "base", "seed1"))
    output = io.StringIO()
    last = ablate(zoo, out, seeds=(0,), variants=["base"], output=output, **TINY)
    assert _seeds(last) == {"Base": [0]} and last["seeds"] == [0]
    warnings = [line for line in output.getvalue().splitlines() if line.startswith("warning: ")]
    assert warnings == [
        f"warning: {out}/ablation.json: the new table leaves out its results of Base seed 1 (no finished run in "
        f"{os.path.join(out, 'base', 'seed1')}); Base+PCL seed 0 (trained with learning_rate 0.5, where this ablation "
        f"trains {rate!r}) (this ablation would not reuse them as they are; their run dirs are kept)"]
    assert os.path.isdir(os.path.join(out, "base_pcl", "seed0"))


# --- the packaged photos after the package moved --------------------------------------------------------------------

def test_an_own_step1_on_the_packaged_photos_is_reused_after_the_package_moved(zoo, tmp_path, monkeypatch):
    # The step 1 was compared by the absolute path of the packaged photos: refused once the package was reinstalled
    # from another folder.
    first = make_photos(str(tmp_path / "site-a" / "demo_photos"), 10)
    monkeypatch.setattr(ablation, "default_photos", lambda: first)
    out = str(tmp_path / "ablation")
    settings = dict(TINY, zoo=zoo, out=out, seeds=(0,), variants=["base_pt"], pretrain_steps=2)
    ablate(**settings)
    step1 = os.path.join(out, "pretrain")
    moved = str(tmp_path / "site-b" / "demo_photos")
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    monkeypatch.setattr(ablation, "default_photos", lambda: moved)
    before = _state(out)
    document = ablate(**settings)  # the same photos elsewhere: the step 1 and the run reused
    assert _state(out) == before and document["pretrained"] == step1
    # other photos at the package's place: refused, naming them
    other = make_photos(str(tmp_path / "site-c" / "demo_photos"), 10, seed=1)
    monkeypatch.setattr(ablation, "default_photos", lambda: other)
    with pytest.raises(DnadetError) as raised:
        ablate(**settings)
    assert str(raised.value) == (f"{step1}: pre-trained with `photos` {first!r}, where this ablation pre-trains with "
                                 f"{other!r}; pass another `out`, or remove {step1} to pre-train it again.")
    assert _state(out) == before
    # a step 1 of before the digest was recorded: its folder compared while it is there, refused when it is gone
    record = os.path.join(step1, ablation.PRETRAINED_FILE)
    with open(record, encoding="utf-8") as f:
        summary = json.load(f)
    assert summary.pop("photos_sha256") == ablation.photo_set_digest(moved)
    with open(record, "w", encoding="utf-8") as f:
        json.dump(summary, f)
    shutil.copytree(moved, first)
    monkeypatch.setattr(ablation, "default_photos", lambda: moved)
    ablate(**settings)
    shutil.rmtree(first)
    with pytest.raises(DnadetError, match="pre-trained with `photos`"):
        ablate(**settings)
