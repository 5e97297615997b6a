"""Many photos in one style: the batched engine layout, the driver, and ``nst-jax batch``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, rand_image
from PIL import Image

from nst_jax import vgg
from nst_jax.batch import group_by_shape, stylize_batch
from nst_jax.cli import main
from nst_jax.cli.batch import output_names
from nst_jax.config import Config
from nst_jax.engine import stylize


def test_group_by_shape_and_names():
    assert group_by_shape([(2, 2, 3), (3, 3, 3), (2, 2, 3)]) == [[0, 2], [1]]
    assert output_names([Path("a/x.jpg"), Path("b/x.png"), Path("y.png")], "art.png") == [
        "x-art.png", "x-art-1.png", "y-art.png"]


def test_batch_equals_separate_runs(params16):
    """Mixed shapes (two programs), a chunk that needs padding: every photo's result is
    the single run's up to float rounding (the same program, vmapped)."""
    cfg = Config(iterations=4, report_every=2, beta=1e-2)
    S = rand_image(48, 48, 9)
    photos = [rand_image(48, 64, 1), rand_image(64, 48, 2), rand_image(48, 64, 3), rand_image(48, 64, 4)]
    calls = []
    res = stylize_batch(photos, S, params16, vgg.CAFFE, config=cfg, chunk_points=2,
                        callback=lambda d, t, p: calls.append((d, t)))
    assert calls[-1] == (12, 12)  # 3 chunks of 4 steps: [0, 2], [3] (padded), [1]
    for photo, (image, info) in zip(photos, res, strict=True):
        single, hist = stylize(photo, S, params16, vgg.CAFFE, config=cfg)
        np.testing.assert_allclose(image, single, atol=1e-5)
        assert info["ok"] and info["costs"]["total"] == pytest.approx(hist["costs"]["total"], rel=1e-5)


def test_batch_luminance_mode_has_per_photo_style_targets(params16):
    cfg = Config(iterations=2, report_every=2, beta=1e-2, preserve_color="luminance")
    S = rand_image(48, 48, 9)
    photos = [rand_image(48, 48, 5), rand_image(48, 48, 6) * 0.3]
    res = stylize_batch(photos, S, params16, vgg.CAFFE, config=cfg)
    for photo, (image, _) in zip(photos, res, strict=True):
        np.testing.assert_allclose(image, stylize(photo, S, params16, vgg.CAFFE, config=cfg)[0], atol=1e-6)


def _photos(d: Path) -> Path:
    folder = d / "photos"
    folder.mkdir()
    for i, hw in enumerate([(48, 40), (48, 40), (40, 60)]):
        pixels = np.random.default_rng(i).integers(0, 255, (*hw, 3), np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i}.png")
    (folder / "bad.png").write_text("not an image")
    return folder


