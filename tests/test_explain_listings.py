"""What `explain` takes for a listing an explain (or a report) wrote: a user's own explain.json in --out was read as
an earlier listing (the PNGs it names removed) and written over; a user's explain.json or gradcam.json in a folder
of IMAGES hid the images it names. Only a real listing (`explain.is_listing`, the test the report uses for its
gradcam/gradcam.json) counts as one."""
import glob
import json
import os
import shutil

import pytest

from clirun import files_under, run_cli

USERS_LISTINGS = {  # a user's explain.json / gradcam.json: none of them is a listing an explain or a report wrote
    "notes": {"my": "notes"},
    "empty list": [],
    "unrelated rows": [{"png": "b.png", "note": "my own list"}],
    "rows without layer and method": [{"path": "b.png", "png": "b.png"}],
}


def _images(upsampling_data, folder):
    """`folder` with a.png and b.png, two test images."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(sorted(glob.glob(os.path.join(upsampling_data["test"], "real", "*.png")))[0], folder / "a.png")
    shutil.copy(sorted(glob.glob(os.path.join(upsampling_data["test"], "nearest", "*.png")))[0], folder / "b.png")
    return folder


def _explain(run, *args):
    return run_cli(["explain", "--model", run, *map(str, args)])


def _listed(listing):
    return [(os.path.basename(row["path"]), os.path.basename(row["png"])) for row in json.loads(listing.read_text())]


def test_is_listing_is_the_reports_test(tmp_path):
    from dnadet_tf import report
    from dnadet_tf.explain import is_listing

    path = tmp_path / "x.json"
    for value in USERS_LISTINGS.values():
        path.write_text(json.dumps(value))
        assert not is_listing(str(path))
    path.write_text("not json")
    assert not is_listing(str(path)) and not is_listing(str(tmp_path / "absent.json"))
    path.write_text(json.dumps([{"path": "/x/a.png", "png": "/y/a.gradcam.png", "layer": "l", "method": "gradcam",
                                 "class": "real", "class_index": 0, "probability": 0.5}]))
    assert is_listing(str(path))
    assert report.is_listing is is_listing  # one test, shared by the report's _gradcam_folder


@pytest.mark.parametrize("content", list(USERS_LISTINGS.values()), ids=list(USERS_LISTINGS))
def test_overwrite_keeps_a_users_explain_json_in_out(untrained_run, upsampling_data, tmp_path, content):
    """--overwrite read a user's explain.json in --out as a listing: wrote over it, and removed the PNG of the user's
    it names. It is kept; the listing takes the next free name, explain-2.json, as a PNG does, and reruns replace
    their own."""
    inp = _images(upsampling_data, tmp_path / "inp")
    out = tmp_path / "out"
    out.mkdir()
    (out / "explain.json").write_text(json.dumps(content))
    shutil.copy(inp / "b.png", out / "b.png")  # an image of the user's, which the unrelated rows name
    users = files_under(str(out))
    for _ in range(2):
        code, stdout, stderr = _explain(untrained_run, inp, "--out", out, "--overwrite")
        assert code == 0, stderr
        assert {rel: data for rel, data in files_under(str(out)).items() if rel in users} == users
        assert _listed(out / "explain-2.json") == [("a.png", "a.gradcam.png"), ("b.png", "b.gradcam.png")]
        assert sorted(os.listdir(out)) == ["a.gradcam.png", "b.gradcam.png", "b.png", "explain-2.json",
                                           "explain.json"]
        assert (f"{os.path.join(str(out), 'explain.json')} is not an explain listing (a file of yours): kept; "
                f"writing the listing to {os.path.join(str(out), 'explain-2.json')}") in stdout
        assert "wrote 2 PNG(s) and explain-2.json in" in stdout
    # the explain-2.json of a rerun into the folder of IMAGES is a listing too: its PNGs are not images to explain
    code, _, stderr = _explain(untrained_run, out, "--out", out, "--overwrite")
    assert code == 0, stderr
    assert _listed(out / "explain-2.json") == [("b.png", "b.gradcam.png")]
    assert {rel: data for rel, data in files_under(str(out)).items() if rel in users} == users


def test_overwrite_still_replaces_an_earlier_explains_listing(untrained_run, upsampling_data, tmp_path):
    inp = _images(upsampling_data, tmp_path / "inp")
    out = tmp_path / "out"
    assert _explain(untrained_run, inp, "--out", out)[0] == 0
    code, stdout, stderr = _explain(untrained_run, inp / "a.png", "--out", out, "--overwrite")
    assert code == 0, stderr
    assert "not an explain listing" not in stdout
    assert _listed(out / "explain.json") == [("a.png", "a.gradcam.png")]
    assert sorted(os.listdir(out)) == ["a.gradcam.png", "explain.json"]


@pytest.mark.parametrize("name", ["explain.json", "gradcam.json"])
@pytest.mark.parametrize("content", list(USERS_LISTINGS.values()), ids=list(USERS_LISTINGS))
def test_a_users_listing_in_a_folder_of_images_hides_no_image(untrained_run, upsampling_data, tmp_path, name,
                                                              content):
    """A user's explain.json or gradcam.json beside the images hid the PNGs it names (b.png) from being read."""
    from dnadet_tf.cli.explain import input_images

    inp = _images(upsampling_data, tmp_path / "inp")
    (inp / name).write_text(json.dumps(content))
    assert sorted(os.path.basename(path) for path in input_images([str(inp)])) == ["a.png", "b.png"]
    code, _, stderr = _explain(untrained_run, inp, "--out", tmp_path / "out")
    assert code == 0, stderr
    assert _listed(tmp_path / "out" / "explain.json") == [("a.png", "a.gradcam.png"), ("b.png", "b.gradcam.png")]
    # the only image of a folder is read too (it was refused as an earlier explain's PNG)
    (inp / "a.png").unlink()
    assert [os.path.basename(path) for path in input_images([str(inp)])] == ["b.png"]


def test_a_real_listing_in_a_folder_of_images_still_hides_its_pngs(untrained_run, upsampling_data, tmp_path):
    from dnadet_tf.cli.explain import input_images

    inp = _images(upsampling_data, tmp_path / "inp")
    assert _explain(untrained_run, inp, "--out", inp / "cams")[0] == 0
    assert _explain(untrained_run, inp, "--out", inp, "--overwrite")[0] == 0
    assert sorted(os.path.basename(path) for path in input_images([str(inp)])) == ["a.png", "b.png"]
