"""stylize.py end to end on tiny images with synthetic weights; every bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, REAL_VGG16, ROOT, run
from PIL import Image

from nst_jax import weights as W
from nst_jax.cli import main, parse_style_layers, stylize_main


def test_end_to_end_writes_png_metadata_sidecar_frames(work, capsys):
    assert run(work, "--save-every", "2", out="e2e.png") == 0
    err = capsys.readouterr().err
    assert "compiled and ran the first 2 iterations" in err
    assert "done: wrote" in err and "e2e.png" in err and "final costs: content" in err
    with Image.open(work / "e2e.png") as im:
        assert im.size == (27, 32) and im.format == "PNG"
        meta = json.loads(im.info["nst_jax"])
    assert meta["status"] == "done" and meta["steps"] == 4
    assert meta["settings"]["beta"] == 1e-2
    assert meta["weights"]["architecture"] == "vgg16"
    assert set(meta["final_costs"]) == {"total", "content", "style", "tv"}
    assert json.loads((work / "e2e.png.json").read_text()) == meta
    frame = work / "e2e.000002.png"
    assert frame.exists() and json.loads((work / "e2e.000002.png.json").read_text())["steps"] == 2
    assert not list(work.glob(".*tmp"))


def test_refuses_to_overwrite(work, capsys):
    (work / "keep.png").write_bytes(b"precious")
    assert run(work, out="keep.png") == 2
    assert "keep.png exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert (work / "keep.png").read_bytes() == b"precious"
    assert run(work, "--overwrite", out="keep.png") == 0


def test_same_seed_same_output_different_seed_differs(work):
    assert run(work, "--seed", "5", out="s5a.png") == 0
    assert run(work, "--seed", "5", out="s5b.png") == 0
    assert run(work, "--seed", "6", out="s6.png") == 0
    def load(name):
        with Image.open(work / name) as im:
            return np.asarray(im)

    # bitwise: the same program on the same input, in one process (README: "same seed")
    np.testing.assert_array_equal(load("s5a.png"), load("s5b.png"))
    assert not np.array_equal(load("s5a.png"), load("s6.png"))


def test_jpeg_output_and_lbfgs(work):
    assert run(work, "--optimizer", "lbfgs", out="l.jpg") == 0
    with Image.open(work / "l.jpg") as im:
        assert im.format == "JPEG"
    assert run(work, "--optimizer", "lbfgs", "--lbfgs-linesearch", "none", out="l_none.png") == 0
    with Image.open(work / "l_none.png") as im:
        meta = json.loads(im.info["nst_jax"])
    assert meta["settings"]["lbfgs_linesearch"] == "none" and meta["evals"] == meta["steps"]


@pytest.mark.parametrize(("args", "msg"), [
    (["--content-layer", "conv9_1"], "unknown layer 'conv9_1' for vgg16: valid layers are"),
    (["--style-layers", "conv1_1:0.5,,conv2_1"], "--style-layers: expected LAYER[:WEIGHT]"),
    (["--style-layers", "conv1_1:x"], "--style-layers: weight of 'conv1_1' is not a number"),
    (["--style-layers", "conv1_1:1,conv2_1"], "give a weight for every layer or for none"),
    (["--style-layers", "conv1_1,conv7_1"], "unknown layer 'conv7_1'"),
    (["--style-weights", "1,2"], "--style-weights: expected 1 weights (one per style image), got 2"),
    (["--style-weights", "inf"], "--style-weights: values must be finite and >= 0, got inf"),
    (["--style-weights", "nan"], "--style-weights: values must be finite and >= 0, got nan"),
    (["--style-layers", "conv1_1:inf"], "--style-layers: weight of 'conv1_1' must be finite"),
    (["--weights", "/nonexistent/w.h5"], "weights file not found: /nonexistent/w.h5; fetch weights with"),
    (["--size", "8"], "is too small for conv5_1: the minimum is 16x16 pixels"),
])
def test_bad_options(work, capsys, args, msg):
    assert run(work, *args) == 2
    err = capsys.readouterr().err
    assert msg in err and err.startswith("error: ") and "Traceback" not in err


def test_unknown_choice_exits_2(work, capsys):
    with pytest.raises(SystemExit) as e:
        run(work, "--lbfgs-linesearch", "wolfe")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --lbfgs-linesearch: invalid choice: 'wolfe' (choose from "
                          "'zoom', 'none')") and err.count("\n") == 1, err


@pytest.mark.parametrize(("flag", "value", "msg"), [
    ("--size", "0", ""), ("--iters", "-3", ""), ("--size", "x", ""), ("--lr", "0", ""), ("--beta", "-1", ""),
    # the field report's tracebacks: every number has a range, checked before anything is loaded
    ("--style-scale", "1e308", "at most 16, got 1e308"),
    ("--lbfgs-history", "1000000000000", "at most 1000"),
    ("--seed", "1e30", "expected a whole number"),
    ("--seed", str(2**40), "at most 4294967295"),
    ("--tol-window", "1000000000000000000000000000000", "at most 1000000"),
    ("--noise-ratio", "2", "at most 1"),
    ("--avg-decay", "1", "less than 1"),
    ("--alpha", "1e308", "at most 1e+15"),
    ("--size", "100000", "at most 65536"),
    ("--tile", "1000000", "up to 65536"),
    ("--scales", "100", "at most 16"),
])
def test_bad_numbers_exit_2(work, capsys, flag, value, msg):
    with pytest.raises(SystemExit) as e:
        run(work, flag, value)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: expected" in err and msg in err and err.count("\n") == 1, err


@pytest.mark.parametrize(("which", "make", "msg"), [
    ("content", lambda p: None, "image not found"),
    ("content", lambda p: p.mkdir(), "expected an image file, got a directory"),
    ("style", lambda p: os.mkfifo(p), "expected a regular image file, got a special file"),
    ("style", lambda p: p.write_text("hello"), "not an image"),
    ("style", lambda p: p.write_bytes((Path(__file__).parent / "conftest.py").read_bytes()[:0]
                                      or _truncated_png()), "truncated or corrupt"),
])
def test_bad_images(work, tmp_path, capsys, which, make, msg):
    bad = tmp_path / "bad.png"
    make(bad)
    c, s = (bad, work / "s.png") if which == "content" else (work / "c.png", bad)
    code = stylize_main([str(c), str(s), "--weights", str(work / "tiny.h5"), *FAST,
                         "-o", str(tmp_path / "o.png")])
    assert code == 2
    assert msg in capsys.readouterr().err


def _truncated_png() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()[:2000]


def test_unwritable_output_folder(work, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    # chmod does not stop root (CI may run as root): make the permission check say no.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == ro else real_access(p, m))
    assert run(work, "-o", str(ro / "o.png"), out=None) == 2
    assert f"output folder is not writable: {ro}" in capsys.readouterr().err
    assert list(ro.iterdir()) == []


def test_missing_output_folder_and_bad_extension(work, capsys):
    assert run(work, out="nope/o.png") == 2
    assert "output folder does not exist" in capsys.readouterr().err
    assert run(work, out="o.gif") == 2
    assert "unknown extension '.gif'" in capsys.readouterr().err


def test_missing_default_weights(work, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NST_JAX_WEIGHTS", str(tmp_path / "cache"))
    monkeypatch.setattr(W.locate, "search_dirs", lambda: [tmp_path / "weights", W.cache_dir()])
    code = stylize_main([str(work / "c.png"), str(work / "s.png"), *FAST, "-o", "o.png"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no weights found (looked for vgg19.h5 or vgg16.h5 in "
                          f"{tmp_path / 'weights'}, {tmp_path / 'cache'}); fetch weights with: ")


def test_parse_style_layers():
    assert parse_style_layers("conv1_1:0.5,relu2_1:2") == (("conv1_1", "relu2_1"), (0.5, 2.0))
    assert parse_style_layers("conv1_1,conv2_1") == (("conv1_1", "conv2_1"), (0.5, 0.5))


def test_main_dispatch(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bogus"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: argument COMMAND: invalid choice: 'bogus'")
    for argv in (["--help"], ["--version"], ["stylize", "--help"], ["grid", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "nst-jax " + __import__("nst_jax").__version__ in out
    assert "usage: nst-jax stylize" in out and "stylize.py" not in out


def _cmd(work, *extra):
    return [sys.executable, str(ROOT / "scripts" / "stylize.py"), str(work / "c.png"),
            str(work / "s.png"), "--weights", str(work / "tiny.h5"), *extra]


@pytest.mark.slow
def test_subprocess_bad_input_exit_code(work):
    r = subprocess.run(_cmd(work, "--content-layer", "nope", "-o", str(work / "x.png")),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: unknown layer 'nope'")
    assert "Traceback" not in r.stderr


def _interrupt(cmd: list[str], marker: str) -> str:
    """Run ``cmd``, send SIGINT once ``marker`` appears on stderr; assert exit 130."""
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) as p:
        deadline = time.time() + 120
        for line in p.stderr:
            if marker in line or time.time() > deadline:
                break
        p.send_signal(signal.SIGINT)
        err = p.stderr.read()
        assert p.wait(timeout=120) == 130, err
    return err


@pytest.mark.slow
def test_sigint_saves_a_complete_image(work):
    out = work / "int.png"
    err = _interrupt(_cmd(work, "--size", "32", "--beta", "1e-2", "--iters", "100000",
                          "--report-every", "5", "-o", str(out)), "5/100000")
    assert "interrupted: wrote" in err
    with Image.open(out) as im:
        im.load()
        meta = json.loads(im.info["nst_jax"])
    assert meta["status"] == "interrupted" and meta["steps"] >= 5
    assert not list(work.glob(".int*"))


@pytest.mark.slow
@pytest.mark.real_weights
@pytest.mark.skipif(not REAL_VGG16.exists(), reason="weights/vgg16.h5 absent")
def test_readme_demo_command_small(tmp_path):
    """The README's first command, shrunk to 64 px and a few iterations."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "stylize.py"),
         str(ROOT / "examples" / "content_chelsea.png"), str(ROOT / "examples" / "style_swirls.png"),
         "--size", "64", "--iters", "10", "--report-every", "5", "--weights", str(REAL_VGG16),
         "-o", str(tmp_path / "demo.png")],
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "demo.png") as im:
        assert im.size == (64, 43)