def test_cli_batch_skips_an_unreadable_photo(work, tmp_path, capsys):
    folder = _photos(tmp_path)
    out = tmp_path / "out"
    code = main(["batch", str(folder), str(work / "s.png"), "--weights", str(work / "tiny.h5"),
                 *FAST, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "bad.png (skipped)" in err and "done: 3 of 4 photo(s) written" in err
    assert "error: 1 photo(s) failed: " in err and "Traceback" not in err
    assert sorted(p.name for p in out.glob("*.png")) == ["p0-s.png", "p1-s.png", "p2-s.png"]
    meta = json.loads((out / "p2-s.png.json").read_text())
    assert meta["content"].endswith("p2.png") and meta["status"] == "done"
    with Image.open(out / "p2-s.png") as im:
        assert im.size == (32, 21)
    # the outputs exist now: a second run refuses to overwrite them
    assert main(["batch", str(folder / "p0.png"), "--style", str(work / "s.png"),
                 "--weights", str(work / "tiny.h5"), *FAST, "-o", str(out)]) == 2
    assert "p0-s.png exists; pass --overwrite" in capsys.readouterr().err


def test_cli_batch_resume_skips_the_photos_already_written(work, tmp_path, capsys):
    folder = _photos(tmp_path)
    (folder / "bad.png").unlink()
    out = tmp_path / "out"
    argv = ["batch", str(folder), str(work / "s.png"), "--weights", str(work / "tiny.h5"), *FAST,
            "-o", str(out)]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    for f in ("p1-s.png", "p1-s.png.json"):  # as if interrupted before that photo's chunk finished
        (out / f).unlink()
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "resume: 2 photo(s) already written, 1 to go" in err and "done: 1 of 3" in err
    assert sorted(p.name for p in out.glob("*.png")) == sorted(before)
    assert all((out / n).read_bytes() == b for n, b in before.items() if n != "p1-s.png")  # untouched
    assert main([*argv, "--resume", "--beta", "0.5"]) == 2
    assert "--resume: " in (err := capsys.readouterr().err) and "other settings: beta" in err


@pytest.mark.parametrize(("inputs", "msg"), [
    (["EMPTY", "STYLE"], "no images in this folder"),
    (["nothing-*.png", "STYLE"], "nothing-*.png: no file matches this pattern"),
    (["BAD", "STYLE"], "none of the 1 photo(s) can be read"),
    (["STYLE"], "expected photos and then a style image"),
])
def test_cli_batch_refusals(work, tmp_path, capsys, inputs, msg, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.png").write_text("x")
    subs = {"EMPTY": str(tmp_path / "empty"), "STYLE": str(work / "s.png"), "BAD": str(tmp_path / "bad.png")}
    argv = ["batch", *[subs.get(a, a) for a in inputs], "--weights", str(work / "tiny.h5"), *FAST]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_output_names_are_unique_over_the_whole_batch():
    # the field report: style 1.png and photos p, p, p-1 gave p-1-1.png twice
    photos = [Path("d1/p.png"), Path("d2/p.png"), Path("d3/p-1.png"), Path("d4/P.png")]
    names = output_names(photos, "1.png")
    assert names == ["p-1.png", "p-1-2.png", "p-1-1.png", "P-1-3.png"]
    assert len({n.casefold() for n in names}) == len(names)


def test_cli_batch_colliding_names_and_a_photo_too_small(work, tmp_path, capsys):
    style = tmp_path / "1.png"
    style.write_bytes((work / "s.png").read_bytes())
    rng = np.random.default_rng(0)
    photos = []
    for d, stem in (("d1", "p"), ("d2", "p"), ("d3", "p-1")):
        (tmp_path / d).mkdir()
        photos.append(tmp_path / d / f"{stem}.png")
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), np.uint8)).save(photos[-1])
    long = tmp_path / "long.png"  # 2000x10: 32x1 at --size 32, too small for conv5_1
    Image.fromarray(rng.integers(0, 255, (10, 2000, 3), np.uint8)).save(long)
    out = tmp_path / "out"
    code = main(["batch", *map(str, photos), str(long), "--style", str(style),
                 "--weights", str(work / "tiny.h5"), *FAST, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert "long.png: 32x1 is too small for conv5_1" in err and "(skipped)" in err
    assert sorted(p.name for p in out.glob("*.png")) == ["p-1-1.png", "p-1-2.png", "p-1.png"]
    assert "done: 3 of 4 photo(s) written" in err


@pytest.mark.parametrize("where", ["holds", "same"])
def test_cli_batch_output_folder_never_holds_the_photos(work, tmp_path, capsys, where):
    folder = _photos(tmp_path)
    before = sorted(p.name for p in folder.iterdir())
    out = folder if where == "same" else tmp_path
    code = main(["batch", str(folder), str(work / "s.png"), "--weights", str(work / "tiny.h5"),
                 *FAST, "-o", str(out), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2 and "refused even with --overwrite" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.slow
def test_cli_batch_on_two_hosts_equals_one_process(work, tmp_path):
    """Two processes on 127.0.0.1 (jax.distributed, gloo), 2 virtual devices each: the
    photos sharded over the 4 devices give the images of one process; only process 0 writes."""
    import os
    import subprocess
    import sys

    from conftest import ROOT
    from test_grid import two_hosts
    from test_image import _read_png16

    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(3):
        Image.fromarray((rand_image(40, 48, 10 + k) * 255).astype(np.uint8)).save(photos / f"p{k}.png")
    cli = [sys.executable, "-c", "import sys; from nst_jax.cli import main; sys.exit(main())", "batch",
           str(photos), str(work / "s.png"), "--weights", str(work / "tiny.h5"), "--size", "32",
           "--iters", "4", "--report-every", "2", "--beta", "1e-2", "--quiet", "--bit-depth", "16"]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    two_hosts(lambda i: [*cli, "-o", str(tmp_path / f"multi{i}")], env, tmp_path)
    assert not (tmp_path / "multi1").exists()  # process 1 wrote nothing
    one = subprocess.run([*cli, "-o", str(tmp_path / "single")], env=env, capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    assert one.returncode == 0, one.stderr
    names = sorted(p.name for p in (tmp_path / "single").glob("*.png"))
    assert len(names) == 3 and names == sorted(p.name for p in (tmp_path / "multi0").glob("*.png"))
    for n in names:
        a = _read_png16((tmp_path / "single" / n).read_bytes())[0] / 65535
        b = _read_png16((tmp_path / "multi0" / n).read_bytes())[0] / 65535
        # 4 devices against 2 in one process: the same vmapped program sharded otherwise
        # (padding points, other offsets): equal to float rounding
        assert float(np.mean(np.abs(a - b))) < 1e-4, n