# ----------------------------------------------------------------------------- grid.py


def test_grid_cli_writes_sheet_csv_json(work, capsys):
    from nst_jax.cli import grid_main

    out = work / "grid"
    argv = [str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"),
            "--alphas", "1,2", "--betas", "1e-2,1e-1", "--size", "32", "--iters", "4",
            "--report-every", "2", "-o", str(out)]
    assert grid_main(argv) == 0
    err = capsys.readouterr().err
    assert "done: wrote 4 images" in err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a1_b0.01.png", "a1_b0.1.png", "a2_b0.01.png", "a2_b0.1.png",
                     "contact_sheet.png", "costs.csv", "costs.json"]
    rows = (out / "costs.csv").read_text().splitlines()
    assert rows[0].startswith("alpha,beta,") and len(rows) == 5
    data = json.loads((out / "costs.json").read_text())
    assert [p["file"] for p in data["points"]] == ["a1_b0.01.png", "a1_b0.1.png",
                                                   "a2_b0.01.png", "a2_b0.1.png"]
    with Image.open(out / "contact_sheet.png") as im:
        assert im.width > 2 * 27 and im.height > 2 * 32
        assert json.loads(im.info["nst_jax"])["points"][0]["alpha"] == 1.0
    # a second run refuses to overwrite
    assert grid_main(argv) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value", "msg"), [
    ("--alphas", "", "--alphas: expected comma-separated numbers like 1,10,100, got ''"),
    ("--betas", "1,x", "--betas: 'x' is not a number"),
    ("--betas", "1,-2", "--betas: values must be finite and >= 0, got -2"),
    ("--alphas", "1,,2", "--alphas: expected comma-separated numbers"),
])
def test_grid_cli_bad_specs(work, tmp_path, capsys, flag, value, msg):
    from nst_jax.cli import grid_main

    code = grid_main([str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"),
                      flag, value, "-o", str(tmp_path / "g")])
    assert code == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


# ----------------------------------------------------------------------------- quality flags


def test_quality_flags_end_to_end(work):
    assert run(work, "--preserve-color", "luminance", "--avg-decay", "0.5", "--scales", "2",
               "--min-size", "20", "--tol", "0.001", out="q.png") == 0
    with Image.open(work / "q.png") as im:
        meta = json.loads(im.info["nst_jax"])
        assert im.size == (27, 32)
    assert meta["settings"]["preserve_color"] == "luminance" and meta["scale"] == 1
    assert run(work, "--preserve-color", "histogram", "--original-colors", out="h.png") == 0


def test_checkpoint_and_resume_cli_equals_uninterrupted(work, capsys):
    args = ["--iters", "6", "--report-every", "2", "--checkpoint-every", "2", "--seed", "3"]
    assert run(work, *args, out="full.png") == 0
    ckpt = work / "full.png.ckpt"
    assert ckpt.exists()  # the last checkpoint, written at step 4
    from nst_jax.checkpoint import load_checkpoint

    snap, _ = load_checkpoint(ckpt)
    assert snap["steps"] == 4
    assert run(work, *args, "--resume", str(ckpt), out="resumed.png") == 0
    with Image.open(work / "full.png") as a, Image.open(work / "resumed.png") as b:
        # bitwise: the resumed chunks are the same program on the same (restored) state
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    capsys.readouterr()
    assert run(work, *args, "--beta", "0.5", "--resume", str(ckpt), out="other.png") == 2
    assert "settings differ from the checkpoint's: beta" in capsys.readouterr().err
    assert run(work, *args, "--resume", str(work / "nope.ckpt"), out="o2.png") == 2
    assert "checkpoint not found" in capsys.readouterr().err
    # a checkpoint written before --lbfgs-linesearch existed ran with its default: it resumes
    from nst_jax.checkpoint import save_checkpoint

    snap, settings = load_checkpoint(ckpt)
    old = work / "old.ckpt"
    save_checkpoint(old, snap, {k: v for k, v in settings.items() if k != "lbfgs_linesearch"})
    assert run(work, *args, "--resume", str(old), out="from_old.png") == 0
    with Image.open(work / "full.png") as a, Image.open(work / "from_old.png") as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bitwise: as above
    save_checkpoint(old, snap, {**settings, "lbfgs_linesearch": "none"})
    capsys.readouterr()
    assert run(work, *args, "--resume", str(old), out="o3.png") == 2
    assert "settings differ from the checkpoint's: lbfgs_linesearch" in capsys.readouterr().err


def test_first_scale_too_small_cli(work, capsys):
    assert run(work, "--scales", "3", out="small.png") == 2
    assert "at the first scale is too small for conv5_1: the minimum is 16x16" in capsys.readouterr().err


def test_size_that_cannot_fit_is_refused_with_a_suggestion(work, capsys, monkeypatch):
    from nst_jax import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 400 * 2**20)
    assert run(work, "--size", "4096", "--tile", "0", out="huge.png") == 2
    err = capsys.readouterr().err
    assert "needs about" in err and "GiB (predicted) but 0.4 GiB are available" in err
    assert "the largest size that fits whole is about --size" in err and "--tile auto" in err
    # --tile auto (the default): even the smallest tile needs the image-sized arrays
    assert run(work, "--size", "4096", out="huge.png") == 2
    err = capsys.readouterr().err
    assert "even in the smallest tiles (64 px: the image-sized arrays alone) but 0.4 GiB" in err


def test_tile_auto_picks_the_largest_tile_that_fits(capsys, monkeypatch):
    from nst_jax import memory
    from nst_jax.cli.inputs import check_memory
    from nst_jax.config import Config

    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 4 * 2**30)
    cfg = Config().validate("vgg19")
    assert check_memory("vgg19", (1024, 1024), cfg, auto=True, quiet=False) == 0  # fits whole
    tile = check_memory("vgg19", (4096, 4096), cfg, auto=True, quiet=False)
    err = capsys.readouterr().err
    assert tile % 16 == 0 and tile >= 80
    assert memory.predict_bytes("vgg19", 4096, 4096, tile=tile) <= 0.9 * 4 * 2**30
    assert memory.predict_bytes("vgg19", 4096, 4096, tile=tile + 16) > 0.9 * 4 * 2**30
    assert f"computing it exactly in tiles of {tile} px" in err and err.count("\n") == 1
    with pytest.raises(Exception, match=rf"--tile 4000: .* use --tile {tile} or less"):
        check_memory("vgg19", (4096, 4096), cfg.replace(tile=4000))


@pytest.mark.parametrize(("value", "message"), [
    ("32", "tile: 32 px is smaller than the 64 px halo that conv5_1 needs"),
    ("abc", "expected auto, 0 or a tile size in pixels, got 'abc'"),
    ("-5", "expected auto, 0 or a tile size in pixels"),
])
def test_bad_tile_is_refused(work, capsys, value, message):
    try:
        code = run(work, "--tile", value, out="bad-tile.png")
    except SystemExit as e:  # argparse's own refusal
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") or "error:" in err
    assert message in err and "Traceback" not in err
    assert not (work / "bad-tile.png").exists()


def test_tiled_cli_run_records_the_tile(work):
    import json

    assert run(work, "--size", "96", "--tile", "64", out="tiled.png") == 0
    meta = json.loads((work / "tiled.png.json").read_text())
    assert meta["settings"]["tile"] == 64


def test_style_scale_sets_the_style_size(work):
    from nst_jax.cli import prepare, stylize_parser

    args = stylize_parser().parse_args(
        [str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"),
         "--size", "40", "--style-scale", "1.5", "--quiet"])
    pr = prepare(args, 10)
    assert pr.content.shape[:2] == (40, 33)
    assert max(pr.styles[0].shape[:2]) == 60


@pytest.mark.slow
def test_grid_sigint_exits_130_and_writes_nothing(work):
    out = work / "gint"
    cmd = [sys.executable, str(ROOT / "scripts" / "grid.py"), str(work / "c.png"),
           str(work / "s.png"), "--weights", str(work / "tiny.h5"), "--size", "32", "--beta",
           "1e-2", "--betas", "1e-2,1e-1", "--iters", "100000", "--report-every", "5",
           "-o", str(out)]
    err = _interrupt(cmd, "iterations (2 points)")
    assert "interrupted (SIGINT): nothing written" in err
    assert not list(out.glob("*.png"))


def test_style_loss_flag_end_to_end_and_too_small(work, capsys):
    assert run(work, "--style-loss", "w2", out="w2.png") == 0
    assert json.loads((work / "w2.png.json").read_text())["settings"]["style_loss"] == "w2"
    capsys.readouterr()
    assert run(work, "--style-loss", "meancov", "--size", "24", out="mc24.png") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "needs at least 2 to estimate a covariance" in err


def test_bit_depth_16_cli(work, capsys):
    from PIL import Image

    assert run(work, "--bit-depth", "16", out="deep.png") == 0
    with Image.open(work / "deep.png") as im:
        assert im.mode in ("RGB", "I;16", "I") and "nst_jax" in im.info
    assert (work / "deep.png").read_bytes()[24] == 16  # IHDR bit depth
    assert run(work, "--bit-depth", "16", out="deep.jpg") == 2
    assert "--bit-depth 16: deep.jpg is JPEG" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["content", "style", "sidecar"])
def test_output_equal_to_an_input_is_refused_even_with_overwrite(work, tmp_path, capsys, which):
    import shutil

    from nst_jax.cli import stylize_main

    c = tmp_path / "c.png"
    s = tmp_path / ("o.png.json" if which == "sidecar" else "s.png")  # a style named like a sidecar
    shutil.copy(work / "c.png", c)
    shutil.copy(work / "s.png", s)
    out = {"content": c, "style": s, "sidecar": tmp_path / "o.png"}[which]
    before = c.read_bytes(), s.read_bytes()
    code = stylize_main([str(c), str(s), "--weights", str(work / "tiny.h5"), *FAST, "-o", str(out),
                         "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2 and "refused even with --overwrite" in err and err.count("\n") == 1, err
    assert (c.read_bytes(), s.read_bytes()) == before


def test_a_failing_checkpoint_is_named_once(work, tmp_path, capsys, monkeypatch):
    import nst_jax.checkpoint as ck

    def fail(*a, **k):
        raise OSError("disk full")

    from nst_jax.cli import stylize_main

    monkeypatch.setattr(ck, "save_checkpoint", fail)
    code = stylize_main([str(work / "c.png"), str(work / "s.png"), "--weights", str(work / "tiny.h5"),
                         *FAST, "--iters", "6", "--checkpoint-every", "2", "-o", str(tmp_path / "c.png")])
    err = capsys.readouterr().err
    assert code == 1
    line = next(x for x in err.splitlines() if x.startswith("error: not written"))
    assert line.count("c.png.ckpt") == 1 and "(2 times)" in line, line


def test_xla_flags_are_gated_on_the_jaxlib_version(monkeypatch):
    from nst_jax.cli import common

    flag = common.CPU_XLA_FLAG
    assert common.supported_xla_flag(flag, (0, 10, 2)) and common.supported_xla_flag(flag, (0, 8, 0))
    assert not common.supported_xla_flag(flag, (0, 4, 20))  # before XLA had it
    assert not common.supported_xla_flag(flag, (0, 11, 0))  # newer than tested: XLA might abort
    assert not common.supported_xla_flag(flag, ())  # unknown
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    monkeypatch.setattr(common, "jaxlib_version", lambda: (0, 12, 0))
    common.default_xla_flags()
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    monkeypatch.setattr(common, "jaxlib_version", lambda: (0, 10, 2))
    common.default_xla_flags()
    assert os.environ["XLA_FLAGS"].endswith(flag)


def test_report_interval_against_brute_force():
    from nst_jax.cli.inputs import report_interval

    assert report_interval(25) == 25 and report_interval(25, None, None) == 25
    assert report_interval(25, 10) == 10  # was gcd(25, 10) = 5: a report every 5 steps
    assert report_interval(25, 30) == 15 and report_interval(25, 1000) == 25
    assert report_interval(4, 10) == 2 and report_interval(25, 7, None, 14) == 7
    for r in range(1, 31):
        for a in (None, 1, 6, 10, 12, 45):
            for b in (None, 4, 9, 100):
                given = [n for n in (a, b) if n]
                ok = [d for d in range(1, r + 1) if all(n % d == 0 for n in given)]
                assert report_interval(r, a, b) == (max(ok) if given else r), (r, a, b)


def test_chunks_follow_save_every_not_a_finer_gcd(work, monkeypatch):
    import nst_jax.optimize

    seen = []
    real = nst_jax.optimize.iterate

    def spy(*args, **kw):
        seen.append(kw["config"].report_every)
        yield from real(*args, **kw)

    monkeypatch.setattr(nst_jax.optimize, "iterate", spy)
    # the default --report-every is 25: gcd(25, 4) = 1 would report (and measure) every step
    assert run(work, "--save-every", "4", "--iters", "8", "--report-every", "25", out="ch.png") == 0
    assert seen == [4]
    assert (work / "ch.000004.png").exists() and not (work / "ch.000002.png").exists()
